<?php

declare(strict_types=1);

namespace Otpd\Client;

use Otp\V1\AccountStatus;
use Otp\V1\BeginTotpEnrollmentResponse;
use Otp\V1\ConfirmTotpEnrollmentResponse;
use Otp\V1\DisableFactorResponse;
use Otp\V1\GenerateBackupCodesResponse;
use Otp\V1\HealthRequest;
use Otp\V1\HealthResponse;
use Otp\V1\Proof as ProofMessage;
use Otp\V1\RedeemBackupCodeResponse;
use Otp\V1\SetPhoneResponse;
use Otp\V1\SetPreferredMethodResponse;
use Otp\V1\StartChallengeResponse;
use Otp\V1\VerifyResponse;
use Otpd\Client\Exception\OtpdException;

/**
 * What a shop's pages ask of otpd: one method per RPC they use, with enums for purposes and
 * factors and Proof for the step-up. Client implements it; the shop's own tests can mock it
 * (the integration in Otpd\Client\Web takes this interface, not the class).
 *
 * Every method throws an OtpdException subclass when the call does not succeed. A wrong code
 * is not a failure: verifyCode(), confirmAuthenticator() and useBackupCode() answer with
 * success = false.
 */
interface TwoFactorClient
{
    /**
     * Health: "SERVING" while the daemon accepts calls.
     *
     * @throws OtpdException
     */
    public function health(?HealthRequest $request = null, ?float $timeout = null): HealthResponse;

    /**
     * GetStatus: what the profile page shows for one account (an unknown account is an empty one).
     *
     * @throws OtpdException
     */
    public function status(string $accountId, ?float $timeout = null): AccountStatus;

    /**
     * SetPhone: saves a number ("not verified"); with a verified one, holds the new one pending
     * until verified. Needs a change_phone proof to replace a verified number, a manage_factors
     * proof when another factor is on.
     *
     * @throws OtpdException
     */
    public function savePhone(
        string $accountId,
        string $phoneNumber,
        Proof|ProofMessage|null $proof = null,
        ?float $timeout = null,
    ): SetPhoneResponse;

    /**
     * StartChallenge: texts a code for $purpose (verify_phone: to the saved or pending number;
     * any other: to the verified number).
     *
     * @throws OtpdException e.g. RateLimitedException with retryAfterSeconds()
     */
    public function sendCode(string $accountId, Purpose|int $purpose, ?float $timeout = null): StartChallengeResponse;

    /**
     * Verify: checks a code for $purpose; the challenge id of a texted code, '' for an
     * authenticator code. Test getSuccess(); a success for a step-up purpose carries a proof token.
     *
     * @throws OtpdException
     */
    public function verifyCode(
        string $accountId,
        Purpose|int $purpose,
        string $code,
        string $challengeId = '',
        ?float $timeout = null,
    ): VerifyResponse;

    /**
     * BeginTotpEnrollment: a new authenticator secret and its otpauth:// URI, on once confirmed.
     * Needs a manage_factors proof when the account has any active factor.
     *
     * @throws OtpdException
     */
    public function beginAuthenticator(
        string $accountId,
        Proof|ProofMessage|null $proof = null,
        string $label = '',
        ?float $timeout = null,
    ): BeginTotpEnrollmentResponse;

    /**
     * ConfirmTotpEnrollment: turns the authenticator on with a first code from it.
     *
     * @throws OtpdException
     */
    public function confirmAuthenticator(
        string $accountId,
        string $code,
        ?float $timeout = null,
    ): ConfirmTotpEnrollmentResponse;

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
    ): DisableFactorResponse;

    /**
     * GenerateBackupCodes: a new set (shown once; the old set stops working). manage_factors proof.
     *
     * @throws OtpdException
     */
    public function newBackupCodes(
        string $accountId,
        Proof|ProofMessage $proof,
        ?float $timeout = null,
    ): GenerateBackupCodesResponse;

    /**
     * RedeemBackupCode: uses up one backup code, e.g. to sign in.
     *
     * @throws OtpdException
     */
    public function useBackupCode(string $accountId, string $code, ?float $timeout = null): RedeemBackupCodeResponse;

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
    ): SetPreferredMethodResponse;
}
