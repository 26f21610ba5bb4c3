<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

use Otpd\Client\Client;
use Otpd\Client\Exception\OtpdException;

/**
 * A real otpd on a temporary directory: socket, database, key, SMS outbox and TOML config in
 * one directory that is removed when the daemon is stopped for good. Every instance stops its
 * daemon at the end of the PHP process (register_shutdown_function), even after a fatal error.
 */
final class Daemon
{
    /** SMS budgets relaxed so tests can send as many codes as they like. */
    public const RELAXED_CONFIG = "[sms]\nresend_cooldown_seconds = 0\nper_account_per_hour = 1000\n"
        . "per_phone_per_day = 1000\nverifications_per_phone_per_day = 1000\n"
        . "per_country_per_hour = 1000\nglobal_per_minute = 1000\n";
    /** The default resend cooldown (30 s), with enough budget that only the cooldown bites. */
    public const DEFAULT_COOLDOWN_CONFIG = "[sms]\nper_account_per_hour = 1000\nper_phone_per_day = 1000\n"
        . "verifications_per_phone_per_day = 1000\n";

    private static ?self $shared = null;

    public readonly string $dir;
    public readonly string $socket;
    public readonly string $outbox;
    public readonly string $log;

    /** @var resource|null */
    private $process = null;
    private bool $removed = false;

    public function __construct(string $config = self::RELAXED_CONFIG)
    {
        $base = rtrim(sys_get_temp_dir(), '/');
        $dir = $base . '/otpd-php-' . bin2hex(random_bytes(4));
        if (!mkdir($dir, 0700)) {
            throw new \RuntimeException("cannot create $dir");
        }
        $this->dir = $dir;
        $this->socket = "$dir/otpd.sock";
        $this->outbox = "$dir/outbox.jsonl";
        $this->log = "$dir/otpd.log";
        file_put_contents("$dir/otpd.toml", $config);
        register_shutdown_function(function (): void {
            $this->stop();
            $this->remove();
        });
    }

    /** The daemon shared by the test run, started by the bootstrap. */
    public static function shared(): self
    {
        if (self::$shared === null) {
            self::$shared = new self();
            self::$shared->start();
        }
        return self::$shared;
    }

    /** The otpd binary: $OTPD_BIN, else <repo>/.build/debug/otpd (built by `make test`). */
    public static function binary(): string
    {
        $binary = getenv('OTPD_BIN');
        if ($binary === false || $binary === '') {
            $binary = dirname(__DIR__, 4) . '/.build/debug/otpd';
        }
        if (!is_file($binary) || !is_executable($binary)) {
            throw new \RuntimeException(
                "otpd binary not found at $binary: build it (swift build --product otpd) or set OTPD_BIN",
            );
        }
        return $binary;
    }

    /** Starts otpd and waits until it answers Health (at most 15 s). */
    public function start(): void
    {
        if ($this->isRunning()) {
            throw new \LogicException('otpd is already running');
        }
        $command = [
            self::binary(),
            '--socket', $this->socket,
            '--database', "{$this->dir}/otpd.sqlite",
            '--key-file', "{$this->dir}/otpd.key",
            '--outbox', $this->outbox,
            '--config', "{$this->dir}/otpd.toml",
        ];
        // With util-linux's setpriv, otpd gets SIGTERM if this PHP process dies without running
        // its shutdown functions (SIGKILL): a test run never leaves a daemon behind.
        if (is_executable('/usr/bin/setpriv')) {
            $command = ['/usr/bin/setpriv', '--pdeathsig', 'TERM', '--', ...$command];
        }
        $process = proc_open(
            $command,
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $this->log, 'a'], 2 => ['file', $this->log, 'a']],
            $pipes,
            $this->dir,
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start otpd: ' . implode(' ', $command));
        }
        $this->process = $process;

        $client = new Client($this->socket, 1.0);
        $until = microtime(true) + 15.0;
        while (true) {
            if (!$this->isRunning()) {
                $this->process = null;
                throw new \RuntimeException("otpd exited at start-up:\n" . $this->logTail());
            }
            if (file_exists($this->socket)) {
                try {
                    if ($client->health()->getStatus() === 'SERVING') {
                        return;
                    }
                } catch (OtpdException) {
                    // not yet
                }
            }
            if (microtime(true) > $until) {
                $this->stop();
                throw new \RuntimeException("otpd did not answer Health within 15 s:\n" . $this->logTail());
            }
            usleep(20_000);
        }
    }

    /** Stops otpd: SIGTERM, then SIGKILL after 10 s. Does nothing when it is not running. */
    public function stop(): void
    {
        if ($this->process === null) {
            return;
        }
        $process = $this->process;
        $this->process = null;
        if (proc_get_status($process)['running']) {
            proc_terminate($process, 15);
            $until = microtime(true) + 10.0;
            while (proc_get_status($process)['running'] && microtime(true) < $until) {
                usleep(10_000);
            }
            if (proc_get_status($process)['running']) {
                proc_terminate($process, 9);
                while (proc_get_status($process)['running']) {
                    usleep(10_000);
                }
            }
        }
        proc_close($process);
    }

    public function restart(): void
    {
        $this->stop();
        $this->start();
    }

    public function isRunning(): bool
    {
        return $this->process !== null && proc_get_status($this->process)['running'];
    }

    public function pid(): int
    {
        if ($this->process === null) {
            throw new \LogicException('otpd is not running');
        }
        return proc_get_status($this->process)['pid'];
    }

    public function client(float $timeoutSeconds = 5.0): Client
    {
        return new Client($this->socket, $timeoutSeconds);
    }

    /** The code texted for a challenge (from the outbox). */
    public function code(string $challengeId): string
    {
        return Outbox::code($this->outbox, $challengeId);
    }

    public function logTail(int $lines = 20): string
    {
        $all = is_file($this->log) ? file($this->log) : [];
        return implode('', array_slice($all, -$lines));
    }

    private function remove(): void
    {
        if ($this->removed || !is_dir($this->dir)) {
            return;
        }
        $this->removed = true;
        foreach (scandir($this->dir) as $entry) {
            if ($entry !== '.' && $entry !== '..') {
                @unlink("{$this->dir}/$entry");
            }
        }
        @rmdir($this->dir);
    }
}
