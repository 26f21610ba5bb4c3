<?php

declare(strict_types=1);

namespace Otpd\Client;

use Otp\V1\Proof as ProofMessage;

/**
 * Proof of a current factor, which every change of factors needs once an account has one (the
 * step-up table in docs/SECURITY.md). Exactly one kind, never empty:
 *
 *   Proof::fromToken($verify->getProofToken())  the token of a successful Verify of the purpose
 *   Proof::fromTotp($typed)                     a current authenticator code
 *   Proof::fromBackupCode($typed)               an unused backup code (used up), where allowed
 *
 * Immutable. The value is a secret: it is never part of the string form or a var_dump.
 */
final class Proof
{
    private const TOKEN = 'token';
    private const TOTP = 'totp_code';
    private const BACKUP = 'backup_code';

    private function __construct(private readonly string $kind, private readonly string $value)
    {
        if ($value === '') {
            throw new \InvalidArgumentException('a proof must not be empty');
        }
    }

    /** The proof_token of a successful Verify (or enrolment) for the action's purpose. */
    public static function fromToken(string $token): self
    {
        return new self(self::TOKEN, $token);
    }

    /** A code the authenticator app shows now. */
    public static function fromTotp(string $code): self
    {
        return new self(self::TOTP, $code);
    }

    /** An unused backup code; the daemon uses it up when the action is allowed with one. */
    public static function fromBackupCode(string $code): self
    {
        return new self(self::BACKUP, $code);
    }

    /** "token", "totp_code" or "backup_code": which kind this proof is (never its value). */
    public function kind(): string
    {
        return $this->kind;
    }

    /** The otp.v1.Proof message for a request. */
    public function toMessage(): ProofMessage
    {
        return new ProofMessage([$this->kind => $this->value]);
    }

    /** Accepts this class or the generated message, for methods that take either. */
    public static function message(self|ProofMessage|null $proof): ?ProofMessage
    {
        return $proof instanceof self ? $proof->toMessage() : $proof;
    }

    /** @return array<string, string> */
    public function __debugInfo(): array
    {
        return ['kind' => $this->kind];
    }
}
