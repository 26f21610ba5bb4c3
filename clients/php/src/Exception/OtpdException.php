<?php

declare(strict_types=1);

namespace Otpd\Client\Exception;

use Otp\V1\ErrorDetail;

/**
 * A call to otpd did not succeed.
 *
 * getCode() is the gRPC canonical status code (see envelope.proto) and getMessage() the
 * daemon's message, which is safe to show: it never holds a code, a secret or a full phone
 * number. Catch this class to handle every failure; catch a subclass for one kind.
 *
 * A wrong one-time code is not an exception: Verify, RedeemBackupCode and
 * ConfirmTotpEnrollment answer normally with success = false.
 */
class OtpdException extends \RuntimeException
{
    public const OK = 0;
    public const CANCELLED = 1;
    public const UNKNOWN = 2;
    public const INVALID_ARGUMENT = 3;
    public const DEADLINE_EXCEEDED = 4;
    public const NOT_FOUND = 5;
    public const ALREADY_EXISTS = 6;
    public const PERMISSION_DENIED = 7;
    public const RESOURCE_EXHAUSTED = 8;
    public const FAILED_PRECONDITION = 9;
    public const ABORTED = 10;
    public const OUT_OF_RANGE = 11;
    public const UNIMPLEMENTED = 12;
    public const INTERNAL = 13;
    public const UNAVAILABLE = 14;
    public const DATA_LOSS = 15;
    public const UNAUTHENTICATED = 16;

    private const NAMES = [
        0 => 'OK', 1 => 'CANCELLED', 2 => 'UNKNOWN', 3 => 'INVALID_ARGUMENT', 4 => 'DEADLINE_EXCEEDED',
        5 => 'NOT_FOUND', 6 => 'ALREADY_EXISTS', 7 => 'PERMISSION_DENIED', 8 => 'RESOURCE_EXHAUSTED',
        9 => 'FAILED_PRECONDITION', 10 => 'ABORTED', 11 => 'OUT_OF_RANGE', 12 => 'UNIMPLEMENTED',
        13 => 'INTERNAL', 14 => 'UNAVAILABLE', 15 => 'DATA_LOSS', 16 => 'UNAUTHENTICATED',
    ];

    private ?ErrorDetail $detail;

    public function __construct(string $message, int $code, ?ErrorDetail $detail = null, ?\Throwable $previous = null)
    {
        parent::__construct($message, $code, $previous);
        $this->detail = $detail;
    }

    /**
     * The exception for a status the daemon answered (or the client decided on): the most
     * specific subclass for the code, a LockedException whenever the detail names a lock end.
     */
    public static function fromStatus(int $code, string $message, ?ErrorDetail $detail = null): self
    {
        if ($detail !== null && $detail->getLockedUntil() > 0) {
            return new LockedException($message, $code, $detail);
        }
        return match ($code) {
            self::INVALID_ARGUMENT, self::OUT_OF_RANGE => new InvalidRequestException($message, $code, $detail),
            self::PERMISSION_DENIED, self::UNAUTHENTICATED => new PermissionDeniedException($message, $code, $detail),
            self::RESOURCE_EXHAUSTED => new RateLimitedException($message, $code, $detail),
            self::ALREADY_EXISTS => new AlreadyExistsException($message, $code, $detail),
            self::FAILED_PRECONDITION, self::NOT_FOUND => new FailedPreconditionException($message, $code, $detail),
            self::DEADLINE_EXCEEDED => new DeadlineExceededException($message, $code, $detail),
            self::UNAVAILABLE, self::CANCELLED, self::ABORTED => new UnavailableException($message, $code, $detail),
            self::UNIMPLEMENTED => new UnimplementedException($message, $code, $detail),
            default => new InternalException($message, $code, $detail),
        };
    }

    /** The canonical name of a status code, e.g. "RESOURCE_EXHAUSTED" for 8. */
    public static function statusName(int $code): string
    {
        return self::NAMES[$code] ?? "STATUS_$code";
    }

    /** The canonical name of this exception's status code, e.g. "PERMISSION_DENIED". */
    public function getStatusName(): string
    {
        return self::statusName($this->getCode());
    }

    /** The otp.v1.ErrorDetail the daemon sent with the failure, if any. */
    public function getDetail(): ?ErrorDetail
    {
        return $this->detail;
    }
}
