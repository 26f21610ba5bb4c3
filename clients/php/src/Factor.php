<?php

declare(strict_types=1);

namespace Otpd\Client;

/** A second factor (otp.v1.Factor): texted codes, an authenticator app, backup codes. */
enum Factor: int
{
    case Sms = 1;
    case Totp = 2;
    case Backup = 3;

    /** The wire value of an enum, or a raw \Otp\V1\Factor value as given (otpd checks it). */
    public static function value(self|int $factor): int
    {
        return $factor instanceof self ? $factor->value : $factor;
    }

    /** The factor a wire value names, or null for FACTOR_UNSPECIFIED (0) and unknown values. */
    public static function fromWire(int $value): ?self
    {
        return self::tryFrom($value);
    }
}
