<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** ALREADY_EXISTS (6): the call would change nothing, e.g. saving the number that is already verified. */
class AlreadyExistsException extends FailedPreconditionException
{
}
