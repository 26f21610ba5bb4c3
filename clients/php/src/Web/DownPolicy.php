<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/**
 * What the login does when otpd cannot be reached (not running, socket not allowed, storage
 * failing). The shop chooses; the default is Deny.
 */
enum DownPolicy
{
    /** No sign-in without the second factor: a page says the service is down (the default). */
    case Deny;
    /**
     * Sign in with the password alone while otpd is down, logged as a warning each time. Only
     * for shops that rate availability above the second factor, and know that anyone with a
     * password can then get in while otpd is down (or made to look down).
     */
    case AllowPasswordOnly;
}
