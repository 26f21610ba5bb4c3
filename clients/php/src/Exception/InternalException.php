<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** INTERNAL (13) and any status without a class of its own: a bug or an unexpected state. */
class InternalException extends OtpdException
{
}
