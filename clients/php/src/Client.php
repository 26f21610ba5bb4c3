<?php

declare(strict_types=1);

namespace Otpd\Client;

use Google\Protobuf\Internal\Message;
use Otp\V1\AccountStatus;
use Otp\V1\BeginTotpEnrollmentRequest;
use Otp\V1\BeginTotpEnrollmentResponse;
use Otp\V1\ConfirmTotpEnrollmentRequest;
use Otp\V1\ConfirmTotpEnrollmentResponse;
use Otp\V1\DisableFactorRequest;
use Otp\V1\DisableFactorResponse;
use Otp\V1\ErrorDetail;
use Otp\V1\GenerateBackupCodesRequest;
use Otp\V1\GenerateBackupCodesResponse;
use Otp\V1\GetStatusRequest;
use Otp\V1\Proof as ProofMessage;
use Otp\V1\RedeemBackupCodeRequest;
use Otp\V1\RedeemBackupCodeResponse;
use Otp\V1\Request;
use Otp\V1\Response;
use Otp\V1\SetPhoneRequest;
use Otp\V1\SetPhoneResponse;
use Otp\V1\SetPreferredMethodRequest;
use Otp\V1\SetPreferredMethodResponse;
use Otp\V1\StartChallengeRequest;
use Otp\V1\StartChallengeResponse;
use Otp\V1\VerifyRequest;
use Otp\V1\VerifyResponse;
use Otpd\Client\Exception\DeadlineExceededException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\ProtocolException;
use Otpd\Client\Exception\UnavailableException;

/**
 * A synchronous client for otpd on its Unix socket.
 *
 * One method per RPC of the otp.v1.TwoFactor service, named as in the service, taking and
 * returning the generated Otp\V1 message classes. Every failure is an OtpdException subclass
 * (see src/Exception/); a wrong one-time code is not a failure but an answer with
 * success = false.
 *
 * The connection is opened on the first call and kept for the next ones (one call at a time;
 * PHP-FPM requests each make their own client, which is cheap on a Unix socket). A connection
 * found broken before a request was sent (for example after a daemon restart) is replaced once
 * and the call goes ahead; a call whose request was sent but whose answer never came fails with
 * UnavailableException and is not repeated, because the daemon may have acted on it.
 *
 * Not safe to share between processes (after a fork, make a new client).
 */
final class Client implements TwoFactorClient
{
    // One method per RPC, generated from proto/otp/v1/two_factor.proto: GeneratedMethods.php.
    use GeneratedMethods;

    /** Where otpd listens under systemd (otpd.socket). */
    public const DEFAULT_SOCKET = '/run/otpd/otpd.sock';
    /** The largest response accepted by default, the daemon's default frame maximum. */
    public const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
    /** The service's method prefix on the wire. */
    public const METHOD_PREFIX = '/otp.v1.TwoFactor/';
    /**
     * What a `locked_until` field holds for an account locked until an administrator unlocks it
     * (2^31 - 1, the largest 32-bit time; proto/otp/v1/two_factor.proto). Show it as "until an
     * administrator unlocks it", never as a date: use Client::lockEnd().
     */
    public const LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS = 2147483647;

    /**
     * When a lock ends, from a `locked_until` field: null when the account is not locked (0) or
     * stays locked until an administrator unlocks it (LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS).
     */
    public static function lockEnd(int $lockedUntil): ?\DateTimeImmutable
    {
        if ($lockedUntil <= 0 || $lockedUntil >= self::LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS) {
            return null;
        }
        return new \DateTimeImmutable('@' . $lockedUntil);
    }

    /** 1 flag byte and a 4-byte big-endian length. */
    private const HEADER_BYTES = 5;
    /** The client waits this much longer than the deadline, so the daemon can say DEADLINE_EXCEEDED. */
    private const GRACE_SECONDS = 0.25;
    private const MAX_DEADLINE_MS = 0xFFFFFFFF;

    /** @var resource|null */
    private $stream = null;
    private int $nextCallId = 1;

    /**
     * @param string $socketPath      otpd's socket.
     * @param float  $timeoutSeconds  default time a call may take (sent as its deadline; also the
     *                                connect and socket timeout); each method takes its own too.
     * @param int    $maxResponseBytes a response frame longer than this closes the connection and
     *                                throws ProtocolException without being read.
     *
     * @throws \InvalidArgumentException for an empty socket path, a timeout or maximum out of range
     * @throws \LogicException when the protobuf runtime is missing (a PHP setup problem)
     */
    public function __construct(
        private readonly string $socketPath = self::DEFAULT_SOCKET,
        private readonly float $timeoutSeconds = 5.0,
        private readonly int $maxResponseBytes = self::DEFAULT_MAX_RESPONSE_BYTES,
    ) {
        if (!class_exists(Message::class)) {
            throw new \LogicException(
                'otpd client: the protobuf runtime is missing. Install it: apt-get install php-google-protobuf '
                . '(Debian/Ubuntu), or composer require google/protobuf, or the protobuf PECL extension',
            );
        }
        if ($socketPath === '') {
            throw new \InvalidArgumentException('socketPath must not be empty');
        }
        self::checkTimeout($timeoutSeconds);
        if ($maxResponseBytes < 1) {
            throw new \InvalidArgumentException('maxResponseBytes must be positive');
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    private function __clone()
    {
    }

    /** The socket this client talks to. */
    public function socketPath(): string
    {
        return $this->socketPath;
    }

    /** Closes the connection, if one is open; the next call opens a new one. */
    public function close(): void
    {
        if ($this->stream !== null) {
            @fclose($this->stream);
            $this->stream = null;
        }
    }

    // ---- Conveniences for the shop's pages (TwoFactorClient) ---------------------------------

    /**
     * GetStatus for one account.
     *
     * @throws OtpdException
     */
    public function status(string $accountId, ?float $timeout = null): AccountStatus
    {
        return $this->getStatus(new GetStatusRequest(['account_id' => $accountId]), $timeout);
    }

    /**
     * SetPhone: saves a number; $proof is needed to replace a verified one.
     *
     * @throws OtpdException
     */
    public function savePhone(
        string $accountId,
        string $phoneNumber,
        Proof|ProofMessage|null $proof = null,
        ?float $timeout = null,
    ): SetPhoneResponse {
        $request = new SetPhoneRequest(['account_id' => $accountId, 'phone_number' => $phoneNumber]);
        $message = Proof::message($proof);
        if ($message !== null) {
            $request->setProof($message);
        }
        return $this->setPhone($request, $timeout);
    }

    /**
     * StartChallenge: texts a code for $purpose (a Purpose, or an \Otp\V1\Purpose value).
     *
     * @throws OtpdException
     */
    public function sendCode(string $accountId, Purpose|int $purpose, ?float $timeout = null): StartChallengeResponse
    {
        return $this->startChallenge(
            new StartChallengeRequest(['account_id' => $accountId, 'purpose' => Purpose::value($purpose)]),
            $timeout,
        );
    }

    /**
     * Verify: checks a code for $purpose. Pass the challenge id of an SMS code; leave it empty
     * for an authenticator code. Test `->getSuccess()` on the answer.
     *
     * @throws OtpdException
     */
    public function verifyCode(
        string $accountId,
        Purpose|int $purpose,
        string $code,
        string $challengeId = '',
        ?float $timeout = null,
    ): VerifyResponse {
        return $this->verify(new VerifyRequest([
            'account_id' => $accountId,
            'purpose' => Purpose::value($purpose),
            'code' => $code,
            'challenge_id' => $challengeId,
        ]), $timeout);
    }

    /**
     * BeginTotpEnrollment: a new authenticator secret (manage_factors proof once any factor is on).
     *
     * @throws OtpdException
     */
    public function beginAuthenticator(
        string $accountId,
        Proof|ProofMessage|null $proof = null,
        string $label = '',
        ?float $timeout = null,
    ): BeginTotpEnrollmentResponse {
        $request = new BeginTotpEnrollmentRequest(['account_id' => $accountId, 'label' => $label]);
        $message = Proof::message($proof);
        if ($message !== null) {
            $request->setProof($message);
        }
        return $this->beginTotpEnrollment($request, $timeout);
    }

    /**
     * ConfirmTotpEnrollment: turns the authenticator on with a first code from it.
     *
     * @throws OtpdException
     */
    public function confirmAuthenticator(
        string $accountId,
        string $code,
        ?float $timeout = null,
    ): ConfirmTotpEnrollmentResponse {
        return $this->confirmTotpEnrollment(
            new ConfirmTotpEnrollmentRequest(['account_id' => $accountId, 'code' => $code]),
            $timeout,
        );
    }

    /**
     * DisableFactor: turns a factor off (disable_factor proof).
     *
     * @throws OtpdException
     */
    public function turnOffFactor(
        string $accountId,
        Factor|int $factor,
        Proof|ProofMessage $proof,
        ?float $timeout = null,
    ): DisableFactorResponse {
        return $this->disableFactor(new DisableFactorRequest([
            'account_id' => $accountId,
            'factor' => Factor::value($factor),
            'proof' => Proof::message($proof),
        ]), $timeout);
    }

    /**
     * GenerateBackupCodes: a new set, shown once (manage_factors proof).
     *
     * @throws OtpdException
     */
    public function newBackupCodes(
        string $accountId,
        Proof|ProofMessage $proof,
        ?float $timeout = null,
    ): GenerateBackupCodesResponse {
        return $this->generateBackupCodes(new GenerateBackupCodesRequest([
            'account_id' => $accountId,
            'proof' => Proof::message($proof),
        ]), $timeout);
    }

    /**
     * RedeemBackupCode: uses up one backup code.
     *
     * @throws OtpdException
     */
    public function useBackupCode(string $accountId, string $code, ?float $timeout = null): RedeemBackupCodeResponse
    {
        return $this->redeemBackupCode(
            new RedeemBackupCodeRequest(['account_id' => $accountId, 'code' => $code]),
            $timeout,
        );
    }

    /**
     * SetPreferredMethod: the factor the login page offers first (manage_factors proof).
     *
     * @throws OtpdException
     */
    public function choosePreferredMethod(
        string $accountId,
        Factor|int $method,
        Proof|ProofMessage $proof,
        ?float $timeout = null,
    ): SetPreferredMethodResponse {
        return $this->setPreferredMethod(new SetPreferredMethodRequest([
            'account_id' => $accountId,
            'method' => Factor::value($method),
            'proof' => Proof::message($proof),
        ]), $timeout);
    }

    // ---- The wire ---------------------------------------------------------------------------

    /**
     * Sends one call to any method (e.g. "/otp.v1.TwoFactor/Health") with an encoded request
     * and returns the encoded response message. For diagnostics and tests; prefer the typed methods.
     *
     * @throws OtpdException
     */
    public function callRaw(string $method, string $payload = '', ?float $timeout = null): string
    {
        $timeout ??= $this->timeoutSeconds;
        self::checkTimeout($timeout);
        $deadline = self::now() + $timeout + self::GRACE_SECONDS;
        $callId = $this->nextCallId++;
        $envelope = (new Request([
            'call_id' => $callId,
            'method' => $method,
            'deadline_ms' => (int) min(self::MAX_DEADLINE_MS, max(1, (int) ceil($timeout * 1000))),
            'payload' => $payload,
        ]))->serializeToString();
        $frame = "\0" . pack('N', strlen($envelope)) . $envelope;

        // Send. A connection that turns out broken before the whole request is out is
        // replaced once: the daemon cannot have acted on a request it did not receive whole.
        for ($attempt = 1;; $attempt++) {
            $reused = $this->stream !== null;
            $stream = $this->connect(max(0.001, $deadline - self::now()));
            if ($reused && !self::isIdle($stream)) {
                // Closed by the daemon (restart, idle timeout) or holding bytes nobody asked for.
                $this->close();
                if ($attempt === 1) {
                    continue;
                }
                throw new UnavailableException('the connection to otpd broke', OtpdException::UNAVAILABLE);
            }
            if ($this->writeAll($stream, $frame, $deadline)) {
                break;
            }
            $this->close();
            if ($attempt === 1) {
                continue;
            }
            throw new UnavailableException(
                "cannot send to otpd at {$this->socketPath}: the connection broke",
                OtpdException::UNAVAILABLE,
            );
        }

        // Receive. From here on a failure is never retried.
        $header = $this->readExactly($stream, self::HEADER_BYTES, $deadline, $timeout);
        $flag = ord($header[0]);
        $length = unpack('N', substr($header, 1))[1];
        if ($flag !== 0) {
            $this->close();
            throw new ProtocolException("otpd answered a frame with flag byte $flag", OtpdException::INTERNAL);
        }
        if ($length > $this->maxResponseBytes) {
            $this->close();
            throw new ProtocolException(
                "otpd answered a frame of $length bytes, more than the maximum of {$this->maxResponseBytes}",
                OtpdException::INTERNAL,
            );
        }
        $body = $length > 0 ? $this->readExactly($stream, $length, $deadline, $timeout) : '';
        $response = new Response();
        try {
            $response->mergeFromString($body);
        } catch (\Exception $e) {
            $this->close();
            throw new ProtocolException('otpd answered an undecodable envelope', OtpdException::INTERNAL, null, $e);
        }

        $status = $response->getStatus();
        $code = $status === null ? 0 : $status->getCode();
        $message = $status === null ? '' : $status->getMessage();
        $answeredId = (int) $response->getCallId();
        if ($answeredId !== $callId) {
            // Call id 0 is the daemon refusing the connection's input; it closes the connection.
            $this->close();
            if ($answeredId === 0 && $code !== 0) {
                throw OtpdException::fromStatus($code, $message, self::errorDetail($response->getPayload()));
            }
            throw new ProtocolException(
                "otpd answered call $answeredId to call $callId",
                OtpdException::INTERNAL,
            );
        }
        if ($code !== 0) {
            throw OtpdException::fromStatus($code, $message, self::errorDetail($response->getPayload()));
        }
        return $response->getPayload();
    }

    /**
     * @template T of Message
     * @param class-string<T> $responseClass
     * @return T
     */
    private function invoke(string $rpc, Message $request, string $responseClass, ?float $timeout): Message
    {
        $payload = $this->callRaw(self::METHOD_PREFIX . $rpc, $request->serializeToString(), $timeout);
        $response = new $responseClass();
        try {
            $response->mergeFromString($payload);
        } catch (\Exception $e) {
            throw new ProtocolException(
                "otpd answered an undecodable $rpc response",
                OtpdException::INTERNAL,
                null,
                $e,
            );
        }
        return $response;
    }

    /** @return resource */
    private function connect(float $timeout)
    {
        if ($this->stream !== null) {
            return $this->stream;
        }
        $errno = 0;
        $errstr = '';
        $stream = @stream_socket_client('unix://' . $this->socketPath, $errno, $errstr, $timeout);
        if ($stream === false) {
            throw new UnavailableException(
                "cannot connect to otpd at {$this->socketPath}: " . ($errstr !== '' ? $errstr : "error $errno"),
                OtpdException::UNAVAILABLE,
            );
        }
        // Unbuffered reads: nothing beyond the frame being read is taken off the socket.
        stream_set_read_buffer($stream, 0);
        $this->stream = $stream;
        return $stream;
    }

    /** True when an open connection has nothing to read: not closed by the peer, no stray bytes. */
    private static function isIdle($stream): bool
    {
        $read = [$stream];
        $write = null;
        $except = null;
        $ready = @stream_select($read, $write, $except, 0, 0);
        return $ready === 0;
    }

    private function writeAll($stream, string $bytes, float $deadline): bool
    {
        $offset = 0;
        $total = strlen($bytes);
        while ($offset < $total) {
            $remaining = $deadline - self::now();
            if ($remaining <= 0) {
                $this->close();
                throw new DeadlineExceededException(
                    'otpd did not take the request in time',
                    OtpdException::DEADLINE_EXCEEDED,
                );
            }
            self::setTimeout($stream, $remaining);
            $written = @fwrite($stream, substr($bytes, $offset));
            if ($written === false || $written === 0) {
                return false;
            }
            $offset += $written;
        }
        return true;
    }

    private function readExactly($stream, int $length, float $deadline, float $timeout): string
    {
        $buffer = '';
        while (strlen($buffer) < $length) {
            $remaining = $deadline - self::now();
            if ($remaining > 0) {
                self::setTimeout($stream, $remaining);
                $chunk = @fread($stream, $length - strlen($buffer));
                if ($chunk !== false && $chunk !== '') {
                    $buffer .= $chunk;
                    continue;
                }
            }
            $timedOut = $remaining <= 0 || (stream_get_meta_data($stream)['timed_out'] ?? false);
            $this->close();
            if ($timedOut) {
                throw new DeadlineExceededException(
                    sprintf('no answer from otpd within %.3g s; the daemon may still act on the call', $timeout),
                    OtpdException::DEADLINE_EXCEEDED,
                );
            }
            throw new UnavailableException(
                'otpd closed the connection before answering; the daemon may have acted on the call',
                OtpdException::UNAVAILABLE,
            );
        }
        return $buffer;
    }

    private static function errorDetail(string $payload): ?ErrorDetail
    {
        if ($payload === '') {
            return null;
        }
        $detail = new ErrorDetail();
        try {
            $detail->mergeFromString($payload);
        } catch (\Exception) {
            return null;
        }
        return $detail;
    }

    private static function setTimeout($stream, float $seconds): void
    {
        $whole = (int) floor($seconds);
        stream_set_timeout($stream, $whole, max(1, (int) (($seconds - $whole) * 1_000_000)));
    }

    private static function checkTimeout(float $seconds): void
    {
        if (!($seconds > 0) || !is_finite($seconds)) {
            throw new \InvalidArgumentException('timeout must be a positive number of seconds');
        }
    }

    private static function now(): float
    {
        return hrtime(true) / 1e9;
    }
}
