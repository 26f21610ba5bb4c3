<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/**
 * PHP's own session ($_SESSION), under one key ("otpd" by default) so the shop's data is left
 * alone. Starts the session when it is not started yet, with safe cookie settings: HttpOnly,
 * SameSite=Lax, Secure on HTTPS, strict mode (an id the server did not make is refused).
 */
final class NativeSession implements Session
{
    public function __construct(private readonly string $key = 'otpd')
    {
        if (session_status() !== PHP_SESSION_ACTIVE) {
            $https = ($_SERVER['HTTPS'] ?? '') !== '' && ($_SERVER['HTTPS'] ?? '') !== 'off';
            session_start([
                'use_strict_mode' => true,
                'use_only_cookies' => true,
                'cookie_httponly' => true,
                'cookie_samesite' => 'Lax',
                'cookie_secure' => $https,
            ]);
        }
        if (!isset($_SESSION[$this->key]) || !is_array($_SESSION[$this->key])) {
            $_SESSION[$this->key] = [];
        }
    }

    public function get(string $key): mixed
    {
        return $_SESSION[$this->key][$key] ?? null;
    }

    public function set(string $key, mixed $value): void
    {
        $_SESSION[$this->key][$key] = $value;
    }

    public function remove(string $key): void
    {
        unset($_SESSION[$this->key][$key]);
    }

    public function regenerateId(): void
    {
        session_regenerate_id(true);
    }

    public function id(): string
    {
        return (string) session_id();
    }
}
