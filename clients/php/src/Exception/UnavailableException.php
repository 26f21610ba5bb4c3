<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * UNAVAILABLE (14) and connection failures: otpd cannot be reached, the connection broke, or the
 * daemon cannot use its storage. When the connection broke after a request was sent, the daemon
 * may have acted on it: the client does not retry such a call.
 */
class UnavailableException extends OtpdException
{
}
