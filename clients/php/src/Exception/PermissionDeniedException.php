<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/**
 * PERMISSION_DENIED (7) or UNAUTHENTICATED (16): refused, e.g. a sensitive action without a
 * valid proof, a backup code where none is accepted, or a locked account (LockedException).
 */
class PermissionDeniedException extends OtpdException
{
}
