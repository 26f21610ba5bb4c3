<?php

/**
 * PHPUnit bootstrap: loads the client (Composer's autoloader when vendor/ exists, else
 * autoload.php), checks the PHP runtime, and starts the otpd shared by the tests on a temporary
 * directory (<repo>/.build/debug/otpd or $OTPD_BIN). Every daemon is stopped when PHP exits.
 */

declare(strict_types=1);

$root = dirname(__DIR__);
require is_file("$root/vendor/autoload.php") ? "$root/vendor/autoload.php" : "$root/autoload.php";
spl_autoload_register(static function (string $class): void {
    $prefix = 'Otpd\\Client\\Tests\\';
    if (str_starts_with($class, $prefix)) {
        $file = __DIR__ . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

// Missing pieces fail the run with a clear message instead of skipping tests.
$problems = [];
if (PHP_VERSION_ID < 80200) {
    $problems[] = 'PHP 8.2 or newer is needed (this is ' . PHP_VERSION . ')';
}
if (!class_exists(\Google\Protobuf\Internal\Message::class)) {
    $problems[] = 'the protobuf runtime is missing: apt-get install php-google-protobuf (or the protobuf extension)';
}
foreach (['pcntl', 'hash', 'json'] as $extension) {
    if (!extension_loaded($extension)) {
        $problems[] = "the PHP extension '$extension' is missing (Debian's php-cli has it)";
    }
}
if ($problems !== []) {
    fwrite(STDERR, "otpd PHP client tests cannot run:\n  - " . implode("\n  - ", $problems) . "\n");
    exit(1);
}

// Ctrl-C or SIGTERM still runs the shutdown functions that stop the daemons.
pcntl_async_signals(true);
foreach ([SIGINT, SIGTERM, SIGHUP] as $signal) {
    pcntl_signal($signal, static function (int $signal): void {
        exit(128 + $signal);
    });
}

try {
    \Otpd\Client\Tests\Support\Daemon::shared();
} catch (\Throwable $e) {
    fwrite(STDERR, 'cannot start otpd for the PHP client tests: ' . $e->getMessage() . "\n");
    exit(1);
}
