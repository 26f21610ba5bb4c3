<?php

// phpcs:disable PSR1.Files.SideEffects -- the class_alias below keeps the old name working

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * INVALID_ARGUMENT (3) and OUT_OF_RANGE (11): the request is malformed, e.g. a phone number
 * that is not one. Fix the input.
 *
 * Named so that it does not read like PHP's own \InvalidArgumentException (which this client
 * throws for its own programming errors, such as an empty socket path).
 */
class InvalidRequestException extends OtpdException
{
}

// The name before 2026-12: `catch (InvalidArgumentException $e)` keeps working. Defined here,
// not in a file of its own, so that the alias exists as soon as the exception can be thrown
// (a catch clause never autoloads).
if (!class_exists(InvalidArgumentException::class, false)) {
    class_alias(InvalidRequestException::class, InvalidArgumentException::class);
}
