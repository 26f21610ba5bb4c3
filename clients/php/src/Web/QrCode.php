<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

use BaconQrCode\Renderer\Image\SvgImageBackEnd;
use BaconQrCode\Renderer\ImageRenderer;
use BaconQrCode\Renderer\RendererStyle\RendererStyle;
use BaconQrCode\Writer;

/**
 * The authenticator page's QR code, drawn in PHP by bacon/bacon-qr-code (Debian:
 * php-bacon-qr-code) as SVG and put in the page as a data: URI, so the otpauth:// URI with its
 * secret never leaves the server in a URL of its own, and no image endpoint, cache or log holds it.
 * Pure PHP: no extension (SVG needs neither GD nor Imagick), no process to start.
 */
final class QrCode
{
    public static function available(): bool
    {
        if (!class_exists(Writer::class)) {
            $debian = stream_resolve_include_path('Bacon/BaconQrCode/autoload.php');
            if ($debian !== false) {
                require_once $debian;
            }
        }
        return class_exists(Writer::class);
    }

    /** A data: URI of an SVG image of $text, or null when the QR library is missing. */
    public static function svgDataUri(string $text, int $size = 240): ?string
    {
        if (!self::available()) {
            return null;
        }
        $writer = new Writer(new ImageRenderer(new RendererStyle($size, 2), new SvgImageBackEnd()));
        return 'data:image/svg+xml;base64,' . base64_encode($writer->writeString($text));
    }
}
