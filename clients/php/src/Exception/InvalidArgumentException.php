<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

/*
 * Deprecated: the old name of InvalidRequestException, which clashed with PHP's own
 * \InvalidArgumentException in code that imports it. The alias is made where
 * InvalidRequestException is defined; this file only lets the autoloader find the old name.
 */
class_exists(InvalidRequestException::class);
