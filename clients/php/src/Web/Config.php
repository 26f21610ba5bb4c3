<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/**
 * What the shop tells the pages. Only the URLs are required.
 */
final class Config
{
    /**
     * @param string       $pagesUrl        where the shop routes Pages::handle(), e.g. "/admin/2fa.php"
     * @param string       $afterLoginUrl   where a finished login goes (the admin dashboard)
     * @param string       $loginUrl        the shop's password page (a pending login that expired starts there)
     * @param string       $issuer          the shop's name on the pages and the backup-codes file (the
     *                                      authenticator app shows otpd's [totp] issuer)
     * @param int          $pendingIdleSeconds a pending second factor expires after this long without a request
     * @param int          $pendingMaxSeconds  ... and this long after the password, whatever happens
     * @param DownPolicy   $whenOtpdIsDown  Deny (default) or AllowPasswordOnly: the shop's explicit choice
     * @param list<string> $templateDirectories the shop's own templates, searched before the defaults
     * @param string|null  $timezone        for lock ends and waits in words (default: PHP's default)
     * @param (callable(string, string): void)|null $logger receives (level, message); never a
     *                                      code, a secret or a full phone number
     */
    public function __construct(
        public readonly string $pagesUrl,
        public readonly string $afterLoginUrl,
        public readonly string $loginUrl,
        public readonly string $issuer = 'Shop admin',
        public readonly int $pendingIdleSeconds = 300,
        public readonly int $pendingMaxSeconds = 1800,
        public readonly DownPolicy $whenOtpdIsDown = DownPolicy::Deny,
        public readonly array $templateDirectories = [],
        public readonly ?string $timezone = null,
        public readonly mixed $logger = null,
    ) {
        if ($pendingIdleSeconds < 1 || $pendingMaxSeconds < $pendingIdleSeconds) {
            throw new \InvalidArgumentException('pending lifetimes must be positive, the maximum at least the idle');
        }
        if ($logger !== null && !is_callable($logger)) {
            throw new \InvalidArgumentException('logger must be callable(string $level, string $message)');
        }
    }
}
