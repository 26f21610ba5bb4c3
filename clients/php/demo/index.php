<?php

/**
 * A minimal shop admin around the otpd pages, for `make demo` (scripts/demo.sh starts it with
 * `php -S 127.0.0.1:PORT demo/index.php`). It is what a shop does, in one file:
 *
 *   /login     the shop's password form; where the password is right, Pages::beginLogin()
 *   /2fa       every page of the integration: Pages::handle()
 *   /admin     the dashboard, only for Pages::signedInAccount()
 *   /logout    Pages::logout()
 *   /outbox    DEMO ONLY: the texts otpd "sent" (its development outbox), to read the codes
 *
 * Settings come from the environment scripts/demo.sh sets: OTPD_DEMO_SOCKET, OTPD_DEMO_OUTBOX,
 * OTPD_DEMO_USERS (a JSON file of user => password hash).
 */

declare(strict_types=1);

require dirname(__DIR__) . '/autoload.php';

use Otpd\Client\Client;
use Otpd\Client\Web\Config;
use Otpd\Client\Web\NativeSession;
use Otpd\Client\Web\Pages;
use Otpd\Client\Web\Request;
use Otpd\Client\Web\Response;

$path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
if ($path === '/favicon.ico') {
    http_response_code(404);
    return;
}

$socket = (string) getenv('OTPD_DEMO_SOCKET');
$outbox = (string) getenv('OTPD_DEMO_OUTBOX');
$usersFile = (string) getenv('OTPD_DEMO_USERS');
if ($socket === '' || $usersFile === '') {
    http_response_code(500);
    echo 'Start the demo with `make demo` (scripts/demo.sh): OTPD_DEMO_SOCKET and OTPD_DEMO_USERS are not set.';
    return;
}

$session = new NativeSession();
$pages = new Pages(
    new Config(
        pagesUrl: '/2fa',
        afterLoginUrl: '/admin',
        loginUrl: '/login',
        issuer: 'otpd demo shop',
        templateDirectories: [__DIR__ . '/templates'],
        logger: static function (string $level, string $message): void {
            error_log("otpd pages [$level] $message");
        },
    ),
    new Client($socket, 5.0),
    $session,
);

/** The demo's own pages, in the look of the integration's layout. */
function demoPage(string $title, string $body, int $status = 200): Response
{
    $e = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES, 'UTF-8');
    return Response::html(<<<HTML
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>{$e($title)}</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>
        body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1d2327; background: #f0f0f1; }
        main { max-width: 44rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem; border-radius: 6px; }
        h1 { font-size: 1.4rem; margin-top: 0; } label { display: block; margin: .8rem 0 .3rem; font-weight: 600; }
        input { font-size: 1.1rem; padding: .4rem; }
        button { font-size: 1rem; padding: .45rem 1rem; margin-top: .8rem; }
        .demo { background: #fcf9e8; border-left: 4px solid #dba617; padding: .5rem .8rem; }
        .error { background: #fcf0f1; border-left: 4px solid #d63638; padding: .5rem .8rem; }
        .warning { background: #fcf9e8; border-left: 4px solid #dba617; padding: .5rem .8rem; }
        .success { background: #edfaef; border-left: 4px solid #00a32a; padding: .5rem .8rem; }
        table { border-collapse: collapse; width: 100%; font-size: .9rem; }
        td, th { text-align: left; padding: .3rem; border-bottom: 1px solid #dcdcde; vertical-align: top; }
        </style></head>
        <body><main><h1>{$e($title)}</h1>
        $body
        </main></body></html>
        HTML, $status)->withHeaders([
        'Cache-Control' => 'no-store',
        'X-Frame-Options' => 'DENY',
        'Content-Security-Policy' => "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    ]);
}

function demoCsrf(): string
{
    $_SESSION['demo_csrf'] ??= bin2hex(random_bytes(32));
    return $_SESSION['demo_csrf'];
}

function demoCsrfValid(): bool
{
    return is_string($_POST['_csrf'] ?? null) && hash_equals(demoCsrf(), $_POST['_csrf']);
}

$e = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES, 'UTF-8');
$method = strtoupper((string) ($_SERVER['REQUEST_METHOD'] ?? 'GET'));

switch ($path) {
    case '/2fa':
        $response = $pages->handle(Request::fromGlobals());
        break;

    case '/login':
        $error = '';
        if ($method === 'POST') {
            $users = json_decode((string) file_get_contents($usersFile), true) ?: [];
            $user = (string) ($_POST['user'] ?? '');
            $password = (string) ($_POST['password'] ?? '');
            if (!demoCsrfValid()) {
                $error = 'The form has expired. Try again.';
            } elseif (isset($users[$user]) && password_verify($password, $users[$user])) {
                // The password is right: this is the one call a shop adds to its login.
                $response = $pages->beginLogin($user, $user);
                unset($_SESSION['demo_csrf']);
                break;
            } else {
                $error = 'Wrong user name or password.';
            }
        }
        $errorHtml = $error !== '' ? "<p class=\"error\">{$e($error)}</p>" : '';
        $response = demoPage('Shop admin: sign in', $errorHtml . <<<HTML
            <form method="post" action="/login">
            <input type="hidden" name="_csrf" value="{$e(demoCsrf())}">
            <label for="user">User name</label><input id="user" name="user" autocomplete="username" required>
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required>
            <br><button type="submit" id="sign-in">Sign in</button>
            </form>
            <p class="demo">Demo: the user and password are printed by <code>make demo</code>.
            Texts go to the <a href="/outbox" target="_blank">outbox</a>.</p>
            HTML, $error !== '' ? 401 : 200);
        break;

    case '/admin':
    case '/':
        $account = $pages->signedInAccount();
        if ($account === null) {
            $response = Response::redirect('/login');
            break;
        }
        $messages = '';
        foreach ($pages->takeMessages() as $message) {
            $messages .= "<p class=\"{$e($message['kind'])}\">{$e($message['text'])}</p>";
        }
        $response = demoPage('Shop admin', $messages . <<<HTML
            <p id="welcome">Signed in as <strong>{$e($account)}</strong>.</p>
            <ul>
            <li><a href="/2fa?page=profile" id="profile">Profile: two-step verification</a></li>
            <li><a href="/outbox" id="outbox">SMS outbox (demo only)</a></li>
            </ul>
            <form method="post" action="/logout"><input type="hidden" name="_csrf" value="{$e(demoCsrf())}">
            <button type="submit" id="logout">Sign out</button></form>
            HTML);
        break;

    case '/logout':
        if ($method === 'POST' && demoCsrfValid()) {
            $pages->logout();
            unset($_SESSION['demo_csrf']);
        }
        $response = Response::redirect('/login');
        break;

    case '/outbox':
        // DEMO ONLY (OTPD_DEMO=1, set by scripts/demo.sh). The development outbox holds the
        // texts with their codes: a real shop has Twilio instead and no such page.
        if (getenv('OTPD_DEMO') !== '1' || $outbox === '') {
            $response = demoPage('Not found', '<p><a href="/login">Sign in</a></p>', 404);
            break;
        }
        $rows = '';
        $lines = is_file($outbox) ? file($outbox, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) : [];
        foreach (array_reverse($lines ?: []) as $line) {
            $text = json_decode($line, true);
            if (!is_array($text)) {
                continue;
            }
            $rows .= '<tr><td>' . $e((string) ($text['at'] ?? '')) . '</td><td>' . $e((string) ($text['to'] ?? ''))
                . '</td><td>' . $e((string) ($text['purpose'] ?? '')) . '</td><td class="body">'
                . $e((string) ($text['body'] ?? '')) . '</td></tr>';
        }
        $response = demoPage('SMS outbox (demo only)', <<<HTML
            <p class="demo">otpd runs with its development SMS sender: instead of Twilio, every text is
            written to <code>{$e($outbox)}</code>. Newest first. Reload after sending a code.</p>
            <table id="texts"><tr><th>at (UTC)</th><th>to</th><th>purpose</th><th>text</th></tr>$rows</table>
            HTML);
        break;

    default:
        $response = demoPage('Not found', '<p><a href="/login">Sign in</a></p>', 404);
}

$response->send();
