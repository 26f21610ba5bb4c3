<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otp\V1\BeginTotpEnrollmentRequest;
use Otp\V1\ConfirmTotpEnrollmentRequest;
use Otp\V1\DisableFactorRequest;
use Otp\V1\Factor;
use Otp\V1\GenerateBackupCodesRequest;
use Otp\V1\GetStatusRequest;
use Otp\V1\HealthRequest;
use Otp\V1\ListEventsRequest;
use Otp\V1\Proof;
use Otp\V1\Purpose;
use Otp\V1\RedeemBackupCodeRequest;
use Otp\V1\ResetAccountRequest;
use Otp\V1\ServerInfoRequest;
use Otp\V1\SetPhoneRequest;
use Otp\V1\SetPreferredMethodRequest;
use Otp\V1\StartChallengeRequest;
use Otp\V1\UnlockAccountRequest;
use Otp\V1\VerifyRequest;
use Otpd\Client\Exception\LockedException;
use Otpd\Client\Tests\Support\Outbox;
use Otpd\Client\Tests\Support\OtpdTestCase;
use Otpd\Client\Tests\Support\Totp;

/** Every RPC of otp.v1.TwoFactor through the typed methods, against the real daemon. */
final class RpcTest extends OtpdTestCase
{
    public function testHealthAndServerInfo(): void
    {
        self::assertSame('SERVING', $this->client->health(new HealthRequest())->getStatus());
        $info = $this->client->serverInfo(new ServerInfoRequest(), 2.0);
        self::assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', $info->getVersion());
        self::assertSame(self::daemon()->dir . '/otpd.sqlite', $info->getDatabasePath());
        self::assertGreaterThan(0, $info->getSchemaVersion());
        self::assertGreaterThanOrEqual(1, $info->getConnections());
        self::assertSame('outbox', $info->getSmsSender());
        self::assertEqualsWithDelta(time(), (int) $info->getStartedAt(), 120);
    }

    public function testGetStatusOfAnUnknownAccountIsEmpty(): void
    {
        $status = $this->client->getStatus(new GetStatusRequest(['account_id' => $this->account()]));
        self::assertSame($this->account(), $status->getAccountId());
        self::assertTrue($status->getSetupRequired());
        self::assertSame('', $status->getPhoneMasked());
        self::assertFalse($status->getPhoneVerified());
        self::assertFalse($status->getSmsEnabled());
        self::assertFalse($status->getLocked());
        self::assertSame(0, $status->getBackupCodesRemaining());
    }

    public function testSaveNumberSendCodeAndVerify(): void
    {
        $account = $this->account();
        $saved = $this->client->setPhone(new SetPhoneRequest([
            'account_id' => $account,
            'phone_number' => '+1 555 123 4567',
        ]));
        self::assertFalse($saved->getPending());
        self::assertSame('+1******4567', $saved->getStatus()->getPhoneMasked());
        self::assertFalse($saved->getStatus()->getPhoneVerified(), 'The phone number is not verified');
        self::assertTrue($saved->getStatus()->getSetupRequired());

        $challenge = $this->client->startChallenge(new StartChallengeRequest([
            'account_id' => $account,
            'purpose' => Purpose::PURPOSE_VERIFY_PHONE,
        ]));
        self::assertStringStartsWith('ch_', $challenge->getChallengeId());
        self::assertSame('+1******4567', $challenge->getDestinationMasked());
        self::assertSame(6, $challenge->getCodeLength());
        self::assertGreaterThan(time(), (int) $challenge->getExpiresAt());
        $text = Outbox::message(self::daemon()->outbox, $challenge->getChallengeId());
        self::assertSame('+15551234567', $text['to']);
        self::assertSame('verify_phone', $text['purpose']);
        $code = self::daemon()->code($challenge->getChallengeId());

        // A wrong code is an answer, not an exception.
        $wrong = $this->client->verify(new VerifyRequest([
            'account_id' => $account,
            'purpose' => Purpose::PURPOSE_VERIFY_PHONE,
            'code' => $code === '000000' ? '111111' : '000000',
            'challenge_id' => $challenge->getChallengeId(),
        ]));
        self::assertFalse($wrong->getSuccess());
        self::assertSame(4, $wrong->getAttemptsLeft());
        self::assertSame('', $wrong->getProofToken());

        $right = $this->client->verify(new VerifyRequest([
            'account_id' => $account,
            'purpose' => Purpose::PURPOSE_VERIFY_PHONE,
            'code' => $code,
            'challenge_id' => $challenge->getChallengeId(),
        ]));
        self::assertTrue($right->getSuccess());
        self::assertSame(Factor::FACTOR_SMS, $right->getFactor());
        self::assertStringStartsWith(
            'pf_',
            $right->getProofToken(),
            'a manage_factors proof for the first backup codes',
        );
        self::assertTrue($right->getStatus()->getPhoneVerified(), 'The phone number is verified');
        self::assertTrue($right->getStatus()->getSmsEnabled());
        self::assertFalse($right->getStatus()->getSetupRequired());
        self::assertSame(0, $right->getStatus()->getConsecutiveFailures());

        // Single use.
        $challengeId = $challenge->getChallengeId();
        $again = $this->client->verifyCode($account, Purpose::PURPOSE_VERIFY_PHONE, $code, $challengeId);
        self::assertFalse($again->getSuccess());
    }

    public function testLoginWithATextedCode(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        [$challengeId, $code] = $this->sendCode($account, Purpose::PURPOSE_LOGIN);
        self::assertSame('login', Outbox::message(self::daemon()->outbox, $challengeId)['purpose']);
        // A login code is only good for logging in.
        $otherPurpose = $this->client->verifyCode($account, Purpose::PURPOSE_CHANGE_PHONE, $code, $challengeId);
        self::assertFalse($otherPurpose->getSuccess());
        $login = $this->client->verifyCode($account, Purpose::PURPOSE_LOGIN, $code, $challengeId);
        self::assertTrue($login->getSuccess());
        self::assertSame(Factor::FACTOR_SMS, $login->getFactor());
    }

    public function testChangeNumberWithAProofFromTheCurrentNumber(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account, '+1 555 123 4567');
        [$challengeId, $code] = $this->sendCode($account, Purpose::PURPOSE_CHANGE_PHONE);
        $to = Outbox::message(self::daemon()->outbox, $challengeId)['to'];
        self::assertSame('+15551234567', $to, 'texted to the current number');
        $proof = $this->client->verifyCode($account, Purpose::PURPOSE_CHANGE_PHONE, $code, $challengeId);
        self::assertTrue($proof->getSuccess());
        self::assertStringStartsWith('pf_', $proof->getProofToken());

        $proposed = $this->client->setPhone(new SetPhoneRequest([
            'account_id' => $account,
            'phone_number' => '+44 20 7946 0958',
            'proof' => new Proof(['token' => $proof->getProofToken()]),
        ]));
        self::assertTrue($proposed->getPending());
        self::assertSame('+1******4567', $proposed->getStatus()->getPhoneMasked(), 'the old number keeps working');
        self::assertSame('+44******0958', $proposed->getStatus()->getPendingPhoneMasked());

        [$challengeId, $code] = $this->sendCode($account, Purpose::PURPOSE_VERIFY_PHONE);
        $to = Outbox::message(self::daemon()->outbox, $challengeId)['to'];
        self::assertSame('+442079460958', $to, 'texted to the new number');
        $verified = $this->client->verifyCode($account, Purpose::PURPOSE_VERIFY_PHONE, $code, $challengeId);
        self::assertTrue($verified->getSuccess());
        self::assertSame('+44******0958', $verified->getStatus()->getPhoneMasked());
        self::assertSame('', $verified->getStatus()->getPendingPhoneMasked());
        self::assertTrue($verified->getStatus()->getPhoneVerified());
    }

    public function testBackupCodesGenerateAndRedeemOnce(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $set = $this->client->generateBackupCodes(new GenerateBackupCodesRequest([
            'account_id' => $account,
            'proof' => new Proof(['token' => $proof]),
        ]));
        $codes = iterator_to_array($set->getCodes());
        self::assertCount(10, $codes);
        self::assertCount(10, array_unique($codes));
        foreach ($codes as $code) {
            self::assertSame(16, strlen(str_replace('-', '', $code)), $code);
        }
        self::assertEqualsWithDelta(time(), (int) $set->getGeneratedAt(), 60);
        self::assertSame(10, $this->client->status($account)->getBackupCodesRemaining());

        $redeemed = $this->client->redeemBackupCode(new RedeemBackupCodeRequest([
            'account_id' => $account,
            'code' => $codes[0],
        ]));
        self::assertTrue($redeemed->getSuccess());
        self::assertSame(9, $redeemed->getRemaining());
        self::assertFalse($redeemed->getLow());

        $reused = $this->client->redeemBackupCode(new RedeemBackupCodeRequest([
            'account_id' => $account,
            'code' => $codes[0],
        ]));
        self::assertFalse($reused->getSuccess(), 'a backup code works once');
        self::assertSame(1, $this->client->status($account)->getConsecutiveFailures());
    }

    public function testAuthenticatorEnrolmentLoginPreferenceAndTurningItOff(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        // Adding an authenticator to an account with a factor needs a manage_factors proof.
        $manage = $this->passCode($account, Purpose::PURPOSE_MANAGE_FACTORS);
        $enrolment = $this->client->beginTotpEnrollment(new BeginTotpEnrollmentRequest([
            'account_id' => $account,
            'proof' => new Proof(['token' => $manage->getProofToken()]),
            'label' => 'alice@shop',
        ]));
        $secret = $enrolment->getSecretBase32();
        self::assertSame(20, strlen(Totp::base32Decode($secret)), '160-bit secret');
        self::assertStringStartsWith('otpauth://totp/', $enrolment->getOtpauthUri());
        self::assertStringContainsString('secret=' . $secret, $enrolment->getOtpauthUri());
        self::assertGreaterThan(time(), (int) $enrolment->getExpiresAt());

        $now = time();
        $valid = array_map(
            static fn (int $t) => Totp::now($secret, $t),
            [$now - 60, $now - 30, $now, $now + 30, $now + 60],
        );
        $wrong = $this->client->confirmTotpEnrollment(new ConfirmTotpEnrollmentRequest([
            'account_id' => $account,
            'code' => array_values(array_diff(['123456', '654321', '000000'], $valid))[0],
        ]));
        self::assertFalse($wrong->getSuccess());
        $confirmed = $this->client->confirmTotpEnrollment(new ConfirmTotpEnrollmentRequest([
            'account_id' => $account,
            'code' => Totp::now($secret, $now),
        ]));
        self::assertTrue($confirmed->getSuccess());
        self::assertTrue($confirmed->getStatus()->getTotpEnabled());
        self::assertSame('', $confirmed->getProofToken(), 'no enrolment grace: the account had SMS on');

        // Authenticator codes need no challenge. The step just used is spent: take the next one
        // (inside the ±1 step window).
        $login = $this->client->verifyCode($account, Purpose::PURPOSE_LOGIN, Totp::now($secret, $now + 30));
        self::assertTrue($login->getSuccess());
        self::assertSame(Factor::FACTOR_TOTP, $login->getFactor());
        $replay = $this->client->verifyCode($account, Purpose::PURPOSE_LOGIN, Totp::now($secret, $now + 30));
        self::assertFalse($replay->getSuccess(), 'the same step is refused');

        // Changing the preferred method needs a manage_factors proof too (the step-up table).
        $preferred = $this->client->setPreferredMethod(new SetPreferredMethodRequest([
            'account_id' => $account,
            'method' => Factor::FACTOR_TOTP,
            'proof' => new Proof([
                'token' => $this->passCode($account, Purpose::PURPOSE_MANAGE_FACTORS)->getProofToken(),
            ]),
        ]));
        self::assertSame(Factor::FACTOR_TOTP, $preferred->getStatus()->getPreferredMethod());

        $disable = $this->passCode($account, Purpose::PURPOSE_DISABLE_FACTOR);
        $off = $this->client->disableFactor(new DisableFactorRequest([
            'account_id' => $account,
            'factor' => Factor::FACTOR_TOTP,
            'proof' => new Proof(['token' => $disable->getProofToken()]),
        ]));
        self::assertFalse($off->getStatus()->getTotpEnabled());
        self::assertTrue($off->getStatus()->getSmsEnabled());
        self::assertSame(Factor::FACTOR_SMS, $off->getStatus()->getPreferredMethod());
    }

    public function testListEventsNewestFirstPagedAndWithoutSecrets(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account, '+1 555 123 4567');
        [$challengeId, $code] = $this->sendCode($account, Purpose::PURPOSE_LOGIN);
        $this->client->verifyCode($account, Purpose::PURPOSE_LOGIN, $code, $challengeId);

        $all = $this->client->listEvents(new ListEventsRequest(['account_id' => $account, 'page_size' => 500]));
        $events = iterator_to_array($all->getEvents());
        self::assertGreaterThanOrEqual(4, count($events));
        self::assertSame(0, (int) $all->getNextBeforeId());
        $ids = array_map(static fn ($e) => (int) $e->getId(), $events);
        $sorted = $ids;
        rsort($sorted);
        self::assertSame($sorted, $ids, 'newest first');
        foreach ($events as $event) {
            self::assertSame($account, $event->getAccountId());
            $text = $event->serializeToJsonString();
            self::assertStringNotContainsString('5551234567', $text, 'never the full number');
            self::assertStringNotContainsString('"' . $code . '"', $text, 'never a code');
            self::assertGreaterThan(0, (int) $event->getAtMs());
        }
        $kinds = array_map(static fn ($e) => $e->getKind(), $events);
        self::assertNotEmpty(array_filter($kinds, static fn ($k) => str_contains($k, 'verif')), implode(',', $kinds));

        $first = $this->client->listEvents(new ListEventsRequest(['account_id' => $account, 'page_size' => 2]));
        self::assertCount(2, $first->getEvents());
        self::assertSame($ids[1], (int) $first->getNextBeforeId());
        $second = $this->client->listEvents(new ListEventsRequest([
            'account_id' => $account,
            'page_size' => 2,
            'before_id' => $first->getNextBeforeId(),
        ]));
        self::assertSame($ids[2], (int) $second->getEvents()[0]->getId());
    }

    public function testLockoutThenUnlockByAnAdministrator(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        for ($i = 1; $i <= 10; $i++) {
            $answer = $this->client->verifyCode($account, Purpose::PURPOSE_LOGIN, '000000');
            self::assertFalse($answer->getSuccess());
        }
        self::assertGreaterThan(time(), (int) $answer->getLockedUntil(), 'the 10th failure locks');
        $status = $this->client->status($account);
        self::assertTrue($status->getLocked());
        self::assertSame(10, $status->getConsecutiveFailures());

        try {
            $this->client->sendCode($account, Purpose::PURPOSE_LOGIN);
            self::fail('a locked account gets no code');
        } catch (LockedException $e) {
            self::assertSame(7, $e->getCode());
            self::assertSame('PERMISSION_DENIED', $e->getStatusName());
            self::assertSame((int) $status->getLockedUntil(), $e->lockedUntil()->getTimestamp());
            self::assertGreaterThan(0, $e->retryAfterSeconds());
            self::assertLessThanOrEqual(60, $e->retryAfterSeconds());
        }

        $unlocked = $this->client->unlockAccount(new UnlockAccountRequest([
            'account_id' => $account,
            'actor' => 'support@shop',
            'reason' => 'called support',
        ]));
        self::assertFalse($unlocked->getStatus()->getLocked());
        self::assertSame(0, $unlocked->getStatus()->getConsecutiveFailures());
        $this->passCode($account, Purpose::PURPOSE_LOGIN);
    }

    public function testResetAccountRemovesEveryFactorButKeepsEvents(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $reset = $this->client->resetAccount(new ResetAccountRequest([
            'account_id' => $account,
            'actor' => 'admin',
            'reason' => 'lost everything',
        ]));
        self::assertTrue($reset->getStatus()->getSetupRequired());
        self::assertSame('', $reset->getStatus()->getPhoneMasked());
        self::assertFalse($reset->getStatus()->getSmsEnabled());
        self::assertTrue($this->client->status($account)->getSetupRequired());
        $events = $this->client->listEvents(new ListEventsRequest(['account_id' => $account]));
        self::assertGreaterThanOrEqual(3, count($events->getEvents()));
    }
}
