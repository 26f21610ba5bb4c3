<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otp\V1\GenerateBackupCodesRequest;
use Otp\V1\Proof;
use Otpd\Client\Tests\Support\OtpdTestCase;

/** Separate PHP processes (PHP-FPM workers) racing for the same backup code. */
final class ConcurrencyTest extends OtpdTestCase
{
    private const ROUNDS = 3;

    public function testTwoProcessesRedeemingTheSameBackupCodeAtOnceExactlyOneWins(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $codes = iterator_to_array($this->client->generateBackupCodes(new GenerateBackupCodesRequest([
            'account_id' => $account,
            'proof' => new Proof(['token' => $proof]),
        ]))->getCodes());

        for ($round = 0; $round < self::ROUNDS; $round++) {
            $startAt = sprintf('%.6F', microtime(true) + 0.4);
            $processes = [];
            for ($i = 0; $i < 2; $i++) {
                $processes[] = proc_open(
                    [
                        PHP_BINARY,
                        __DIR__ . '/Support/redeem-backup-code.php',
                        self::daemon()->socket,
                        $account,
                        $codes[$round],
                        $startAt,
                    ],
                    [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
                    $pipes[$i],
                );
            }
            $answers = [];
            foreach ($processes as $i => $process) {
                $out = stream_get_contents($pipes[$i][1]);
                $err = stream_get_contents($pipes[$i][2]);
                fclose($pipes[$i][1]);
                fclose($pipes[$i][2]);
                $exit = proc_close($process);
                self::assertSame(0, $exit, "contender $i failed: $out $err");
                $answers[] = json_decode($out, true, 4, JSON_THROW_ON_ERROR);
            }
            $winners = array_filter($answers, static fn (array $a) => $a['success'] === true);
            self::assertCount(1, $winners, 'round ' . $round . ': ' . json_encode($answers));
            self::assertSame(9 - $round, array_values($winners)[0]['remaining']);
        }
        $status = $this->client->status($account);
        self::assertSame(10 - self::ROUNDS, $status->getBackupCodesRemaining());
        // Each round's loser counts as one failed attempt; a success resets the counter, so at
        // most one failure (the last round's loser, when it came second) is left.
        self::assertLessThanOrEqual(1, $status->getConsecutiveFailures());
    }
}
