<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * The account is locked after too many failed codes. Usually PERMISSION_DENIED; it is thrown
 * whenever the daemon names the end of a lock.
 */
class LockedException extends PermissionDeniedException
{
    /**
     * When the lock ends. A lock that needs an administrator ends far in the future (see
     * untilAdministratorUnlocks()).
     */
    public function lockedUntil(): \DateTimeImmutable
    {
        $until = (int) ($this->getDetail()?->getLockedUntil() ?? 0);
        return new \DateTimeImmutable('@' . $until);
    }

    /** Whether only an administrator can end this lock (otpctl unlock). */
    public function untilAdministratorUnlocks(): bool
    {
        $until = (int) ($this->getDetail()?->getLockedUntil() ?? 0);
        return $until >= \Otpd\Client\Client::LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS;
    }

    /** Seconds until the lock ends (0 when it has ended). */
    public function retryAfterSeconds(): int
    {
        $retry = (int) ($this->getDetail()?->getRetryAfterSeconds() ?? 0);
        if ($retry > 0) {
            return $retry;
        }
        return max(0, $this->lockedUntil()->getTimestamp() - time());
    }
}
