<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/** The machine's clock. */
final class SystemClock implements Clock
{
    public function now(): int
    {
        return time();
    }
}
