<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/** The time, in Unix seconds. Injected so that tests can move it (a pending login expiring). */
interface Clock
{
    public function now(): int;
}
