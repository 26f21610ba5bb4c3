<?php

/**
 * The shop's profile page, "SMS/Text message configure", from the command line.
 *
 *   php examples/profile.php SOCKET ACCOUNT PHONE [OUTBOX]
 *
 * First run: saves PHONE ("The phone number is not verified"), sends a verification code,
 * verifies it ("The phone number is verified") and makes the first backup codes.
 * Run again with another PHONE to change the number: a code texted to the current number (or
 * an authenticator code) proves the change, then the new number is verified the same way.
 * It follows otpd's step-up table (docs/SECURITY.md): once the account has any factor, saving
 * a number needs a proof from a current one (change_phone when a number is verified,
 * manage_factors when only an authenticator or backup codes are on), and only the first
 * enrolment of an account returns the proof for its first backup codes.
 * Codes are read from otpd's development OUTBOX when given, else typed in.
 */

declare(strict_types=1);

require __DIR__ . '/common.php';

use Otp\V1\GenerateBackupCodesRequest;
use Otp\V1\Proof;
use Otp\V1\Purpose;
use Otpd\Client\Client;
use Otpd\Client\Exception\AlreadyExistsException;
use Otpd\Client\Exception\LockedException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\RateLimitedException;

if ($argc < 4) {
    fwrite(STDERR, "usage: php profile.php SOCKET ACCOUNT PHONE [OUTBOX]\n");
    exit(2);
}
[, $socket, $account, $phone] = $argv;
$outbox = $argv[4] ?? null;
$otpd = new Client($socket);

try {
    $status = $otpd->status($account);

    // Once any factor is on, saving a number needs a proof from a current one: a code texted
    // to the current number, or an authenticator code (the product treats the two as
    // interchangeable), or, when backup codes are all that is left, a backup code.
    $proof = null;
    $hasFactor = $status->getPhoneVerified() || $status->getTotpEnabled() || $status->getBackupCodesRemaining() > 0;
    $purpose = $status->getPhoneVerified() ? Purpose::PURPOSE_CHANGE_PHONE : Purpose::PURPOSE_MANAGE_FACTORS;
    if ($hasFactor) {
        if ($status->getTotpEnabled() && ($outbox === null || !$status->getPhoneVerified())) {
            $prompt = $status->getPhoneVerified()
                ? 'Authenticator code (or press Enter to get a text):'
                : 'Authenticator code:';
            $code = ask($prompt);
            $proof = $code === '' ? null : new Proof(['totp_code' => $code]);
        } elseif (!$status->getPhoneVerified()) {
            $proof = new Proof(['backup_code' => ask('One of your backup codes:')]);
        }
        if ($proof === null) {
            $challenge = $otpd->sendCode($account, $purpose);
            $code = ask(
                "Code sent to your current number {$challenge->getDestinationMasked()}:",
                $outbox,
                $challenge->getChallengeId(),
            );
            $answer = $otpd->verifyCode($account, $purpose, $code, $challenge->getChallengeId());
            if (!$answer->getSuccess()) {
                echo "The code is not valid.\n";
                exit(1);
            }
            $proof = new Proof(['token' => $answer->getProofToken()]);
        }
    }

    // Save.
    $saved = $otpd->savePhone($account, $phone, $proof);
    $shown = $saved->getPending()
        ? $saved->getStatus()->getPendingPhoneMasked()
        : $saved->getStatus()->getPhoneMasked();
    echo "Saved $shown. The phone number is not verified.\n";

    // Send verification code, then Verify.
    $challenge = $otpd->sendCode($account, Purpose::PURPOSE_VERIFY_PHONE);
    $masked = $challenge->getDestinationMasked();
    $code = ask("Verification code sent to $masked:", $outbox, $challenge->getChallengeId());
    $answer = $otpd->verifyCode($account, Purpose::PURPOSE_VERIFY_PHONE, $code, $challenge->getChallengeId());
    if (!$answer->getSuccess()) {
        echo "The code is not valid ({$answer->getAttemptsLeft()} attempts left). Send a new code to try again.\n";
        exit(1);
    }
    echo "The phone number is verified: {$answer->getStatus()->getPhoneMasked()}.\n";

    // The first backup codes: only the account's first enrolment carries the proof they need.
    // Later, a new set is made from the profile page with a manage_factors proof.
    if ($answer->getProofToken() !== '') {
        $set = $otpd->generateBackupCodes(new GenerateBackupCodesRequest([
            'account_id' => $account,
            'proof' => new Proof(['token' => $answer->getProofToken()]),
        ]));
        echo "Your backup codes. Each works once; save them now, they are not shown again:\n";
        foreach ($set->getCodes() as $backupCode) {
            echo "  $backupCode\n";
        }
    }
} catch (AlreadyExistsException $e) {
    echo $e->getMessage(), ".\n";
} catch (RateLimitedException $e) {
    echo "Too many codes. Try again in {$e->retryAfterSeconds()} seconds.\n";
    exit(1);
} catch (LockedException $e) {
    echo 'Too many wrong codes. The account is locked until ', $e->lockedUntil()->format('H:i T'), ".\n";
    exit(1);
} catch (OtpdException $e) {
    fwrite(STDERR, "otpd: {$e->getStatusName()}: {$e->getMessage()}\n");
    exit(1);
}
