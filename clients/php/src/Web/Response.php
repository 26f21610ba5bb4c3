<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/** An HTTP response the shop sends with send(), or turns into its framework's response. */
final class Response
{
    /** @param array<string, string> $headers */
    public function __construct(
        public readonly int $status,
        public readonly array $headers,
        public readonly string $body,
    ) {
    }

    public static function html(string $body, int $status = 200): self
    {
        return new self($status, ['Content-Type' => 'text/html; charset=utf-8'], $body);
    }

    /** 303 See Other: after a form, the browser GETs the next page (no resubmission on reload). */
    public static function redirect(string $url): self
    {
        return new self(303, ['Location' => $url], '');
    }

    public static function download(string $filename, string $text): self
    {
        return new self(200, [
            'Content-Type' => 'text/plain; charset=utf-8',
            'Content-Disposition' => 'attachment; filename="' . $filename . '"',
        ], $text);
    }

    /** The same response with more headers (existing names are replaced). */
    public function withHeaders(array $headers): self
    {
        return new self($this->status, array_merge($this->headers, $headers), $this->body);
    }

    public function header(string $name): ?string
    {
        foreach ($this->headers as $key => $value) {
            if (strcasecmp($key, $name) === 0) {
                return $value;
            }
        }
        return null;
    }

    public function send(): void
    {
        http_response_code($this->status);
        foreach ($this->headers as $name => $value) {
            header("$name: $value");
        }
        echo $this->body;
    }
}
