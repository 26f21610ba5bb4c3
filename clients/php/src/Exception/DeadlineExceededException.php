<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/** DEADLINE_EXCEEDED (4): no answer within the call's timeout (from the daemon or the client's clock). */
class DeadlineExceededException extends UnavailableException
{
}
