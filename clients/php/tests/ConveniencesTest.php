<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otpd\Client\Factor;
use Otpd\Client\Proof;
use Otpd\Client\Purpose;
use Otpd\Client\Tests\Support\OtpdTestCase;
use Otpd\Client\Tests\Support\Totp;
use Otpd\Client\TwoFactorClient;

/** The typed methods of TwoFactorClient (enums, Proof) against the real daemon. */
final class ConveniencesTest extends OtpdTestCase
{
    public function testClientIsTheInterfaceShopsMock(): void
    {
        self::assertInstanceOf(TwoFactorClient::class, $this->client);
    }

    public function testProofFactoriesMakeOneKindAndHideTheValue(): void
    {
        self::assertSame('tok', Proof::fromToken('tok')->toMessage()->getToken());
        self::assertSame('123456', Proof::fromTotp('123456')->toMessage()->getTotpCode());
        self::assertSame('k7mq-2xtp', Proof::fromBackupCode('k7mq-2xtp')->toMessage()->getBackupCode());
        self::assertSame('totp_code', Proof::fromTotp('123456')->kind());
        self::assertStringNotContainsString('654321', print_r(Proof::fromTotp('654321'), true));
        $this->expectException(\InvalidArgumentException::class);
        Proof::fromToken('');
    }

    public function testAMissingProtobufRuntimeSaysWhatToInstall(): void
    {
        // A PHP without the protobuf extension and with an include path that has no runtime.
        $script = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
            . 'try { new Otpd\\Client\\Client("/x"); } catch (LogicException $e) { echo $e->getMessage(); }';
        $php = escapeshellarg(PHP_BINARY) . ' -n -d include_path=/nonexistent';
        $output = shell_exec("$php -r " . escapeshellarg($script));
        self::assertStringContainsString('protobuf runtime is missing', (string) $output);
        self::assertStringContainsString('apt-get install php-google-protobuf', (string) $output);
    }

    public function testEnumsCarryTheWireValues(): void
    {
        self::assertSame(\Otp\V1\Purpose::PURPOSE_CHANGE_PHONE, Purpose::ChangePhone->value);
        self::assertSame(\Otp\V1\Purpose::PURPOSE_MANAGE_FACTORS, Purpose::ManageFactors->value);
        self::assertSame(\Otp\V1\Factor::FACTOR_TOTP, Factor::Totp->value);
        self::assertSame(Factor::Sms, Factor::fromWire(\Otp\V1\Factor::FACTOR_SMS));
        self::assertNull(Factor::fromWire(0));
    }

    public function testAWholeLifecycleWithEnumsAndProofs(): void
    {
        $account = $this->account();
        $otpd = $this->client;
        $otpd->savePhone($account, '+1 555 123 4567');
        $challenge = $otpd->sendCode($account, Purpose::VerifyPhone);
        $code = self::daemon()->code($challenge->getChallengeId());
        $verified = $otpd->verifyCode($account, Purpose::VerifyPhone, $code, $challenge->getChallengeId());
        self::assertTrue($verified->getSuccess());

        $codes = $otpd->newBackupCodes($account, Proof::fromToken($verified->getProofToken()))->getCodes();
        self::assertCount(10, $codes);

        // An authenticator, with a manage_factors proof from a texted code.
        $manage = $otpd->sendCode($account, Purpose::ManageFactors);
        $token = $otpd->verifyCode(
            $account,
            Purpose::ManageFactors,
            self::daemon()->code($manage->getChallengeId()),
            $manage->getChallengeId(),
        )->getProofToken();
        $secret = $otpd->beginAuthenticator($account, Proof::fromToken($token), 'Shop admin')->getSecretBase32();
        self::assertTrue($otpd->confirmAuthenticator($account, Totp::now($secret))->getSuccess());

        // The preferred method with a backup code is refused (not a manage_factors proof by default)...
        try {
            $otpd->choosePreferredMethod($account, Factor::Totp, Proof::fromBackupCode($codes[0]));
            self::fail('a backup code proved manage_factors');
        } catch (\Otpd\Client\Exception\PermissionDeniedException) {
        }
        // ... a backup code turns SMS off (disable_factor allows one: a lost phone).
        $status = $otpd->turnOffFactor($account, Factor::Sms, Proof::fromBackupCode($codes[1]))->getStatus();
        self::assertFalse($status->getSmsEnabled());
        self::assertTrue($status->getTotpEnabled());
        $redeemed = $otpd->useBackupCode($account, $codes[2]);
        self::assertTrue($redeemed->getSuccess());
        self::assertSame(8, $redeemed->getRemaining());
    }
}
