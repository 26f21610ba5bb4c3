<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Web;

use Otpd\Client\Client;
use Otpd\Client\Proof;
use Otpd\Client\Purpose;
use Otpd\Client\Tests\Support\Browser;
use Otpd\Client\Tests\Support\Daemon;
use Otpd\Client\Tests\Support\MutableClock;
use Otpd\Client\Tests\Support\OtpdTestCase;
use Otpd\Client\Tests\Support\Outbox;
use Otpd\Client\Tests\Support\Totp;
use Otpd\Client\TwoFactorClient;
use Otpd\Client\Web\ArraySession;
use Otpd\Client\Web\Config;
use Otpd\Client\Web\DownPolicy;
use Otpd\Client\Web\Pages;
use Otpd\Client\Web\Response;

/** The web pages' controllers against the real otpd (the bootstrap's daemon), driven without HTTP. */
final class PagesTest extends OtpdTestCase
{
    private ArraySession $session;
    private MutableClock $clock;
    private Pages $pages;
    private Browser $browser;
    /** @var list<array{string, string}> */
    private array $logged = [];

    protected function setUp(): void
    {
        parent::setUp();
        $this->usePages($this->client);
    }

    private function usePages(TwoFactorClient $otpd, DownPolicy $policy = DownPolicy::Deny): void
    {
        $this->session = new ArraySession();
        $this->clock = new MutableClock();
        $config = new Config(
            pagesUrl: '/2fa',
            afterLoginUrl: '/admin',
            loginUrl: '/login',
            whenOtpdIsDown: $policy,
            logger: function (string $level, string $message): void {
                $this->logged[] = [$level, $message];
            },
        );
        $this->pages = new Pages($config, $otpd, $this->session, $this->clock);
        $this->browser = new Browser($this->pages, $this->session);
    }

    private static function text(Response $response): string
    {
        return Browser::text($response);
    }

    /** The code of the newest text in the outbox (the tests run one at a time; the outbox has no account). */
    private static function lastCode(string $account): string
    {
        $texts = Outbox::messages(self::daemon()->outbox);
        $last = end($texts);
        self::assertIsArray($last, "no text in the outbox for $account");
        self::assertSame(1, preg_match('/\b(\d{6,10})\b/', (string) $last['body'], $m));
        return $m[1];
    }

    public function testTheFirstLoginWalksTheProductsSmsSetupAndEndsSignedInWithBackupCodes(): void
    {
        $account = $this->account();
        $before = $this->session->id();
        $this->pages->beginLogin($account, 'Alice');
        $pendingId = $this->session->id();
        self::assertNotSame($before, $pendingId, 'a new session id after the password');
        self::assertNull($this->pages->signedInAccount());

        $page = $this->browser->follow($this->browser->get('login'));
        self::assertStringContainsString('Choose how to confirm', self::text($page));
        $page = $this->browser->follow($this->browser->post('choose', ['method' => 'sms']));
        self::assertStringContainsString('SMS/Text message configure', self::text($page));

        $typo = $this->browser->post('sms', ['action' => 'save', 'phone' => '555 123']);
        self::assertSame(422, $typo->status);
        self::assertStringContainsString('Enter the number with its country code', self::text($typo));
        self::assertSame('', $this->client->status($account)->getPhoneMasked());

        $page = $this->browser->follow($this->browser->post('sms', ['action' => 'save', 'phone' => '+1 555 123 4567']));
        self::assertStringContainsString('The phone number is not verified', self::text($page));
        self::assertStringContainsString('Send verification code', self::text($page));

        $page = $this->browser->follow($this->browser->post('sms', ['action' => 'send']));
        self::assertStringNotContainsString('Send verification code', self::text($page), 'replaced by a field');
        self::assertStringContainsString('name="code"', $page->body);

        $done = $this->browser->post('sms', ['action' => 'verify', 'code' => self::lastCode($account)]);
        self::assertSame('/2fa?page=backup', $done->header('Location'));
        self::assertSame($account, $this->pages->signedInAccount());
        self::assertNotSame($pendingId, $this->session->id(), 'a new session id after the second factor');

        $page = $this->browser->follow($done);
        self::assertStringContainsString('The phone number is verified', self::text($page));
        self::assertSame(1, preg_match_all('/<ul class="codes"/', $page->body));
        preg_match_all('~<li>([a-z0-9-]+)</li>~', $page->body, $m);
        self::assertCount(10, $m[1]);
        $download = $this->browser->post('backup', ['action' => 'download']);
        self::assertStringContainsString('attachment', (string) $download->header('Content-Disposition'));
        foreach ($m[1] as $code) {
            self::assertStringContainsString($code, $download->body);
        }
        self::assertSame('no-store', $download->header('Cache-Control'));

        self::assertSame('/admin', $this->browser->post('backup', ['action' => 'done'])->header('Location'));
        $page = $this->browser->get('backup');
        self::assertStringNotContainsString($m[1][0], $page->body, 'shown once');
        self::assertStringContainsString('You have 10 unused backup codes', self::text($page));
        self::assertStringContainsString('The phone number is verified', self::text($this->browser->get('sms')));
    }

    public function testAFormWithoutTheCsrfTokenIsRefusedAndChangesNothing(): void
    {
        $account = $this->account();
        $this->pages->beginLogin($account);
        $this->browser->follow($this->browser->get('login'));
        foreach (['', 'forged'] as $token) {
            $form = ['action' => 'save', 'phone' => '+1 555 123 4567', '_csrf' => $token];
            $refused = $this->browser->post('sms', $form);
            self::assertSame(403, $refused->status);
            self::assertStringContainsString('The form has expired', self::text($refused));
        }
        self::assertSame('', $this->client->status($account)->getPhoneMasked(), 'nothing was saved');
    }

    public function testALoginWithATextedCodeRegeneratesTheSessionAndAWrongCodeGetsTheUniformMessage(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $this->pages->beginLogin($account);
        $page = $this->browser->get('login');
        self::assertStringContainsString('We sent a code by text message to +1******4567', self::text($page));
        $reload = $this->browser->get('login');
        self::assertStringContainsString('We sent a code', self::text($reload));
        $code = self::lastCode($account);

        $wrongCode = $code === '000000' ? '111111' : '000000';
        $wrong = $this->browser->post('login', ['action' => 'verify', 'code' => $wrongCode]);
        self::assertSame(422, $wrong->status);
        self::assertStringContainsString(Pages::CODE_NOT_VALID, self::text($wrong));

        $pendingId = $this->session->id();
        $ok = $this->browser->post('login', ['action' => 'verify', 'code' => $code]);
        self::assertSame('/admin', $ok->header('Location'));
        self::assertSame($account, $this->pages->signedInAccount());
        self::assertNotSame($pendingId, $this->session->id());
        foreach ($this->logged as [, $message]) {
            self::assertStringNotContainsString($code, $message, 'no code in a log line');
        }
    }

    public function testABackupCodeSignsInAndTheSameWrongMessageComesForEveryFactor(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $codes = iterator_to_array($this->client->newBackupCodes($account, Proof::fromToken($proof))->getCodes());
        $this->pages->beginLogin($account);
        $page = $this->browser->get('login', ['method' => 'backup']);
        self::assertStringContainsString('Enter one of your backup codes', self::text($page));
        $wrong = $this->browser->post('login', ['action' => 'verify', 'code' => 'aaaa-bbbb-cccc-dddd']);
        self::assertStringContainsString(Pages::CODE_NOT_VALID, self::text($wrong));
        $ok = $this->browser->post('login', ['action' => 'verify', 'code' => $codes[0]]);
        self::assertSame('/admin', $ok->header('Location'));
    }

    public function testThePendingSecondFactorExpires(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $this->pages->beginLogin($account);
        $this->browser->get('login');
        $this->clock->advance(299);
        self::assertSame(200, $this->browser->get('login')->status, 'still pending within the idle time');
        $this->clock->advance(301);
        $page = $this->browser->get('login');
        self::assertStringContainsString('has expired', self::text($page));
        self::assertNull($this->session->get('pending'));
        // A code typed now does not sign in: there is no pending login any more.
        $late = $this->browser->post('login', ['action' => 'verify', 'code' => self::lastCode($account)]);
        self::assertSame('/login', $late->header('Location'));
        self::assertNull($this->pages->signedInAccount());
    }

    public function testThePendingSecondFactorHasAnAbsoluteLimitToo(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $this->pages->beginLogin($account);
        for ($i = 0; $i < 7; $i++) {
            $this->clock->advance(290);
            $this->browser->get('login');
        }
        self::assertStringContainsString('has expired', self::text($this->browser->last));
    }

    public function testOtpdDownGivesAClearPageAndDeniesByDefault(): void
    {
        $this->usePages(new Client('/nonexistent/otpd.sock', 1.0));
        $this->pages->beginLogin('anyone');
        $page = $this->browser->get('login');
        self::assertSame(503, $page->status);
        self::assertStringContainsString('two-step verification service is not answering', self::text($page));
        self::assertNull($this->pages->signedInAccount());
        self::assertSame('error', $this->logged[0][0]);
    }

    public function testSigningInWithoutTheSecondFactorWhenOtpdIsDownIsTheShopsExplicitChoice(): void
    {
        $this->usePages(new Client('/nonexistent/otpd.sock', 1.0), DownPolicy::AllowPasswordOnly);
        $this->pages->beginLogin('anyone');
        $page = $this->browser->get('login');
        self::assertSame('/admin', $page->header('Location'));
        self::assertSame('anyone', $this->pages->signedInAccount());
        self::assertTrue($this->pages->signedInWithoutSecondFactor());
        self::assertContains('warning', array_column($this->logged, 0));
    }

    public function testWrongAuthenticatorCodesLockTheLoginAndThePageSaysUntilWhen(): void
    {
        $account = $this->account();
        $secret = $this->client->beginAuthenticator($account)->getSecretBase32();
        self::assertTrue($this->client->confirmAuthenticator($account, Totp::now($secret))->getSuccess());
        $this->pages->beginLogin($account);
        $page = $this->browser->get('login');
        self::assertStringContainsString('authenticator app', self::text($page), 'the preferred method first');
        $valid = array_map(static fn (int $d) => Totp::now($secret, time() + $d), [-30, 0, 30]);
        $wrong = '000000';
        while (in_array($wrong, $valid, true)) {
            $wrong = str_pad((string) random_int(0, 999999), 6, '0', STR_PAD_LEFT);
        }
        $answer = null;
        for ($i = 0; $i < 12 && ($answer === null || $answer->status !== 423); $i++) {
            $answer = $this->browser->post('login', ['action' => 'verify', 'code' => $wrong]);
        }
        self::assertSame(423, $answer->status);
        self::assertMatchesRegularExpression(
            '/Sign-in is locked until \d\d:\d\d \S+ \(about \d+ minutes? from now\)/',
            self::text($answer),
        );
        self::assertSame(423, $this->browser->get('login')->status, 'still locked on the next visit');
    }

    public function testChangingThePhoneAsksForAProofAndTakesAnAuthenticatorCode(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $this->signIn($account);
        $this->browser->follow($this->browser->post('profile', ['action' => 'add_totp']));
        self::assertStringContainsString('To add an authenticator app', self::text($this->browser->last));
        $this->browser->follow($this->browser->post('confirm', ['action' => 'send']));
        $page = $this->browser->follow($this->browser->post('confirm', [
            'action' => 'prove', 'kind' => 'sms', 'code' => self::lastCode($account),
        ]));
        self::assertStringContainsString('data:image/svg+xml;base64,', $page->body, 'the QR code in the page');
        self::assertSame(1, preg_match('~id="secret">([A-Z2-7 ]+)<~', $page->body, $m));
        $secret = str_replace(' ', '', $m[1]);
        $this->browser->follow($this->browser->post('totp', ['action' => 'confirm', 'code' => Totp::now($secret)]));
        self::assertTrue($this->client->status($account)->getTotpEnabled());

        $page = $this->browser->follow(
            $this->browser->post('sms', ['action' => 'save', 'phone' => '+44 20 7946 0958']),
        );
        self::assertStringContainsString('To change the phone number', self::text($page));
        self::assertStringContainsString('A code from your authenticator app', self::text($page));
        $refused = $this->browser->post('confirm', ['action' => 'prove', 'kind' => 'totp', 'code' => '12345']);
        self::assertStringContainsString(Pages::CODE_NOT_VALID, self::text($refused));
        // The next step's code: the confirmation above used this step's.
        $r = $this->browser->post('confirm', [
            'action' => 'prove', 'kind' => 'totp', 'code' => Totp::now($secret, time() + 30),
        ]);
        $page = $this->browser->follow($r);
        self::assertStringContainsString('The new phone number +44******0958 is not verified', self::text($page));
        self::assertStringContainsString('The phone number is verified', self::text($page), 'the old one still works');
    }

    public function testTurningOffAFactorNeedsAProofAndABackupCodeWorksWhenThePhoneIsLost(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $codes = iterator_to_array($this->client->newBackupCodes($account, Proof::fromToken($proof))->getCodes());
        $secret = $this->client->beginAuthenticator(
            $account,
            Proof::fromToken($this->passCode($account, Purpose::ManageFactors->value)->getProofToken()),
        )->getSecretBase32();
        $this->client->confirmAuthenticator($account, Totp::now($secret));
        $this->signIn($account);

        $page = $this->browser->follow($this->browser->post('profile', ['action' => 'disable_sms']));
        self::assertStringContainsString('To turn off text messages', self::text($page));
        self::assertStringContainsString('A backup code, if you lost your phone', self::text($page));
        $page = $this->browser->follow(
            $this->browser->post('confirm', ['action' => 'prove', 'kind' => 'backup', 'code' => $codes[0]]),
        );
        self::assertStringContainsString('Text messages are off.', self::text($page));
        self::assertFalse($this->client->status($account)->getSmsEnabled());
        self::assertStringContainsString('9 left', self::text($page));
    }

    public function testTheFirstLoginWithAnAuthenticatorShowsTheQrCodeAndTheSecret(): void
    {
        $account = $this->account();
        $this->pages->beginLogin($account, 'Bob');
        $this->browser->follow($this->browser->get('login'));
        $page = $this->browser->follow($this->browser->post('choose', ['method' => 'totp']));
        self::assertStringContainsString('Set up an authenticator app', self::text($page));
        $page = $this->browser->follow($this->browser->post('totp', ['action' => 'begin']));
        self::assertSame(1, preg_match('~<img id="qr" src="data:image/svg\+xml;base64,([^"]+)"~', $page->body, $qr));
        self::assertStringContainsString('<svg', (string) base64_decode($qr[1]));
        self::assertSame(1, preg_match('~id="secret">([A-Z2-7 ]+)<~', $page->body, $m));
        $secret = str_replace(' ', '', $m[1]);
        self::assertSame(32, strlen($secret), '160 bits in base32');

        $wrong = $this->browser->post('totp', ['action' => 'confirm', 'code' => '12345']);
        self::assertStringContainsString(Pages::CODE_NOT_VALID, self::text($wrong));
        self::assertNull($this->pages->signedInAccount());
        $done = $this->browser->post('totp', ['action' => 'confirm', 'code' => Totp::now($secret)]);
        self::assertSame('/2fa?page=backup', $done->header('Location'));
        self::assertSame($account, $this->pages->signedInAccount());
        $page = $this->browser->follow($done);
        self::assertStringContainsString('The authenticator app is on.', self::text($page));
        self::assertSame(10, preg_match_all('~<li>[a-z0-9-]+</li>~', $page->body));
    }

    public function testNewBackupCodesNeedAProofAndTheProfileWarnsWhenFewAreLeft(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $codes = iterator_to_array($this->client->newBackupCodes($account, Proof::fromToken($proof))->getCodes());
        foreach (array_slice($codes, 0, 7) as $code) {
            self::assertTrue($this->client->useBackupCode($account, $code)->getSuccess());
        }
        $this->signIn($account);
        $page = $this->browser->get('profile');
        self::assertStringContainsString('3 left', self::text($page));
        self::assertStringContainsString('Running low: make a new set.', self::text($page));

        $page = $this->browser->follow($this->browser->post('backup', ['action' => 'new']));
        self::assertStringContainsString('To make new backup codes, confirm it is you', self::text($page));
        self::assertStringNotContainsString('A backup code, if you lost your phone', self::text($page));
        $this->browser->follow($this->browser->post('confirm', ['action' => 'send']));
        $page = $this->browser->follow($this->browser->post('confirm', [
            'action' => 'prove', 'kind' => 'sms', 'code' => self::lastCode($account),
        ]));
        self::assertSame(10, preg_match_all('~<li>[a-z0-9-]+</li>~', $page->body));
        self::assertFalse($this->client->useBackupCode($account, $codes[9])->getSuccess(), 'the old set is void');

        // Shown once: a set left on the screen is not kept in the session beyond ten minutes.
        self::assertStringContainsString('<li>', $this->browser->get('backup')->body);
        $this->clock->advance(601);
        self::assertStringNotContainsString('<li>', $this->browser->get('backup')->body);
    }

    public function testThePreferredMethodChangesWithAProof(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $token = $this->passCode($account, Purpose::ManageFactors->value)->getProofToken();
        $secret = $this->client->beginAuthenticator($account, Proof::fromToken($token))->getSecretBase32();
        $this->client->confirmAuthenticator($account, Totp::now($secret));
        $this->signIn($account);
        $page = $this->browser->follow($this->browser->post('profile', ['action' => 'preferred', 'method' => 'totp']));
        self::assertStringContainsString('To change the preferred method', self::text($page));
        $page = $this->browser->follow($this->browser->post('confirm', [
            'action' => 'prove', 'kind' => 'totp', 'code' => Totp::now($secret, time() + 30),
        ]));
        self::assertStringContainsString('Your preferred method is saved.', self::text($page));
        self::assertSame(\Otp\V1\Factor::FACTOR_TOTP, $this->client->status($account)->getPreferredMethod());

        // The next login offers the authenticator first.
        $this->pages->logout();
        $this->pages->beginLogin($account);
        self::assertStringContainsString('Open your authenticator app', self::text($this->browser->get('login')));
    }

    public function testALoginWithOneOfTheLastBackupCodesLeavesAWarningForTheDashboard(): void
    {
        $account = $this->account();
        $proof = $this->verifiedAccount($account)->getProofToken();
        $codes = iterator_to_array($this->client->newBackupCodes($account, Proof::fromToken($proof))->getCodes());
        foreach (array_slice($codes, 0, 7) as $code) {
            $this->client->useBackupCode($account, $code);
        }
        $this->pages->beginLogin($account);
        $this->browser->get('login', ['method' => 'backup']);
        $this->browser->post('login', ['action' => 'verify', 'code' => $codes[7]]);
        self::assertSame($account, $this->pages->signedInAccount());
        $messages = $this->pages->takeMessages();
        self::assertSame('You have 2 backup codes left. Make a new set on your profile page.', $messages[0]['text']);
        self::assertSame([], $this->pages->takeMessages(), 'taken once');
    }

    public function testSendAgainWaitsAsLongAsOtpdSaysAndATooEarlySecondLoginShowsTheWait(): void
    {
        $daemon = new Daemon(Daemon::DEFAULT_COOLDOWN_CONFIG);
        $daemon->start();
        try {
            $otpd = $daemon->client();
            $account = $this->account();
            $otpd->savePhone($account, '+1 555 123 4567');
            $sent = $otpd->sendCode($account, Purpose::VerifyPhone);
            $challengeId = $sent->getChallengeId();
            $otpd->verifyCode($account, Purpose::VerifyPhone, $daemon->code($challengeId), $challengeId);
            $this->usePages($otpd);

            $this->pages->beginLogin($account);
            $page = $this->browser->get('login');
            self::assertStringContainsString('We sent a code', self::text($page));
            $wait = '/You can ask for a new code in \d+ seconds/';
            self::assertMatchesRegularExpression($wait, self::text($page), 'the wait otpd returned');
            self::assertMatchesRegularExpression('~<button type="submit" id="resend" disabled>~', $page->body);

            // Signed out and in again at once: otpd refuses a second text for 30 s; the page says
            // so, offers no field for a code that was not sent, and keeps "Send" off.
            $this->pages->beginLogin($account);
            $page = $this->browser->get('login');
            self::assertMatchesRegularExpression('/You can ask for a new one in \d+ seconds/', self::text($page));
            self::assertStringNotContainsString('id="code"', $page->body);
            self::assertMatchesRegularExpression('~<button type="submit" id="resend" disabled>~', $page->body);
        } finally {
            $daemon->stop();
        }
    }

    public function testAShopTemplateWinsOverTheDefaultOne(): void
    {
        $dir = sys_get_temp_dir() . '/otpd-templates-' . bin2hex(random_bytes(4));
        mkdir($dir);
        file_put_contents("$dir/message.php", '<p id="mine"><?= $h->e($v[\'text\']) ?></p>');
        try {
            $pages = new Pages(
                new Config('/2fa', '/admin', '/login', templateDirectories: [$dir]),
                $this->client,
                $this->session,
                $this->clock,
            );
            $pages->beginLogin($this->account());
            $this->clock->advance(3600);
            $page = $pages->handle(new \Otpd\Client\Web\Request('GET', ['page' => 'login']));
            self::assertStringContainsString('<p id="mine">Your sign-in took too long', $page->body);
            self::assertStringContainsString('<!doctype html>', $page->body, 'the default layout around it');
        } finally {
            unlink("$dir/message.php");
            rmdir($dir);
        }
    }

    public function testEveryPageCarriesTheSafeHeadersAndNoCodeInAnyUrl(): void
    {
        $account = $this->account();
        $this->verifiedAccount($account);
        $this->pages->beginLogin($account);
        $page = $this->browser->get('login');
        self::assertSame('no-store', $page->header('Cache-Control'));
        self::assertStringContainsString("frame-ancestors 'none'", (string) $page->header('Content-Security-Policy'));
        self::assertSame(0, preg_match('~(href|action)="[^"]*\d{6}~', $page->body), 'no code-like number in a URL');
        self::assertSame(0, preg_match('~<form method="get"~i', $page->body));
    }

    /** Signs $account in through the pages (a texted login code). */
    private function signIn(string $account): void
    {
        $this->pages->beginLogin($account);
        $this->browser->get('login');
        $this->browser->post('login', ['action' => 'verify', 'code' => self::lastCode($account)]);
        self::assertSame($account, $this->pages->signedInAccount());
        $this->browser->get('profile');
    }
}
