<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * FAILED_PRECONDITION (9) or NOT_FOUND (5): the account is not in a state that allows the call,
 * e.g. a login code for an account without a verified number, or turning off a factor that is off.
 */
class FailedPreconditionException extends OtpdException
{
}
