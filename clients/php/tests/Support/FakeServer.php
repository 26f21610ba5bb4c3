<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

/** Runs tests/Support/fake-server.php as a separate PHP process on a temporary socket. */
final class FakeServer
{
    public readonly string $socket;
    private readonly string $dir;
    private readonly string $output;
    /** @var resource|null */
    private $process;

    public function __construct(string $mode, string ...$args)
    {
        $this->dir = rtrim(sys_get_temp_dir(), '/') . '/otpd-fake-' . bin2hex(random_bytes(4));
        mkdir($this->dir, 0700);
        $this->socket = "{$this->dir}/fake.sock";
        $this->output = "{$this->dir}/events.txt";
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fake-server.php', $this->socket, $mode, ...$args],
            [
                0 => ['file', '/dev/null', 'r'],
                1 => ['file', $this->output, 'w'],
                2 => ['file', "{$this->dir}/stderr.txt", 'w'],
            ],
            $pipes,
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start the fake server');
        }
        $this->process = $process;
        register_shutdown_function(fn () => $this->stop());
        $this->waitFor('listening');
    }

    /** @return list<string> what the server reported so far, one event per line */
    public function events(): array
    {
        return is_file($this->output) ? file($this->output, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) : [];
    }

    /** Waits until an event line starting with $prefix appears; fails after $seconds. */
    public function waitFor(string $prefix, float $seconds = 5.0): string
    {
        $until = microtime(true) + $seconds;
        while (true) {
            foreach ($this->events() as $event) {
                if (str_starts_with($event, $prefix)) {
                    return $event;
                }
            }
            if (microtime(true) > $until || $this->process === null || !proc_get_status($this->process)['running']) {
                throw new \RuntimeException(
                    "the fake server did not report '$prefix'; events: " . implode(' | ', $this->events())
                    . '; stderr: ' . @file_get_contents("{$this->dir}/stderr.txt"),
                );
            }
            usleep(5_000);
        }
    }

    /** Stops the server and returns its events. */
    public function stop(): array
    {
        if ($this->process !== null) {
            proc_terminate($this->process, 9);
            proc_close($this->process);
            $this->process = null;
        }
        $events = $this->events();
        foreach (glob("{$this->dir}/*") ?: [] as $file) {
            @unlink($file);
        }
        @rmdir($this->dir);
        return $events;
    }
}
