<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

/** RFC 6238 TOTP (HMAC-SHA1) in plain PHP, as an authenticator app computes it. */
final class Totp
{
    /** Decodes RFC 4648 base32 (upper or lower case, padding optional). */
    public static function base32Decode(string $text): string
    {
        $alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
        $text = rtrim(strtoupper($text), '=');
        $bits = '';
        for ($i = 0; $i < strlen($text); $i++) {
            $value = strpos($alphabet, $text[$i]);
            if ($value === false) {
                throw new \InvalidArgumentException("not base32: {$text[$i]}");
            }
            $bits .= str_pad(decbin($value), 5, '0', STR_PAD_LEFT);
        }
        $bytes = '';
        foreach (str_split(substr($bits, 0, intdiv(strlen($bits), 8) * 8), 8) as $byte) {
            $bytes .= chr(bindec($byte));
        }
        return $bytes;
    }

    /** The code for $secret (raw bytes) at Unix time $time. */
    public static function code(string $secret, int $time, int $digits = 6, int $step = 30): string
    {
        $counter = intdiv($time, $step);
        $hmac = hash_hmac('sha1', pack('J', $counter), $secret, true);
        $offset = ord($hmac[19]) & 0x0f;
        $binary = ((ord($hmac[$offset]) & 0x7f) << 24) | (ord($hmac[$offset + 1]) << 16)
            | (ord($hmac[$offset + 2]) << 8) | ord($hmac[$offset + 3]);
        return str_pad((string) ($binary % (10 ** $digits)), $digits, '0', STR_PAD_LEFT);
    }

    /** The code of a base32 secret at $time (default: now). */
    public static function now(string $secretBase32, ?int $time = null): string
    {
        return self::code(self::base32Decode($secretBase32), $time ?? time());
    }
}
