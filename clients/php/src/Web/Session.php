<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/**
 * The server-side session the pages keep their state in: the pending second factor, the CSRF
 * token, the signed-in account, the codes being shown once. Never sent to the browser except
 * as the session id. NativeSession uses PHP's sessions; a shop with its own session layer
 * implements this interface over it.
 */
interface Session
{
    public function get(string $key): mixed;

    public function set(string $key, mixed $value): void;

    public function remove(string $key): void;

    /** A new session id for the same data; the old id stops working (session fixation). */
    public function regenerateId(): void;

    public function id(): string;
}
