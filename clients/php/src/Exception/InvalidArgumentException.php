<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** INVALID_ARGUMENT (3): the request is malformed, e.g. a phone number that is not one. Fix the input. */
class InvalidArgumentException extends OtpdException
{
}
