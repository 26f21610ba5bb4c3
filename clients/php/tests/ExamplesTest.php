<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otpd\Client\Tests\Support\OtpdTestCase;

/** The examples run from the command line against the test daemon, as the README says. */
final class ExamplesTest extends OtpdTestCase
{
    public function testProfileSetupLoginBackupCodeAndNumberChange(): void
    {
        $account = $this->account();
        $outbox = self::daemon()->outbox;

        [$exit, $out] = $this->runExample('profile.php', [$account, '+1 555 010 0001', $outbox]);
        self::assertSame(0, $exit, $out);
        self::assertStringContainsString("Saved +1******0001. The phone number is not verified.\n", $out);
        self::assertStringContainsString("The phone number is verified: +1******0001.\n", $out);
        preg_match_all('/^  ([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})$/m', $out, $m);
        self::assertCount(10, $m[1], $out);
        $backupCodes = $m[1];

        [$exit, $out] = $this->runExample('login.php', [$account, $outbox]);
        self::assertSame(0, $exit, $out);
        self::assertStringEndsWith("Signed in with a texted code.\n", $out);

        [$exit, $out] = $this->runExample('login.php', [$account], "{$backupCodes[3]}\n");
        self::assertSame(0, $exit, $out);
        self::assertStringEndsWith("Signed in with a backup code. 9 left.\n", $out);

        [$exit, $out] = $this->runExample('login.php', [$account], "{$backupCodes[3]}\n");
        self::assertSame(1, $exit, $out);
        self::assertStringEndsWith("The code is not valid.\n", $out);

        [$exit, $out] = $this->runExample('profile.php', [$account, '+1 555 010 0002', $outbox]);
        self::assertSame(0, $exit, $out);
        self::assertStringContainsString('Code sent to your current number +1******0001', $out);
        self::assertStringContainsString("The phone number is verified: +1******0002.\n", $out);
        self::assertStringNotContainsString('backup codes', $out, 'the existing set is kept');
        self::assertSame('+1******0002', $this->client->status($account)->getPhoneMasked());
    }

    public function testLoginBeforeSetupAndAnUnreachableDaemon(): void
    {
        [$exit, $out] = $this->runExample('login.php', [$this->account()]);
        self::assertSame(1, $exit);
        self::assertStringContainsString('set it up on your profile page', $out);

        [$exit, , $err] = $this->runExample('login.php', ['x'], '', sys_get_temp_dir() . '/otpd-php-none/otpd.sock');
        self::assertSame(1, $exit);
        self::assertStringContainsString('otpd: UNAVAILABLE: cannot connect to otpd', $err);
    }

    /** @return array{int, string, string} exit status, stdout, stderr */
    private function runExample(string $example, array $args, string $stdin = '', ?string $socket = null): array
    {
        $process = proc_open(
            [PHP_BINARY, dirname(__DIR__) . "/examples/$example", $socket ?? self::daemon()->socket, ...$args],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
        );
        fwrite($pipes[0], $stdin);
        fclose($pipes[0]);
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($process), $out, $err];
    }
}
