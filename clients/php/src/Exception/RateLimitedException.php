<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** RESOURCE_EXHAUSTED (8): too many texts or calls; the same call can succeed after a wait. */
class RateLimitedException extends OtpdException
{
    /** Seconds to wait before the same call can succeed (0 when the daemon did not say). */
    public function retryAfterSeconds(): int
    {
        return (int) ($this->getDetail()?->getRetryAfterSeconds() ?? 0);
    }
}
