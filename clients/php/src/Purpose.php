<?php

declare(strict_types=1);

namespace Otpd\Client;

/**
 * What a one-time code is for (otp.v1.Purpose). A code only works for its own purpose; the
 * step-up table in docs/SECURITY.md says which purpose each change of factors needs.
 */
enum Purpose: int
{
    /** Prove that a new (or pending) number receives texts. */
    case VerifyPhone = 1;
    /** The second step of a login. */
    case Login = 2;
    /** Proof for replacing the verified number. */
    case ChangePhone = 3;
    /** Proof for turning a factor off. */
    case DisableFactor = 4;
    /** Proof for adding a factor, making backup codes, changing the preferred method. */
    case ManageFactors = 5;

    /** The wire value of an enum, or a raw \Otp\V1\Purpose value as given (otpd checks it). */
    public static function value(self|int $purpose): int
    {
        return $purpose instanceof self ? $purpose->value : $purpose;
    }
}
