<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

use Otpd\Client\Web\Clock;

/** A clock the test moves: starts at the real time, advance() jumps ahead. */
final class MutableClock implements Clock
{
    private int $offset = 0;

    public function now(): int
    {
        return time() + $this->offset;
    }

    public function advance(int $seconds): void
    {
        $this->offset += $seconds;
    }
}
