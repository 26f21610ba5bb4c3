<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

use Otp\V1\AccountStatus;
use Otpd\Client\Client;
use Otpd\Client\Exception\AlreadyExistsException;
use Otpd\Client\Exception\InvalidRequestException;
use Otpd\Client\Exception\LockedException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\PermissionDeniedException;
use Otpd\Client\Exception\RateLimitedException;
use Otpd\Client\Exception\UnavailableException;
use Otpd\Client\Factor;
use Otpd\Client\Proof;
use Otpd\Client\Purpose;
use Otpd\Client\TwoFactorClient;

/**
 * The product's pages for one shop: the second step of the login, the first-login choice and
 * setup, the SMS configure page, the authenticator and backup-code pages, the profile page and
 * the step-up (confirm with a code) in front of every change of factors.
 *
 * The shop calls beginLogin() where its password check succeeds and sends the response (a
 * redirect to the second step); it routes one URL (Config::$pagesUrl) to handle(); it treats an
 * admin as signed in only when signedInAccount() names them. Everything between lives in the
 * server-side session: the pending login (short-lived), the codes shown once, the CSRF token.
 * No code, secret or proof ever goes into a URL: every form is a POST with a CSRF token.
 */
final class Pages
{
    /** Pages reachable with ?page=. */
    public const PAGES = ['login', 'choose', 'sms', 'totp', 'backup', 'confirm', 'profile'];

    /** The uniform answer to a wrong, expired or used code, whatever the factor. */
    public const CODE_NOT_VALID = 'The code is not valid.';

    private const LOW_BACKUP_CODES = 3;
    /** How long a new set of backup codes stays in the session for download and print. */
    private const CODES_SHOWN_SECONDS = 600;

    private readonly View $view;
    private readonly \DateTimeZone $timezone;

    public function __construct(
        private readonly Config $config,
        private readonly TwoFactorClient $otpd,
        private readonly Session $session,
        private readonly Clock $clock = new SystemClock(),
    ) {
        $this->view = new View($config->templateDirectories);
        $this->timezone = new \DateTimeZone($config->timezone ?? date_default_timezone_get());
    }

    // ---- What the shop calls -----------------------------------------------------------------

    /**
     * The password was right: the second factor is now pending for $accountId (the shop's
     * stable id of this admin; $label is what the pages and the authenticator app show). Returns
     * the redirect to the second step. Any earlier sign-in in this session ends here, and the
     * session gets a new id.
     */
    public function beginLogin(string $accountId, string $label = ''): Response
    {
        if ($accountId === '') {
            throw new \InvalidArgumentException('accountId must not be empty');
        }
        $this->clearAll();
        $this->session->regenerateId();
        $now = $this->clock->now();
        $this->session->set('pending', [
            'account' => $accountId,
            'label' => $label !== '' ? $label : $accountId,
            'started' => $now,
            'seen' => $now,
        ]);
        return $this->secure(Response::redirect($this->url('login')));
    }

    /** The account that finished both steps in this session, or null. */
    public function signedInAccount(): ?string
    {
        $auth = $this->session->get('auth');
        return is_array($auth) ? (string) $auth['account'] : null;
    }

    /**
     * True when the signed-in account got in with the password alone because otpd was down
     * and the shop chose DownPolicy::AllowPasswordOnly.
     */
    public function signedInWithoutSecondFactor(): bool
    {
        $auth = $this->session->get('auth');
        return is_array($auth) && ($auth['without_second_factor'] ?? false) === true;
    }

    /** Forgets the sign-in and everything pending (the shop's logout calls it). */
    public function logout(): void
    {
        $this->clearAll();
        $this->session->regenerateId();
    }

    /** Answers one request to Config::$pagesUrl. */
    public function handle(Request $request): Response
    {
        try {
            return $this->secure($this->route($request));
        } catch (UnavailableException $e) {
            return $this->secure($this->otpdDown($e));
        } catch (OtpdException $e) {
            $this->log('error', 'otpd refused a call: ' . $e->getStatusName() . ' ' . $e->getMessage());
            return $this->secure($this->page('message', 500, [
                'title' => 'Something went wrong',
                'text' => 'The two-factor service refused the request: ' . $e->getMessage(),
                'link' => $this->context() === null ? $this->config->loginUrl : $this->url('profile'),
            ]));
        }
    }

    /**
     * The messages meant for the next page the admin sees, e.g. "You have 2 backup codes left"
     * after a login with a backup code: the shop shows them on its dashboard. Taking them
     * removes them. @return list<array{kind: string, text: string}>
     */
    public function takeMessages(): array
    {
        $flash = $this->session->get('flash') ?? [];
        $this->session->remove('flash');
        return $flash;
    }

    /** The hidden CSRF field for the shop's own forms that post to the pages. */
    public function csrfField(): string
    {
        return '<input type="hidden" name="_csrf" value="' . $this->view->e($this->csrfToken()) . '">';
    }

    // ---- Routing and context -----------------------------------------------------------------

    private function route(Request $request): Response
    {
        $page = $request->query('page');
        if (!in_array($page, self::PAGES, true)) {
            $page = $this->signedInAccount() !== null ? 'profile' : 'login';
        }
        if ($this->session->get('pending') !== null && $this->pendingExpired()) {
            $this->clearAll();
            return $this->page('message', 200, [
                'title' => 'Sign in again',
                'text' => 'Your sign-in took too long and has expired. Sign in again with your password.',
                'link' => $this->config->loginUrl,
                'linkText' => 'Sign in',
            ]);
        }
        $context = $this->context();
        if ($context === null) {
            return Response::redirect($this->config->loginUrl);
        }
        if ($request->isPost() && !$this->csrfValid($request)) {
            return $this->page('message', 403, [
                'title' => 'The form has expired',
                'text' => 'The form was not accepted (it is too old, or it did not come from this site). '
                    . 'Go back, reload the page and try again.',
                'link' => $this->url($page),
            ]);
        }
        if ($context['mode'] === 'pending') {
            $pending = $this->session->get('pending');
            $pending['seen'] = $this->clock->now();
            $this->session->set('pending', $pending);
            if (!in_array($page, ['login', 'choose', 'sms', 'totp'], true)) {
                // The profile, backup codes and step-up need both steps.
                return Response::redirect($this->url('login'));
            }
        }
        return match ($page) {
            'login' => $this->loginPage($request, $context),
            'choose' => $this->choosePage($request, $context),
            'sms' => $this->smsPage($request, $context),
            'totp' => $this->totpPage($request, $context),
            'backup' => $this->backupPage($request, $context),
            'confirm' => $this->confirmPage($request, $context),
            default => $this->profilePage($request, $context),
        };
    }

    /** @return array{account: string, label: string, mode: string}|null */
    private function context(): ?array
    {
        $auth = $this->session->get('auth');
        if (is_array($auth)) {
            return ['account' => (string) $auth['account'], 'label' => (string) $auth['label'], 'mode' => 'auth'];
        }
        $pending = $this->session->get('pending');
        if (is_array($pending)) {
            return [
                'account' => (string) $pending['account'],
                'label' => (string) $pending['label'],
                'mode' => 'pending',
            ];
        }
        return null;
    }

    private function pendingExpired(): bool
    {
        $pending = $this->session->get('pending');
        $now = $this->clock->now();
        return !is_array($pending)
            || $now - (int) $pending['seen'] > $this->config->pendingIdleSeconds
            || $now - (int) $pending['started'] > $this->config->pendingMaxSeconds;
    }

    // ---- The second step of the login --------------------------------------------------------

    /** @param array{account: string, label: string, mode: string} $context */
    private function loginPage(Request $request, array $context): Response
    {
        if ($context['mode'] === 'auth') {
            return Response::redirect($this->config->afterLoginUrl);
        }
        $account = $context['account'];
        $status = $this->otpd->status($account);
        if ($status->getSetupRequired()) {
            return Response::redirect($this->url('choose'));
        }
        $methods = $this->loginMethods($status);
        $pending = $this->session->get('pending');
        $method = $request->query('method');
        if (!in_array($method, $methods, true)) {
            $method = (string) ($pending['method'] ?? $this->preferredLoginMethod($status, $methods));
        }
        $pending['method'] = $method;
        $this->session->set('pending', $pending);
        $errors = [];

        if ($status->getLocked()) {
            return $this->lockedPage($status->getLockedUntil());
        }

        if ($request->isPost()) {
            $action = $request->field('action');
            if ($action === 'resend' && $method === 'sms') {
                $errors = $this->sendLoginCode($account);
            } elseif ($action === 'verify') {
                $code = $request->field('code');
                [$ok, $lockedUntil, $low] = $this->checkLoginCode($account, $method, $code);
                if ($ok) {
                    return $this->completeLogin($context, $low);
                }
                if ($lockedUntil > 0) {
                    return $this->lockedPage($lockedUntil);
                }
                $errors[] = self::CODE_NOT_VALID;
            }
            if ($errors === []) {
                return Response::redirect($this->url('login'));
            }
        } elseif ($method === 'sms' && !isset($pending['challenge']) && !isset($pending['resend_at'])) {
            // The first showing of the SMS step texts the code; reloads do not text again (nor
            // try again after a refusal: then the button does, once the wait is over).
            $errors = $this->sendLoginCode($account);
        }

        $pending = $this->session->get('pending');
        $challenge = $pending['challenge'] ?? null;
        return $this->page('login', $errors === [] ? 200 : 422, [
            'title' => 'Two-step verification',
            'method' => $method,
            'methods' => $methods,
            'errors' => $errors,
            'destination' => $challenge['destination'] ?? $status->getPhoneMasked(),
            'codeSent' => $challenge !== null,
            'resendWait' => $this->waitInWords((int) ($challenge['resend_at'] ?? $pending['resend_at'] ?? 0)),
            'label' => $context['label'],
        ]);
    }

    /** @return list<string> */
    private function loginMethods(AccountStatus $status): array
    {
        $methods = [];
        if ($status->getSmsEnabled()) {
            $methods[] = 'sms';
        }
        if ($status->getTotpEnabled()) {
            $methods[] = 'totp';
        }
        if ($status->getBackupCodesRemaining() > 0) {
            $methods[] = 'backup';
        }
        return $methods;
    }

    /** @param list<string> $methods */
    private function preferredLoginMethod(AccountStatus $status, array $methods): string
    {
        $preferred = Factor::fromWire($status->getPreferredMethod()) === Factor::Totp ? 'totp' : 'sms';
        return in_array($preferred, $methods, true) ? $preferred : ($methods[0] ?? 'sms');
    }

    /** Texts a login code; returns the errors to show (a wait, in words). @return list<string> */
    private function sendLoginCode(string $account): array
    {
        try {
            $challenge = $this->otpd->sendCode($account, Purpose::Login);
        } catch (RateLimitedException $e) {
            // Remember the wait, so the "Send" button stays off until it is over.
            $pending = $this->session->get('pending');
            $pending['resend_at'] = $this->clock->now() + $e->retryAfterSeconds();
            $this->session->set('pending', $pending);
            return [$this->rateLimitedText($e)];
        }
        $pending = $this->session->get('pending');
        $pending['challenge'] = [
            'id' => $challenge->getChallengeId(),
            'destination' => $challenge->getDestinationMasked(),
            'resend_at' => (int) $challenge->getResendAt(),
        ];
        $this->session->set('pending', $pending);
        return [];
    }

    /** @return array{bool, int, ?int} success, lock end, backup codes left when low */
    private function checkLoginCode(string $account, string $method, string $code): array
    {
        if ($method === 'backup') {
            try {
                $answer = $this->otpd->useBackupCode($account, $code);
            } catch (LockedException $e) {
                return [false, (int) $e->getDetail()?->getLockedUntil(), null];
            }
            return [
                $answer->getSuccess(),
                (int) $answer->getLockedUntil(),
                $answer->getSuccess() && $answer->getLow() ? (int) $answer->getRemaining() : null,
            ];
        }
        $pending = $this->session->get('pending');
        $challengeId = $method === 'sms' ? (string) ($pending['challenge']['id'] ?? '') : '';
        if ($method === 'sms' && $challengeId === '') {
            return [false, 0, null];
        }
        try {
            $answer = $this->otpd->verifyCode($account, Purpose::Login, $code, $challengeId);
        } catch (LockedException $e) {
            return [false, (int) $e->getDetail()?->getLockedUntil(), null];
        }
        return [$answer->getSuccess(), (int) $answer->getLockedUntil(), null];
    }

    /**
     * Both steps are done: a new session id (the pending one may have been seen by someone
     * else), a new CSRF token, and the shop's dashboard.
     *
     * @param array{account: string, label: string, mode: string} $context
     */
    private function completeLogin(array $context, ?int $backupCodesLeft = null, bool $without = false): Response
    {
        $this->clearAll();
        $this->session->regenerateId();
        $this->session->set('auth', [
            'account' => $context['account'],
            'label' => $context['label'],
            'at' => $this->clock->now(),
            'without_second_factor' => $without,
        ]);
        if ($backupCodesLeft !== null) {
            $this->flash('warning', $backupCodesLeft === 1
                ? 'You have 1 backup code left. Make a new set on your profile page.'
                : "You have $backupCodesLeft backup codes left. Make a new set on your profile page.");
        }
        return Response::redirect($this->config->afterLoginUrl);
    }

    private function lockedPage(int $lockedUntil): Response
    {
        return $this->page('message', 423, [
            'title' => 'Sign-in is locked',
            'text' => $this->lockInWords($lockedUntil),
            'link' => $this->config->loginUrl,
            'linkText' => 'Back to the sign-in page',
        ]);
    }

    // ---- First login: the choice, then the setup ----------------------------------------------

    /** @param array{account: string, label: string, mode: string} $context */
    private function choosePage(Request $request, array $context): Response
    {
        if ($request->isPost()) {
            $method = $request->field('method');
            return Response::redirect($this->url($method === 'totp' ? 'totp' : 'sms'));
        }
        return $this->page('choose', 200, ['title' => 'Choose how to confirm your sign-ins']);
    }

    /**
     * The SMS/Text message configure page, as the product describes it.
     *
     * @param array{account: string, label: string, mode: string} $context
     */
    private function smsPage(Request $request, array $context): Response
    {
        $account = $context['account'];
        $status = $this->otpd->status($account);
        if ($context['mode'] === 'pending' && !$status->getSetupRequired()) {
            return Response::redirect($this->url('login'));
        }
        $errors = [];
        if ($request->isPost()) {
            $action = $request->field('action');
            if ($action === 'save') {
                $phone = $request->field('phone');
                $purpose = $this->savePhonePurpose($status);
                if (!self::looksLikePhoneNumber($phone)) {
                    $errors[] = self::PHONE_FORMAT;
                } elseif ($purpose !== null) {
                    return $this->startStepUp(
                        $status->getPhoneVerified() ? 'change_phone' : 'save_phone',
                        $purpose,
                        ['phone' => $phone],
                    );
                } else {
                    try {
                        $this->otpd->savePhone($account, $phone);
                        $this->session->remove('phone_challenge');
                        return Response::redirect($this->url('sms'));
                    } catch (InvalidRequestException $e) {
                        $errors[] = $e->getMessage();
                    } catch (AlreadyExistsException) {
                        return Response::redirect($this->url('sms'));
                    }
                }
            } elseif ($action === 'send') {
                try {
                    $challenge = $this->otpd->sendCode($account, Purpose::VerifyPhone);
                    $this->session->set('phone_challenge', [
                        'id' => $challenge->getChallengeId(),
                        'destination' => $challenge->getDestinationMasked(),
                        'resend_at' => (int) $challenge->getResendAt(),
                    ]);
                    return Response::redirect($this->url('sms'));
                } catch (RateLimitedException $e) {
                    $errors[] = $this->rateLimitedText($e);
                }
            } elseif ($action === 'verify') {
                $challenge = $this->session->get('phone_challenge');
                $answer = null;
                if (is_array($challenge)) {
                    try {
                        $answer = $this->otpd->verifyCode(
                            $account,
                            Purpose::VerifyPhone,
                            $request->field('code'),
                            (string) $challenge['id'],
                        );
                    } catch (LockedException $e) {
                        return $this->lockedPage((int) $e->getDetail()?->getLockedUntil());
                    }
                }
                if ($answer !== null && $answer->getSuccess()) {
                    $this->session->remove('phone_challenge');
                    return $this->factorAdded($context, $answer->getProofToken(), 'sms');
                }
                if ($answer !== null && $answer->getLockedUntil() > 0) {
                    return $this->lockedPage((int) $answer->getLockedUntil());
                }
                $errors[] = self::CODE_NOT_VALID;
            }
        }
        $status = $errors === [] ? $status : $this->otpd->status($account);
        $challenge = $this->session->get('phone_challenge');
        $unverified = ($status->getPhoneMasked() !== '' && !$status->getPhoneVerified())
            || $status->getPendingPhoneMasked() !== '';
        return $this->page('sms', $errors === [] ? 200 : 422, [
            'title' => 'SMS/Text message configure',
            'errors' => $errors,
            'status' => self::statusValues($status),
            'unverified' => $unverified,
            'codeSent' => $unverified && is_array($challenge),
            'destination' => is_array($challenge) ? $challenge['destination'] : '',
            'resendWait' => is_array($challenge) ? $this->waitInWords((int) $challenge['resend_at']) : '',
            'pending' => $context['mode'] === 'pending',
        ]);
    }

    private const PHONE_FORMAT = 'Enter the number with its country code, e.g. +1 555 123 4567.';

    /**
     * E.164 after the separators otpd tolerates: checked before a step-up, so that a typo does
     * not use up the proof (otpd checks the number itself after the proof).
     */
    private static function looksLikePhoneNumber(string $phone): bool
    {
        return preg_match('/^\+[1-9][0-9]{6,14}$/', (string) preg_replace('/[\s.()-]/', '', $phone)) === 1;
    }

    /** Which proof saving a number needs (the step-up table), or null for none. */
    private function savePhonePurpose(AccountStatus $status): ?Purpose
    {
        if ($status->getPhoneVerified()) {
            return Purpose::ChangePhone;
        }
        return $status->getSetupRequired() ? null : Purpose::ManageFactors;
    }

    /** @param array{account: string, label: string, mode: string} $context */
    private function totpPage(Request $request, array $context): Response
    {
        $account = $context['account'];
        $status = $this->otpd->status($account);
        if ($context['mode'] === 'pending' && !$status->getSetupRequired()) {
            return Response::redirect($this->url('login'));
        }
        $errors = [];
        $enrolment = $this->session->get('totp');
        if (is_array($enrolment) && (int) $enrolment['expires'] <= $this->clock->now()) {
            $this->session->remove('totp');
            $enrolment = null;
        }
        if ($request->isPost()) {
            $action = $request->field('action');
            if ($action === 'begin' && !$status->getTotpEnabled()) {
                if (!$status->getSetupRequired()) {
                    return $this->startStepUp('add_totp', Purpose::ManageFactors);
                }
                $this->beginTotp($account, $context['label'], null);
                return Response::redirect($this->url('totp'));
            }
            if ($action === 'confirm' && is_array($enrolment)) {
                try {
                    $answer = $this->otpd->confirmAuthenticator($account, $request->field('code'));
                } catch (LockedException $e) {
                    return $this->lockedPage((int) $e->getDetail()?->getLockedUntil());
                }
                if ($answer->getSuccess()) {
                    $this->session->remove('totp');
                    return $this->factorAdded($context, $answer->getProofToken(), 'totp');
                }
                $errors[] = self::CODE_NOT_VALID;
            }
        }
        $enrolment = $this->session->get('totp');
        return $this->page('totp', $errors === [] ? 200 : 422, [
            'title' => 'Authenticator app',
            'errors' => $errors,
            'enabled' => $status->getTotpEnabled(),
            'enrolling' => is_array($enrolment),
            'qr' => is_array($enrolment) ? QrCode::svgDataUri((string) $enrolment['uri']) : null,
            'secret' => is_array($enrolment) ? trim(chunk_split((string) $enrolment['secret'], 4, ' ')) : '',
            'issuer' => $this->config->issuer,
            'label' => $context['label'],
            'pending' => $context['mode'] === 'pending',
        ]);
    }

    private function beginTotp(string $account, string $label, ?Proof $proof): void
    {
        // The issuer the app shows is otpd's ([totp] issuer); the label names the admin (no colon).
        $started = $this->otpd->beginAuthenticator($account, $proof, str_replace(':', ' ', $label));
        $this->session->set('totp', [
            'secret' => $started->getSecretBase32(),
            'uri' => $started->getOtpauthUri(),
            'expires' => (int) $started->getExpiresAt() > 0
                ? (int) $started->getExpiresAt()
                : $this->clock->now() + 600,
        ]);
    }

    /**
     * A factor was turned on. The account's first one (the daemon then returns a manage_factors
     * proof) finishes a pending login and makes the first backup codes right away.
     *
     * @param array{account: string, label: string, mode: string} $context
     */
    private function factorAdded(array $context, string $proofToken, string $factor): Response
    {
        $done = $factor === 'sms' ? 'The phone number is verified.' : 'The authenticator app is on.';
        if ($proofToken === '') {
            if ($factor === 'totp') {
                $this->flash('success', $done);
            }
            // The SMS page itself says "The phone number is verified".
            return Response::redirect($this->url($factor === 'sms' ? 'sms' : 'profile'));
        }
        if ($context['mode'] === 'pending') {
            $this->completeLogin($context);
        }
        $this->flash('success', $done . ' Now save your backup codes: each one lets you sign in once if you '
            . 'cannot use your phone or authenticator app.');
        $codes = $this->otpd->newBackupCodes($context['account'], Proof::fromToken($proofToken));
        $this->showCodesOnce(iterator_to_array($codes->getCodes()), $this->config->afterLoginUrl);
        return Response::redirect($this->url('backup'));
    }

    // ---- Backup codes --------------------------------------------------------------------------

    /** @param list<string> $codes */
    private function showCodesOnce(array $codes, string $next): void
    {
        $this->session->set('codes', ['list' => array_values($codes), 'at' => $this->clock->now(), 'next' => $next]);
    }

    /** @param array{account: string, label: string, mode: string} $context */
    private function backupPage(Request $request, array $context): Response
    {
        $codes = $this->session->get('codes');
        if (is_array($codes) && (int) $codes['at'] + self::CODES_SHOWN_SECONDS < $this->clock->now()) {
            // Shown once means not kept: a new set left on the screen is dropped after a while.
            $this->session->remove('codes');
            $codes = null;
        }
        if ($request->isPost()) {
            $action = $request->field('action');
            if ($action === 'download' && is_array($codes)) {
                return Response::download(
                    'backup-codes.txt',
                    $this->codesText($context['label'], $codes['list'], (int) $codes['at']),
                );
            }
            if ($action === 'done') {
                $this->session->remove('codes');
                return Response::redirect(is_array($codes) ? (string) $codes['next'] : $this->url('profile'));
            }
            if ($action === 'new') {
                return $this->startStepUp('backup_codes', Purpose::ManageFactors);
            }
        }
        $status = $this->otpd->status($context['account']);
        return $this->page('backup', 200, [
            'title' => 'Backup codes',
            'codes' => is_array($codes) ? $codes['list'] : null,
            'remaining' => $status->getBackupCodesRemaining(),
            'low' => self::backupLow($status),
            'canMake' => $status->getSmsEnabled() || $status->getTotpEnabled(),
            'printScript' => self::PRINT_SCRIPT,
        ]);
    }

    /** The one script of the pages (its hash is in the Content-Security-Policy). */
    private const PRINT_SCRIPT = "document.getElementById('print')"
        . ".addEventListener('click', function () { window.print(); });";

    /** @param list<string> $codes */
    private function codesText(string $label, array $codes, int $at): string
    {
        $made = (new \DateTimeImmutable('@' . $at))->setTimezone($this->timezone)->format('Y-m-d H:i T');
        return "Backup codes for {$this->config->issuer} ($label), made $made\n"
            . "Each code works once. Keep them somewhere safe, away from your phone.\n\n"
            . implode("\n", $codes) . "\n";
    }

    private static function backupLow(AccountStatus $status): bool
    {
        return ($status->getSmsEnabled() || $status->getTotpEnabled())
            && $status->getBackupCodesRemaining() <= self::LOW_BACKUP_CODES;
    }

    // ---- The profile page ------------------------------------------------------------------------

    /** @param array{account: string, label: string, mode: string} $context */
    private function profilePage(Request $request, array $context): Response
    {
        $account = $context['account'];
        $status = $this->otpd->status($account);
        if ($request->isPost()) {
            $action = $request->field('action');
            $noFactor = $status->getSetupRequired();
            switch ($action) {
                case 'disable_sms':
                case 'disable_totp':
                case 'disable_backup':
                    return $this->startStepUp($action, Purpose::DisableFactor);
                case 'preferred':
                    $method = $request->field('method') === 'totp' ? 'totp' : 'sms';
                    return $this->startStepUp('preferred', Purpose::ManageFactors, ['method' => $method]);
                case 'add_totp':
                    return $noFactor
                        ? Response::redirect($this->url('totp'))
                        : $this->startStepUp('add_totp', Purpose::ManageFactors);
            }
            return Response::redirect($this->url('profile'));
        }
        return $this->page('profile', 200, [
            'title' => 'Profile: two-step verification',
            'label' => $context['label'],
            'status' => self::statusValues($status),
            'low' => self::backupLow($status),
            'lock' => $status->getLocked() ? $this->lockInWords((int) $status->getLockedUntil()) : '',
            'withoutSecondFactor' => $this->signedInWithoutSecondFactor(),
        ]);
    }

    // ---- Step-up: a proof from a current factor before a change ---------------------------------

    private const STEP_UP_TITLES = [
        'change_phone' => 'change the phone number',
        'save_phone' => 'add a phone number',
        'add_totp' => 'add an authenticator app',
        'backup_codes' => 'make new backup codes',
        'disable_sms' => 'turn off text messages',
        'disable_totp' => 'turn off the authenticator app',
        'disable_backup' => 'turn off backup codes',
        'preferred' => 'change the preferred method',
    ];

    /** @param array<string, string> $parameters */
    private function startStepUp(string $action, Purpose $purpose, array $parameters = []): Response
    {
        $this->session->set('stepup', ['action' => $action, 'purpose' => $purpose->value, 'parameters' => $parameters]);
        return Response::redirect($this->url('confirm'));
    }

    /** @param array{account: string, label: string, mode: string} $context */
    private function confirmPage(Request $request, array $context): Response
    {
        $stepUp = $this->session->get('stepup');
        if (!is_array($stepUp)) {
            return Response::redirect($this->url('profile'));
        }
        $account = $context['account'];
        $purpose = Purpose::from((int) $stepUp['purpose']);
        $status = $this->otpd->status($account);
        $errors = [];
        if ($request->isPost()) {
            $action = $request->field('action');
            if ($action === 'cancel') {
                $this->session->remove('stepup');
                return Response::redirect($this->url('profile'));
            }
            if ($action === 'send') {
                try {
                    $challenge = $this->otpd->sendCode($account, $purpose);
                    $stepUp['challenge'] = [
                        'id' => $challenge->getChallengeId(),
                        'destination' => $challenge->getDestinationMasked(),
                        'resend_at' => (int) $challenge->getResendAt(),
                    ];
                    $this->session->set('stepup', $stepUp);
                    return Response::redirect($this->url('confirm'));
                } catch (RateLimitedException $e) {
                    $errors[] = $this->rateLimitedText($e);
                }
            } elseif ($action === 'prove') {
                try {
                    $kind = $request->field('kind');
                    $proof = $this->proofFrom($account, $purpose, $kind, $request->field('code'), $stepUp);
                    if ($proof !== null) {
                        return $this->perform($context, $stepUp, $proof);
                    }
                    $errors[] = self::CODE_NOT_VALID;
                } catch (LockedException $e) {
                    return $this->lockedPage((int) $e->getDetail()?->getLockedUntil());
                } catch (PermissionDeniedException) {
                    $errors[] = self::CODE_NOT_VALID;
                } catch (InvalidRequestException $e) {
                    // A malformed code (otpd counts it as a failure) or, for a number, what otpd
                    // says is wrong with it (the page checked its form before asking for a proof).
                    $errors[] = in_array($stepUp['action'], ['change_phone', 'save_phone'], true)
                        && !str_contains($e->getMessage(), 'code') ? $e->getMessage() : self::CODE_NOT_VALID;
                }
                $status = $this->otpd->status($account);
                if ($status->getLocked()) {
                    return $this->lockedPage((int) $status->getLockedUntil());
                }
            }
        }
        $challenge = $stepUp['challenge'] ?? null;
        $backupAllowed = in_array($purpose, [Purpose::ChangePhone, Purpose::DisableFactor], true)
            && $status->getBackupCodesRemaining() > 0;
        return $this->page('confirm', $errors === [] ? 200 : 422, [
            'title' => 'Confirm it is you',
            'what' => self::STEP_UP_TITLES[$stepUp['action']] ?? 'make this change',
            'errors' => $errors,
            'sms' => $status->getSmsEnabled(),
            'phone' => $status->getPhoneMasked(),
            'totp' => $status->getTotpEnabled(),
            'backup' => $backupAllowed,
            'codeSent' => is_array($challenge),
            'destination' => is_array($challenge) ? $challenge['destination'] : '',
            'resendWait' => is_array($challenge) ? $this->waitInWords((int) $challenge['resend_at']) : '',
        ]);
    }

    /**
     * The Proof a typed code gives: a texted code is verified first (its proof token is the
     * proof), an authenticator or backup code goes to the daemon as it is. Null: a wrong texted code.
     *
     * @param array<string, mixed> $stepUp
     */
    private function proofFrom(string $account, Purpose $purpose, string $kind, string $code, array $stepUp): ?Proof
    {
        if ($code === '') {
            return null;
        }
        if ($kind === 'totp') {
            return Proof::fromTotp($code);
        }
        if ($kind === 'backup') {
            return Proof::fromBackupCode($code);
        }
        $challengeId = (string) ($stepUp['challenge']['id'] ?? '');
        if ($challengeId === '') {
            return null;
        }
        $answer = $this->otpd->verifyCode($account, $purpose, $code, $challengeId);
        return $answer->getSuccess() && $answer->getProofToken() !== ''
            ? Proof::fromToken($answer->getProofToken())
            : null;
    }

    /**
     * @param array{account: string, label: string, mode: string} $context
     * @param array<string, mixed> $stepUp
     */
    private function perform(array $context, array $stepUp, Proof $proof): Response
    {
        $parameters = $stepUp['parameters'] ?? [];
        // Removed once the change is made: a refused proof leaves the page as it was.
        $response = $this->performAction($context, $stepUp['action'], $parameters, $proof);
        $this->session->remove('stepup');
        return $response;
    }

    /**
     * @param array{account: string, label: string, mode: string} $context
     * @param array<string, string> $parameters
     */
    private function performAction(array $context, string $action, array $parameters, Proof $proof): Response
    {
        $account = $context['account'];
        switch ($action) {
            case 'change_phone':
            case 'save_phone':
                try {
                    $this->otpd->savePhone($account, (string) $parameters['phone'], $proof);
                } catch (AlreadyExistsException) {
                    $this->flash('info', 'This number is already your verified number.');
                }
                $this->session->remove('phone_challenge');
                return Response::redirect($this->url('sms'));
            case 'add_totp':
                $this->beginTotp($account, $context['label'], $proof);
                return Response::redirect($this->url('totp'));
            case 'backup_codes':
                $codes = $this->otpd->newBackupCodes($account, $proof);
                $this->showCodesOnce(iterator_to_array($codes->getCodes()), $this->url('profile'));
                return Response::redirect($this->url('backup'));
            case 'disable_sms':
            case 'disable_totp':
            case 'disable_backup':
                $factor = ['disable_sms' => Factor::Sms, 'disable_totp' => Factor::Totp][$action] ?? Factor::Backup;
                $this->otpd->turnOffFactor($account, $factor, $proof);
                $this->flash('success', match ($factor) {
                    Factor::Sms => 'Text messages are off.',
                    Factor::Totp => 'The authenticator app is off.',
                    Factor::Backup => 'Backup codes are off.',
                });
                return Response::redirect($this->url('profile'));
            case 'preferred':
                $method = $parameters['method'] === 'totp' ? Factor::Totp : Factor::Sms;
                $this->otpd->choosePreferredMethod($account, $method, $proof);
                $this->flash('success', 'Your preferred method is saved.');
                return Response::redirect($this->url('profile'));
        }
        return Response::redirect($this->url('profile'));
    }

    // ---- otpd down ----------------------------------------------------------------------------------

    private function otpdDown(UnavailableException $e): Response
    {
        $this->log('error', 'otpd is not answering: ' . $e->getMessage());
        $context = $this->context();
        if (
            $context !== null && $context['mode'] === 'pending'
            && $this->config->whenOtpdIsDown === DownPolicy::AllowPasswordOnly
        ) {
            $this->log('warning', "signed in without a second factor because otpd is down: {$context['account']}");
            return $this->completeLogin($context, null, true);
        }
        return $this->page('message', 503, [
            'title' => 'Two-step verification is not available',
            'text' => 'The two-step verification service is not answering, so sign-in cannot be completed '
                . 'right now. Try again in a few minutes. If it goes on, tell the shop\'s administrator: '
                . 'the otpd service is down or this site cannot reach its socket.',
            'link' => $this->config->loginUrl,
            'linkText' => 'Back to the sign-in page',
        ])->withHeaders(['Retry-After' => '60']);
    }

    // ---- Words ------------------------------------------------------------------------------------

    /** The lock and its end in words. */
    public function lockInWords(int $lockedUntil): string
    {
        $end = Client::lockEnd($lockedUntil);
        if ($end === null) {
            return 'Too many wrong codes. The account is locked until an administrator unlocks it.';
        }
        return 'Too many wrong codes. Sign-in is locked until '
            . $end->setTimezone($this->timezone)->format('H:i T') . ' ('
            . $this->durationInWords($lockedUntil - $this->clock->now()) . ' from now). Try again then.';
    }

    /** "" when $at is past, else "in 25 seconds" style text for a resend button. */
    private function waitInWords(int $at): string
    {
        $wait = $at - $this->clock->now();
        return $wait > 0 ? 'in ' . $this->durationInWords($wait) : '';
    }

    private function rateLimitedText(RateLimitedException $e): string
    {
        $wait = $e->retryAfterSeconds();
        return $wait > 0
            ? 'A code was sent a moment ago. You can ask for a new one in ' . $this->durationInWords($wait) . '.'
            : 'Too many codes were sent. Try again later.';
    }

    private function durationInWords(int $seconds): string
    {
        $seconds = max(1, $seconds);
        if ($seconds < 60) {
            return $seconds === 1 ? '1 second' : "$seconds seconds";
        }
        $minutes = max(1, (int) round($seconds / 60));
        if ($minutes < 120) {
            return $minutes === 1 ? 'about 1 minute' : "about $minutes minutes";
        }
        return 'about ' . (int) round($minutes / 60) . ' hours';
    }

    // ---- Plumbing ---------------------------------------------------------------------------------

    /** @return array<string, mixed> */
    private static function statusValues(AccountStatus $status): array
    {
        return [
            'phone' => $status->getPhoneMasked(),
            'phoneVerified' => $status->getPhoneVerified(),
            'pendingPhone' => $status->getPendingPhoneMasked(),
            'sms' => $status->getSmsEnabled(),
            'totp' => $status->getTotpEnabled(),
            'backupRemaining' => $status->getBackupCodesRemaining(),
            'preferred' => Factor::fromWire($status->getPreferredMethod()) === Factor::Totp ? 'totp' : 'sms',
            'setupRequired' => $status->getSetupRequired(),
        ];
    }

    /** @param array<string, mixed> $values */
    private function page(string $template, int $status, array $values): Response
    {
        $flash = $this->session->get('flash') ?? [];
        $this->session->remove('flash');
        return Response::html($this->view->render($template, $values + [
            'url' => fn (string $page, array $query = []): string => $this->url($page, $query),
            'csrf' => $this->csrfToken(),
            'flash' => $flash,
            'loginUrl' => $this->config->loginUrl,
            'afterLoginUrl' => $this->config->afterLoginUrl,
            'signedIn' => $this->signedInAccount() !== null,
        ]), $status);
    }

    /** The headers every answer of the pages carries. */
    private function secure(Response $response): Response
    {
        $scriptHash = base64_encode(hash('sha256', self::PRINT_SCRIPT, true));
        return $response->withHeaders([
            'Cache-Control' => 'no-store',
            'Pragma' => 'no-cache',
            'X-Content-Type-Options' => 'nosniff',
            'X-Frame-Options' => 'DENY',
            'Referrer-Policy' => 'no-referrer',
            'Content-Security-Policy' => "default-src 'none'; img-src data:; style-src 'self' 'unsafe-inline'; "
                . "script-src 'sha256-$scriptHash'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ]);
    }

    /** @param array<string, string> $query */
    private function url(string $page, array $query = []): string
    {
        $base = $this->config->pagesUrl;
        return $base . (str_contains($base, '?') ? '&' : '?') . http_build_query(['page' => $page] + $query);
    }

    private function csrfToken(): string
    {
        $token = $this->session->get('csrf');
        if (!is_string($token) || $token === '') {
            $token = bin2hex(random_bytes(32));
            $this->session->set('csrf', $token);
        }
        return $token;
    }

    private function csrfValid(Request $request): bool
    {
        $token = $this->session->get('csrf');
        return is_string($token) && $token !== '' && hash_equals($token, $request->field('_csrf'));
    }

    private function flash(string $kind, string $text): void
    {
        $flash = $this->session->get('flash') ?? [];
        $flash[] = ['kind' => $kind, 'text' => $text];
        $this->session->set('flash', $flash);
    }

    private function clearAll(): void
    {
        foreach (['pending', 'auth', 'csrf', 'phone_challenge', 'totp', 'codes', 'stepup', 'flash'] as $key) {
            $this->session->remove($key);
        }
    }

    private function log(string $level, string $message): void
    {
        if ($this->config->logger !== null) {
            ($this->config->logger)($level, $message);
        }
    }
}
