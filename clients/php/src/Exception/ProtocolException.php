<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * The daemon's answer broke the framing or envelope rules (bad flag byte, a frame over the
 * maximum size, an undecodable message, a wrong call id). The connection is closed. Code INTERNAL.
 */
class ProtocolException extends InternalException
{
}
