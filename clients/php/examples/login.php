<?php

/**
 * The second step of the shop's admin login, after the password was checked.
 *
 *   php examples/login.php SOCKET ACCOUNT [OUTBOX]
 *
 * Asks for the second factor the user prefers: a code texted to the verified number, or an
 * authenticator code. A backup code is accepted instead of either. Texted codes are read from
 * otpd's development OUTBOX when given, else typed in. Exit status 0: signed in.
 */

declare(strict_types=1);

require __DIR__ . '/common.php';

use Otp\V1\Factor;
use Otp\V1\Purpose;
use Otp\V1\RedeemBackupCodeRequest;
use Otpd\Client\Client;
use Otpd\Client\Exception\LockedException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\RateLimitedException;

if ($argc < 3) {
    fwrite(STDERR, "usage: php login.php SOCKET ACCOUNT [OUTBOX]\n");
    exit(2);
}
[, $socket, $account] = $argv;
$outbox = $argv[3] ?? null;
$otpd = new Client($socket);

/** The lock in words: its end, or that only an administrator can end it. */
function lockMessage(int $lockedUntil): string
{
    $end = Client::lockEnd($lockedUntil);
    return $end === null
        ? 'Too many wrong codes. The account stays locked until an administrator unlocks it.'
        : 'Too many wrong codes. Try again after '
            . $end->setTimezone(new DateTimeZone(date_default_timezone_get()))->format('H:i T') . '.';
}

try {
    $status = $otpd->status($account);
    if ($status->getSetupRequired()) {
        echo "Choose SMS/text messages as your authentication method and set it up on your profile page.\n";
        exit(1);
    }
    if ($status->getLocked()) {
        echo lockMessage((int) $status->getLockedUntil()), "\n";
        exit(1);
    }

    $challengeId = '';
    if ($status->getPreferredMethod() === Factor::FACTOR_TOTP) {
        $code = ask('Code from your authenticator app (or a backup code):');
    } else {
        $challenge = $otpd->sendCode($account, Purpose::PURPOSE_LOGIN);
        $challengeId = $challenge->getChallengeId();
        $code = ask("Code texted to {$challenge->getDestinationMasked()} (or a backup code):", $outbox, $challengeId);
    }

    if (ctype_digit($code)) {
        $answer = $otpd->verifyCode($account, Purpose::PURPOSE_LOGIN, $code, $challengeId);
        if ($answer->getSuccess()) {
            $with = $answer->getFactor() === Factor::FACTOR_TOTP ? 'an authenticator code' : 'a texted code';
            echo "Signed in with $with.\n";
            exit(0);
        }
    } else {
        $answer = $otpd->redeemBackupCode(new RedeemBackupCodeRequest(['account_id' => $account, 'code' => $code]));
        if ($answer->getSuccess()) {
            echo "Signed in with a backup code. {$answer->getRemaining()} left.\n";
            if ($answer->getLow()) {
                echo "You are running out of backup codes: make a new set on your profile page.\n";
            }
            exit(0);
        }
    }
    echo "The code is not valid.\n";
    if ($answer->getLockedUntil() > 0) {
        echo lockMessage((int) $answer->getLockedUntil()), "\n";
    }
    exit(1);
} catch (RateLimitedException $e) {
    echo "Too many codes. Try again in {$e->retryAfterSeconds()} seconds.\n";
    exit(1);
} catch (LockedException $e) {
    echo 'Too many wrong codes. Try again after ', $e->lockedUntil()->format('H:i T'), ".\n";
    exit(1);
} catch (OtpdException $e) {
    fwrite(STDERR, "otpd: {$e->getStatusName()}: {$e->getMessage()}\n");
    exit(1);
}
