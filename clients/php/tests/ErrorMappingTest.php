<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otp\V1\DisableFactorRequest;
use Otp\V1\Factor;
use Otp\V1\Proof;
use Otp\V1\Purpose;
use Otp\V1\SetPhoneRequest;
use Otpd\Client\Client;
use Otpd\Client\Exception\AlreadyExistsException;
use Otpd\Client\Exception\DeadlineExceededException;
use Otpd\Client\Exception\FailedPreconditionException;
use Otpd\Client\Exception\InternalException;
use Otpd\Client\Exception\InvalidRequestException;
use Otpd\Client\Exception\LockedException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\PermissionDeniedException;
use Otpd\Client\Exception\RateLimitedException;
use Otpd\Client\Exception\UnavailableException;
use Otpd\Client\Exception\UnimplementedException;
use Otpd\Client\Tests\Support\Daemon;
use Otpd\Client\Tests\Support\FakeServer;
use Otpd\Client\Tests\Support\OtpdTestCase;

/** Refusals from the daemon become one exception class per status class. */
final class ErrorMappingTest extends OtpdTestCase
{
    public function testABadPhoneNumberIsInvalidArgument(): void
    {
        $e = $this->refusal(fn () => $this->client->savePhone($this->account(), 'call me maybe'));
        self::assertInstanceOf(InvalidRequestException::class, $e);
        self::assertSame(3, $e->getCode());
        self::assertSame('INVALID_ARGUMENT', $e->getStatusName());
        self::assertNotSame('', $e->getMessage());
        self::assertNull($e->getDetail());
    }

    /** The old name, which read like PHP's own \InvalidArgumentException, still catches it. */
    public function testTheDeprecatedNameStillCatchesABadRequest(): void
    {
        try {
            $this->client->savePhone($this->account(), 'call me maybe');
            self::fail('a bad number was accepted');
        } catch (\Otpd\Client\Exception\InvalidArgumentException $e) {
            self::assertInstanceOf(InvalidRequestException::class, $e);
            self::assertNotInstanceOf(\InvalidArgumentException::class, $e);
        }
    }

    public function testChangingAVerifiedNumberWithoutAProofIsPermissionDenied(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $e = $this->refusal(fn () => $this->client->savePhone($account, '+1 555 987 6543'));
        self::assertInstanceOf(PermissionDeniedException::class, $e);
        self::assertNotInstanceOf(LockedException::class, $e);
        self::assertSame(7, $e->getCode());

        $e = $this->refusal(fn () => $this->client->setPhone(new SetPhoneRequest([
            'account_id' => $account,
            'phone_number' => '+1 555 987 6543',
            'proof' => new Proof(['token' => 'pf_not_a_real_token']),
        ])));
        self::assertInstanceOf(PermissionDeniedException::class, $e);
        self::assertSame('+1******4567', $this->client->status($account)->getPhoneMasked(), 'nothing changed');
    }

    public function testAProofOfAnotherPurposeIsRefused(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $login = $this->passCode($account, Purpose::PURPOSE_CHANGE_PHONE);
        $e = $this->refusal(fn () => $this->client->disableFactor(new DisableFactorRequest([
            'account_id' => $account,
            'factor' => Factor::FACTOR_SMS,
            'proof' => new Proof(['token' => $login->getProofToken()]),
        ])));
        self::assertInstanceOf(PermissionDeniedException::class, $e);
        self::assertTrue($this->client->status($account)->getSmsEnabled());
    }

    public function testALoginCodeWithoutSmsTwoFactorIsFailedPrecondition(): void
    {
        $e = $this->refusal(fn () => $this->client->sendCode($this->account(), Purpose::PURPOSE_LOGIN));
        self::assertInstanceOf(FailedPreconditionException::class, $e);
        self::assertSame(9, $e->getCode());
    }

    public function testSavingTheVerifiedNumberAgainIsAlreadyExists(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account, '+1 555 123 4567');
        // Without a proof the answer says nothing about the saved number (docs/SECURITY.md §14).
        $e = $this->refusal(fn () => $this->client->savePhone($account, '+15551234567'));
        self::assertInstanceOf(PermissionDeniedException::class, $e);
        $proof = new Proof(['token' => $this->passCode($account, Purpose::PURPOSE_CHANGE_PHONE)->getProofToken()]);
        $e = $this->refusal(fn () => $this->client->savePhone($account, '+15551234567', $proof));
        self::assertInstanceOf(AlreadyExistsException::class, $e);
        self::assertInstanceOf(FailedPreconditionException::class, $e);
        self::assertSame(6, $e->getCode());
    }

    public function testAnUnknownMethodIsUnimplemented(): void
    {
        $e = $this->refusal(fn () => $this->client->callRaw(Client::METHOD_PREFIX . 'NoSuchMethod', ''));
        self::assertInstanceOf(UnimplementedException::class, $e);
        self::assertSame(12, $e->getCode());
        // The connection stays usable after a refused call.
        self::assertSame('SERVING', $this->client->health()->getStatus());
    }

    public function testAResendTooSoonIsRateLimitedWithTheWait(): void
    {
        // A daemon with the default resend cooldown (30 s).
        $daemon = new Daemon(Daemon::DEFAULT_COOLDOWN_CONFIG);
        $daemon->start();
        try {
            $client = $daemon->client();
            $account = $this->account();
            $client->savePhone($account, '+1 555 123 4567');
            $first = $client->sendCode($account, Purpose::PURPOSE_VERIFY_PHONE);
            self::assertGreaterThan(time() + 20, (int) $first->getResendAt());
            $e = $this->refusal(fn () => $client->sendCode($account, Purpose::PURPOSE_VERIFY_PHONE));
            self::assertInstanceOf(RateLimitedException::class, $e);
            self::assertSame(8, $e->getCode());
            self::assertGreaterThanOrEqual(1, $e->retryAfterSeconds());
            self::assertLessThanOrEqual(30, $e->retryAfterSeconds());
            self::assertCount(1, array_filter(
                file($daemon->outbox),
                static fn (string $line) => str_contains($line, '"verify_phone"'),
            ), 'the refused resend texted nothing');
            $client->close();
        } finally {
            $daemon->stop();
        }
    }

    /** @return iterable<string, array{int, class-string<OtpdException>}> */
    public static function statusCodes(): iterable
    {
        yield 'CANCELLED' => [1, UnavailableException::class];
        yield 'UNKNOWN' => [2, InternalException::class];
        yield 'INVALID_ARGUMENT' => [3, InvalidRequestException::class];
        yield 'DEADLINE_EXCEEDED' => [4, DeadlineExceededException::class];
        yield 'NOT_FOUND' => [5, FailedPreconditionException::class];
        yield 'ALREADY_EXISTS' => [6, AlreadyExistsException::class];
        yield 'PERMISSION_DENIED' => [7, PermissionDeniedException::class];
        yield 'RESOURCE_EXHAUSTED' => [8, RateLimitedException::class];
        yield 'FAILED_PRECONDITION' => [9, FailedPreconditionException::class];
        yield 'ABORTED' => [10, UnavailableException::class];
        yield 'OUT_OF_RANGE' => [11, InvalidRequestException::class];
        yield 'UNIMPLEMENTED' => [12, UnimplementedException::class];
        yield 'INTERNAL' => [13, InternalException::class];
        yield 'UNAVAILABLE' => [14, UnavailableException::class];
        yield 'DATA_LOSS' => [15, InternalException::class];
        yield 'UNAUTHENTICATED' => [16, PermissionDeniedException::class];
        yield 'a code gRPC does not define' => [99, InternalException::class];
    }

    /** @dataProvider statusCodes */
    public function testEveryStatusCodeHasItsClass(int $code, string $class): void
    {
        $server = new FakeServer('status', (string) $code, "refused with $code");
        $e = $this->refusal(fn () => (new Client($server->socket, 2.0))->health());
        $server->stop();
        self::assertSame($class, get_class($e));
        self::assertSame($code, $e->getCode());
        self::assertSame("refused with $code", $e->getMessage());
    }

    public function testErrorDetailsGiveTheWaitAndTheLockEnd(): void
    {
        $server = new FakeServer('status', '8', 'Too many codes', '42');
        $e = $this->refusal(fn () => (new Client($server->socket, 2.0))->health());
        $server->stop();
        self::assertInstanceOf(RateLimitedException::class, $e);
        self::assertSame(42, $e->retryAfterSeconds());

        $until = time() + 300;
        $server = new FakeServer('status', '7', 'The account is locked', '300', (string) $until);
        $e = $this->refusal(fn () => (new Client($server->socket, 2.0))->health());
        $server->stop();
        self::assertInstanceOf(LockedException::class, $e);
        self::assertInstanceOf(PermissionDeniedException::class, $e);
        self::assertSame($until, $e->lockedUntil()->getTimestamp());
        self::assertSame(300, $e->retryAfterSeconds());
        self::assertFalse($e->untilAdministratorUnlocks());
        self::assertSame($until, Client::lockEnd($until)?->getTimestamp());

        $forever = (string) Client::LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS;
        $server = new FakeServer('status', '7', 'The account is locked', '0', $forever);
        $e = $this->refusal(fn () => (new Client($server->socket, 2.0))->health());
        $server->stop();
        self::assertInstanceOf(LockedException::class, $e);
        self::assertTrue($e->untilAdministratorUnlocks());
        self::assertNull(Client::lockEnd(Client::LOCKED_UNTIL_ADMINISTRATOR_UNLOCKS));
        self::assertNull(Client::lockEnd(0));
    }

    private function refusal(callable $call): OtpdException
    {
        try {
            $call();
        } catch (OtpdException $e) {
            return $e;
        }
        self::fail('expected an OtpdException');
    }
}
