<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

/** Reads the dev SMS sender's outbox: one JSON object per line (to, body, purpose, challenge_id, ...). */
final class Outbox
{
    /** @return list<array<string, mixed>> */
    public static function messages(string $path): array
    {
        if (!is_file($path)) {
            return [];
        }
        $messages = [];
        foreach (file($path, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
            $messages[] = json_decode($line, true, 16, JSON_THROW_ON_ERROR);
        }
        return $messages;
    }

    /** The message texted for a challenge; fails when there is not exactly one. */
    public static function message(string $path, string $challengeId): array
    {
        $found = array_values(array_filter(
            self::messages($path),
            static fn (array $m): bool => ($m['challenge_id'] ?? null) === $challengeId,
        ));
        if (count($found) !== 1) {
            throw new \RuntimeException(count($found) . " outbox messages for challenge $challengeId in $path");
        }
        return $found[0];
    }

    /** The code texted for a challenge. */
    public static function code(string $path, string $challengeId): string
    {
        $body = (string) self::message($path, $challengeId)['body'];
        if (preg_match('/\b(\d{6,10})\b/', $body, $m) !== 1) {
            throw new \RuntimeException("no code in the text: $body");
        }
        return $m[1];
    }
}
