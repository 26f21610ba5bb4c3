<?php

/**
 * A PSR-4 autoloader for the otpd client without Composer: the library (Otpd\Client\ in src/),
 * the generated message classes (Otp\V1\ and GPBMetadata\Otp\V1\ in generated/), and, unless
 * the protobuf extension is loaded, the Google\Protobuf runtime from the include path (Debian's
 * php-google-protobuf installs it in /usr/share/php). With Composer, use vendor/autoload.php.
 */

declare(strict_types=1);

(static function (): void {
    $prefixes = [
        'Otpd\\Client\\' => __DIR__ . '/src/',
        'Otp\\V1\\' => __DIR__ . '/generated/Otp/V1/',
        'GPBMetadata\\Otp\\V1\\' => __DIR__ . '/generated/GPBMetadata/Otp/V1/',
    ];
    spl_autoload_register(static function (string $class) use ($prefixes): void {
        foreach ($prefixes as $prefix => $dir) {
            if (strncmp($class, $prefix, strlen($prefix)) === 0) {
                $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
                return;
            }
        }
        // The pure-PHP protobuf runtime (google/protobuf), found on the include path.
        if (strncmp($class, 'Google\\Protobuf\\', 16) === 0 || strncmp($class, 'GPBMetadata\\Google\\', 19) === 0) {
            $file = stream_resolve_include_path(str_replace('\\', '/', $class) . '.php');
            if ($file !== false) {
                require $file;
            }
        }
    });
})();
