<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/** A session in memory, for tests and command-line use. */
final class ArraySession implements Session
{
    /** @var array<string, mixed> */
    private array $data = [];
    private string $id;

    public function __construct()
    {
        $this->id = bin2hex(random_bytes(16));
    }

    public function get(string $key): mixed
    {
        return $this->data[$key] ?? null;
    }

    public function set(string $key, mixed $value): void
    {
        $this->data[$key] = $value;
    }

    public function remove(string $key): void
    {
        unset($this->data[$key]);
    }

    public function regenerateId(): void
    {
        $this->id = bin2hex(random_bytes(16));
    }

    public function id(): string
    {
        return $this->id;
    }
}
