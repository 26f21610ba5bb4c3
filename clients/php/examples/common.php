<?php

/**
 * Shared by the examples: loads the client and reads what the user would type into the page.
 * In the shop these come from the HTTP request; here from STDIN, or from otpd's development
 * SMS outbox (one JSON line per text: to, body, purpose, challenge_id, expires_at).
 */

declare(strict_types=1);

$root = dirname(__DIR__);
require is_file("$root/vendor/autoload.php") ? "$root/vendor/autoload.php" : "$root/autoload.php";

/** The user's answer to $prompt: from the outbox when one is given and a text was sent, else STDIN. */
function ask(string $prompt, ?string $outbox = null, ?string $challengeId = null): string
{
    echo $prompt, ' ';
    if ($outbox !== null && $challengeId !== null) {
        $code = codeFromOutbox($outbox, $challengeId);
        echo "(from the outbox)\n";
        return $code;
    }
    $line = fgets(STDIN);
    if ($line === false) {
        echo "\n";
        fwrite(STDERR, "no input\n");
        exit(2);
    }
    if (!stream_isatty(STDIN)) {
        echo "\n";
    }
    return trim($line);
}

/** The code texted for a challenge, read from the outbox (waits up to 5 s for the line). */
function codeFromOutbox(string $outbox, string $challengeId): string
{
    $until = microtime(true) + 5.0;
    do {
        foreach (is_file($outbox) ? file($outbox, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) : [] as $line) {
            $text = json_decode($line, true);
            if (($text['challenge_id'] ?? null) === $challengeId && preg_match('/\b\d{6,10}\b/', $text['body'], $m)) {
                return $m[0];
            }
        }
        usleep(50_000);
    } while (microtime(true) < $until);
    fwrite(STDERR, "no text for challenge $challengeId in $outbox\n");
    exit(2);
}
