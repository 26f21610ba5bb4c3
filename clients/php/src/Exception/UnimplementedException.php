<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** UNIMPLEMENTED (12): the daemon does not know the method (an older otpd than this client). */
class UnimplementedException extends OtpdException
{
}
