<?php

/**
 * One contender of the concurrent redemption test, run as its own PHP process:
 *
 *   php redeem-backup-code.php SOCKET ACCOUNT CODE START_AT
 *
 * Connects (a Health call warms the connection), sleeps until the Unix time START_AT (a float
 * shared by all contenders), redeems CODE and prints the answer as JSON.
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/autoload.php';

use Otp\V1\RedeemBackupCodeRequest;
use Otpd\Client\Client;
use Otpd\Client\Exception\OtpdException;

[, $socket, $account, $code, $startAt] = $argv;
$client = new Client($socket, 10.0);
$client->health();
time_sleep_until((float) $startAt);
try {
    $answer = $client->redeemBackupCode(new RedeemBackupCodeRequest(['account_id' => $account, 'code' => $code]));
    echo json_encode([
        'success' => $answer->getSuccess(),
        'remaining' => $answer->getRemaining(),
        'at' => microtime(true),
    ]), "\n";
} catch (OtpdException $e) {
    echo json_encode(['error' => $e->getStatusName(), 'message' => $e->getMessage()]), "\n";
    exit(1);
}
