<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/** What the pages need of an HTTP request: the method, the query and the form fields. */
final class Request
{
    /**
     * @param array<string, mixed> $query
     * @param array<string, mixed> $form
     */
    public function __construct(
        public readonly string $method = 'GET',
        public readonly array $query = [],
        public readonly array $form = [],
    ) {
    }

    public static function fromGlobals(): self
    {
        return new self(strtoupper((string) ($_SERVER['REQUEST_METHOD'] ?? 'GET')), $_GET, $_POST);
    }

    public function isPost(): bool
    {
        return $this->method === 'POST';
    }

    /** A query parameter as a string ('' when absent or not a string). */
    public function query(string $name): string
    {
        $value = $this->query[$name] ?? '';
        return is_string($value) ? $value : '';
    }

    /** A form field as a trimmed string ('' when absent or not a string). */
    public function field(string $name): string
    {
        $value = $this->form[$name] ?? '';
        return is_string($value) ? trim($value) : '';
    }
}
