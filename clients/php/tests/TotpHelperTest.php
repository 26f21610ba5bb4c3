<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otpd\Client\Tests\Support\Totp;
use PHPUnit\Framework\TestCase;

/** The tests' own authenticator (Support/Totp.php) against RFC 6238 Appendix B and RFC 4648. */
final class TotpHelperTest extends TestCase
{
    /** @return iterable<array{int, string}> RFC 6238 Appendix B, SHA-1 */
    public static function rfc6238(): iterable
    {
        yield [59, '94287082'];
        yield [1111111109, '07081804'];
        yield [1111111111, '14050471'];
        yield [1234567890, '89005924'];
        yield [2000000000, '69279037'];
        yield [20000000000, '65353130'];
    }

    /** @dataProvider rfc6238 */
    public function testRfc6238Vectors(int $time, string $expected): void
    {
        self::assertSame($expected, Totp::code('12345678901234567890', $time, 8));
        self::assertSame(substr($expected, 2), Totp::code('12345678901234567890', $time, 6));
    }

    public function testBase32(): void
    {
        self::assertSame('foobar', Totp::base32Decode('MZXW6YTBOI======'));
        self::assertSame('foobar', Totp::base32Decode('mzxw6ytboi'));
        self::assertSame('12345678901234567890', Totp::base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'));
    }
}
