<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

use Otp\V1\Purpose;
use Otp\V1\VerifyResponse;
use Otpd\Client\Client;
use PHPUnit\Framework\TestCase;

/** Tests against the otpd started by the bootstrap, each with accounts of its own. */
abstract class OtpdTestCase extends TestCase
{
    protected Client $client;

    protected function setUp(): void
    {
        $this->client = self::daemon()->client();
    }

    protected function tearDown(): void
    {
        $this->client->close();
    }

    protected static function daemon(): Daemon
    {
        return Daemon::shared();
    }

    /** An account id unique to this test (the daemon lives for the whole run). */
    protected function account(string $suffix = ''): string
    {
        return strtolower((new \ReflectionClass($this))->getShortName()) . '-' . $this->getName(false)
            . ($suffix === '' ? '' : "-$suffix");
    }

    /** Texts a code for $purpose and returns [challenge id, code] (the code from the outbox). */
    protected function sendCode(string $account, int $purpose): array
    {
        $challenge = $this->client->sendCode($account, $purpose);
        return [$challenge->getChallengeId(), self::daemon()->code($challenge->getChallengeId())];
    }

    /** Texts a code for $purpose and verifies it; the answer carries the proof token. */
    protected function passCode(string $account, int $purpose): VerifyResponse
    {
        [$challengeId, $code] = $this->sendCode($account, $purpose);
        $answer = $this->client->verifyCode($account, $purpose, $code, $challengeId);
        self::assertTrue($answer->getSuccess(), "the texted $purpose code was refused");
        return $answer;
    }

    /** Saves and verifies a number: SMS two-factor on. Returns Verify's answer (a manage_factors proof). */
    protected function verifiedAccount(string $account, string $phone = '+1 555 123 4567'): VerifyResponse
    {
        $this->client->savePhone($account, $phone);
        return $this->passCode($account, Purpose::PURPOSE_VERIFY_PHONE);
    }
}
