import ArgumentParser
import Foundation
import OTPClient
import OTPFiles

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The proof a sensitive action needs, shared by every command that takes one: at most one of
/// a proof token, an authenticator code or a backup code.
struct ProofOptions: ParsableArguments {
    @Option(
        name: .customLong("proof-token"),
        help: ArgumentHelp("A single-use proof token printed by 'otpctl verify' for this action.", valueName: "token"))
    var proofToken: String?

    @Option(name: .customLong("totp"), help: ArgumentHelp("A current authenticator code.", valueName: "code"))
    var totpCode: String?

    @Option(
        name: .customLong("backup-code"),
        help: ArgumentHelp("An unused backup code (it is used up), where otpd accepts one.", valueName: "code"))
    var backupCode: String?

    func validate() throws {
        let given = [("--proof-token", proofToken), ("--totp", totpCode), ("--backup-code", backupCode)]
            .filter { $0.1 != nil }
        guard given.count <= 1 else {
            throw ValidationError(
                "Give at most one proof: \(given.map(\.0).joined(separator: " and ")) were both given.")
        }
        if let first = given.first, first.1?.isEmpty ?? true {
            throw ValidationError("\(first.0) must not be empty.")
        }
    }

    /// The proof to send, nil when none was given.
    var proof: Proof? {
        if let proofToken { return Proof(kind: .token(proofToken)) }
        if let totpCode { return Proof(kind: .totpCode(totpCode)) }
        if let backupCode { return Proof(kind: .backupCode(backupCode)) }
        return nil
    }

    /// How to get a proof for `purpose`, for the hint after PERMISSION_DENIED.
    static func hint(for purpose: PurposeName, account: String) -> String {
        let id = shellWord(account)
        return "this action needs a proof: 'otpctl send \(id) --purpose \(purpose.rawValue)' then "
            + "'otpctl verify \(id) CODE --purpose \(purpose.rawValue) --challenge ID' prints a --proof-token; "
            + "or give --totp CODE (or --backup-code CODE where otpd accepts one)"
    }
}

// MARK: - Authenticator

/// `otpctl totp ...`: the authenticator app (TOTP).
struct TotpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "totp",
        abstract: "Turn on an authenticator app (TOTP).",
        subcommands: [TotpEnrollCommand.self, TotpConfirmCommand.self])
}

/// `otpctl totp enroll ACCOUNT`: starts an enrolment and shows the secret.
struct TotpEnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Start adding an authenticator app: shows the QR code, the otpauth URI and the secret.",
        discussion: """
            Scan the QR code with the app (or add the URI or the base32 secret by hand), then \
            confirm with a first code from it: otpctl totp confirm ACCOUNT CODE. Until then the \
            authenticator is not on. When the account already has a factor, a manage_factors \
            proof is needed.

            The QR code is drawn in the terminal with Unicode half blocks; it is left out with \
            --no-qr, with --json, or when stdout is not a terminal. The URI and the secret are \
            always printed as text. --qr-image FILE writes the QR code as an image file for \
            printing (PNG when FILE ends in .png, else PGM), a new file with mode 0600: it holds \
            the secret, so delete it once the code is scanned. otpctl never overwrites: when \
            FILE exists it stops with exit status 2 before asking otpd.

            JSON: {"otpauth_uri", "secret_base32", "expires_at" (confirm before; Unix seconds)}.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Option(help: "The account name shown in the app (default: the account id).") var label: String?
    @Flag(name: .customLong("no-qr"), help: "Print the otpauth URI as text only, without the QR code.")
    var noQR = false
    @Option(
        name: .customLong("qr-image"),
        help: ArgumentHelp(
            "Write the QR code as an image file for printing (PNG for *.png, else PGM; a new file, mode 0600).",
            valueName: "file"),
        completion: .file(extensions: ["png", "pgm"]))
    var qrImage: String?
    @OptionGroup(title: "Proof (at most one; needed when the account already has a factor)")
    var proof: ProofOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        if let qrImage {
            guard !qrImage.isEmpty else { throw ValidationError("--qr-image must not be empty.") }
            if NewPrivateFile.exists(qrImage) {
                throw ValidationError("\(qrImage) exists; otpctl never overwrites it. Choose a new name.")
            }
        }
    }

    func run() async throws {
        // The image file comes first, so a path that cannot be used costs no enrolment.
        let imageFile: NewPrivateFile?
        do {
            imageFile = try qrImage.map { (path) throws(NewPrivateFile.Failure) in
                try NewPrivateFile.create(path, existsReason: "it exists; otpctl never overwrites it")
            }
        } catch {
            throw CommandFailure(status: .usage, message: "\(error); nothing was sent to otpd")
        }
        let request = BeginTotpEnrollmentRequest(accountId: account, proof: proof.proof, label: label ?? "")
        let hint = proof.proof == nil ? ProofOptions.hint(for: .manageFactors, account: account) : nil
        let enrollment: BeginTotpEnrollmentResponse
        do {
            enrollment = try await global.request(account: account, proofHint: hint) { client throws(RPCError) in
                try await client.beginTotpEnrollment(request)
            }
        } catch {
            imageFile?.remove()
            throw error
        }
        let uri = enrollment.otpauthUri
        let showQR = !noQR && !global.json && isatty(1) == 1
        var matrix: [[Bool]]?
        var qrFailure: String?
        if showQR || imageFile != nil {
            do {
                matrix = try QRCode.matrix(for: uri)
            } catch {
                qrFailure = error.description
            }
        }
        if global.json {
            JSONOutput.print([
                "otpauth_uri": uri, "secret_base32": enrollment.secretBase32,
                "expires_at": JSONOutput.time(enrollment.expiresAt),
            ])
        } else {
            if showQR, let matrix {
                print("Scan this QR code with the authenticator app (or paste the URI, or type the secret):")
                for line in QRCode.terminalLines(matrix, colors: QRCode.terminalWantsColors()) { print(line) }
            } else {
                print("Add this to the authenticator app (scan it as a QR code or paste it):")
            }
            print(uri)
            print("Secret (base32): \(enrollment.secretBase32)")
            let before = enrollment.expiresAt > 0 ? " before \(TimeText.clock(enrollment.expiresAt))" : ""
            print("Then confirm\(before) with a code from the app: otpctl totp confirm \(shellWord(account)) CODE")
        }
        if let imageFile {
            guard let matrix else {
                imageFile.remove()
                throw CommandFailure(status: .refused, message: "\(qrFailure ?? "cannot make a QR code"); use the URI")
            }
            do {
                try imageFile.write(QRCode.image(matrix, forPath: imageFile.path))
            } catch {
                imageFile.remove()
                throw CommandFailure(status: .refused, message: "\(error); use the URI printed above")
            }
            if !global.json {
                print(
                    "QR code written to \(imageFile.path) (mode 0600; it holds the secret: delete it after scanning).")
            }
        } else if let qrFailure {
            FileHandle.standardError.write(Data("otpctl: \(qrFailure); use the URI\n".utf8))
        }
    }
}

/// `otpctl totp confirm ACCOUNT CODE`: turns the authenticator on with its first code.
struct TotpConfirmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm",
        abstract: "Turn the authenticator on with a first code from the app.",
        discussion: """
            A code that is not valid is a refusal (exit status 1) and counts against the \
            account. On success a single-use manage_factors proof token is printed, so the first \
            backup codes can be made right away.

            JSON (printed on success and on failure): {"success", "proof_token", \
            "proof_expires_at", "status" (status object)}.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The code the app shows now.") var code: String
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        guard !code.isEmpty else { throw ValidationError("CODE must not be empty.") }
    }

    func run() async throws {
        let request = ConfirmTotpEnrollmentRequest(accountId: account, code: code)
        let response = try await global.request(account: account) { client throws(RPCError) in
            try await client.confirmTotpEnrollment(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print([
                "success": response.success, "proof_token": JSONOutput.string(response.proofToken),
                "proof_expires_at": JSONOutput.time(response.proofToken.isEmpty ? 0 : response.proofExpiresAt),
                "status": status.jsonObject,
            ])
        }
        guard response.success else {
            throw CommandFailure.codeNotValid(
                attemptsLeft: nil, lockedUntil: status.locked ? status.lockedUntil : 0, account: account)
        }
        guard !global.json else { return }
        print("The authenticator is on.")
        if !response.proofToken.isEmpty {
            print(proofTokenLine(response.proofToken, expiresAt: response.proofExpiresAt))
        }
        if status.backupCodesRemaining == 0 {
            print(backupReminder(account: account, token: response.proofToken))
        }
    }
}

// MARK: - Turning factors off, preferring one

/// `otpctl disable ACCOUNT sms|totp|backup`: turns a factor off.
struct DisableCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable",
        abstract: "Turn a factor off (needs a disable_factor proof).",
        discussion: """
            sms removes the phone number (and any pending one); totp removes the authenticator; \
            backup voids every unused backup code.

            JSON: {"status": status object}. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The factor to turn off.") var factor: FactorName
    @OptionGroup(title: "Proof (exactly one is needed)") var proof: ProofOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws { try AccountArgument.check(account) }

    func run() async throws {
        let request = DisableFactorRequest(accountId: account, factor: factor.wire, proof: proof.proof)
        let hint = proof.proof == nil ? ProofOptions.hint(for: .disableFactor, account: account) : nil
        let response = try await global.request(account: account, proofHint: hint) { client throws(RPCError) in
            try await client.disableFactor(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print(["status": status.jsonObject])
            return
        }
        switch factor {
        case .sms: print("SMS two-factor is off; the phone number is removed.")
        case .totp: print("The authenticator is off.")
        case .backup: print("The backup codes no longer work.")
        }
        if status.setupRequired {
            print("No second factor is on now: setup is required at the next login.")
        }
    }
}

/// `otpctl prefer ACCOUNT sms|totp`: the method asked for first at login.
struct PreferCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefer",
        abstract: "Choose the preferred login method (sms or totp).",
        discussion: """
            JSON: {"status": status object}. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The preferred method.") var method: PreferredName
    @OptionGroup(title: "Proof (a manage_factors token or an authenticator code)")
    var proof: ProofOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws { try AccountArgument.check(account) }

    func run() async throws {
        let request = SetPreferredMethodRequest(accountId: account, method: method.wire, proof: proof.proof)
        let hint = proof.proof == nil ? ProofOptions.hint(for: .manageFactors, account: account) : nil
        let response = try await global.request(account: account, proofHint: hint) { client throws(RPCError) in
            try await client.setPreferredMethod(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print(["status": status.jsonObject])
        } else {
            print(
                "Preferred: \(status.preferredMethod == .unspecified ? method.rawValue : status.preferredMethod.description)"
            )
        }
    }
}

// MARK: - Backup codes

/// `otpctl backup ...`: single-use backup codes.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Make a new set of backup codes, or use one.",
        subcommands: [BackupGenerateCommand.self, BackupRedeemCommand.self])
}

/// `otpctl backup generate ACCOUNT [--out FILE]`: a new set, shown once.
struct BackupGenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Make a new set of backup codes (shown once; any earlier set stops working).",
        discussion: """
            When the account already has a factor or a set, a manage_factors proof is needed: \
            the proof token printed after verifying the phone number or confirming the \
            authenticator serves for the first set.

            --out FILE writes the codes to a new file with mode 0600 instead of printing them. \
            otpctl never overwrites: when FILE exists (or cannot be created) it stops with exit \
            status 2 before asking otpd, so the current codes keep working. If the file cannot \
            be written after otpd made the codes, they are printed instead and the exit status \
            is 1.

            JSON: {"codes" (empty with --out), "count", "generated_at" (Unix seconds), "file" \
            (the --out path or null)}.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Option(help: ArgumentHelp("Write the codes to this new file (mode 0600).", valueName: "file")) var out: String?
    @OptionGroup(
        title:
            "Proof (exactly one: a manage_factors token, the one printed after the first enrolment, or an authenticator code)"
    )
    var proof: ProofOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        if let out {
            guard !out.isEmpty else { throw ValidationError("--out must not be empty.") }
            if NewPrivateFile.exists(out) {
                throw ValidationError(
                    "\(out) exists; otpctl never overwrites a file of backup codes. Choose a new name.")
            }
        }
    }

    func run() async throws {
        // The file comes first: making codes voids the earlier set, so they must have a home.
        let file: NewPrivateFile?
        do {
            file = try out.map { (path) throws(NewPrivateFile.Failure) in
                try NewPrivateFile.create(
                    path, existsReason: "it exists; otpctl never overwrites a file of backup codes")
            }
        } catch {
            throw CommandFailure(status: .usage, message: "\(error); nothing was sent to otpd")
        }
        let request = GenerateBackupCodesRequest(accountId: account, proof: proof.proof)
        let hint = proof.proof == nil ? ProofOptions.hint(for: .manageFactors, account: account) : nil
        let set: GenerateBackupCodesResponse
        do {
            set = try await global.request(account: account, proofHint: hint) { client throws(RPCError) in
                try await client.generateBackupCodes(request)
            }
        } catch {
            file?.remove()
            throw error
        }
        if let file {
            do {
                try file.write(Array(contents(set).utf8))
            } catch {
                // The earlier set is gone already: the new codes must not be lost.
                print(header)
                printColumns(set.codes)
                throw CommandFailure(
                    status: .refused,
                    message: "\(error); the new codes are printed above: save them now, the earlier set no longer works"
                )
            }
        }
        if global.json {
            JSONOutput.print([
                "codes": file == nil ? set.codes : [], "count": set.codes.count,
                "generated_at": JSONOutput.time(set.generatedAt), "file": out.map { $0 as Any } ?? NSNull(),
            ])
        } else if let out {
            print("\(set.codes.count) backup codes saved to \(out) (mode 0600). They will not be shown again.")
            print("Each code works once; any earlier set no longer works.")
        } else {
            print(header)
            printColumns(set.codes)
        }
    }

    private var header: String {
        "Backup codes for \(account): shown once, they will not be shown again. Each works once; save them now."
    }

    private func printColumns(_ codes: [String]) {
        for row in stride(from: 0, to: codes.count, by: 2) {
            print(codes[row..<min(row + 2, codes.count)].map { "  \($0)" }.joined(separator: "  "))
        }
    }

    private func contents(_ set: GenerateBackupCodesResponse) -> String {
        let made = set.generatedAt > 0 ? ", made \(TimeText.iso(set.generatedAt))" : ""
        return "# otpd backup codes for \(account)\(made)\n"
            + "# Each code works once. Keep this file private; the codes will not be shown again.\n"
            + set.codes.map { $0 + "\n" }.joined()
    }
}

/// `otpctl backup redeem ACCOUNT CODE`: uses one backup code for a login.
struct BackupRedeemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redeem",
        abstract: "Use one backup code to sign in (it cannot be used again).",
        discussion: """
            A code that is not valid (unknown or used) is a refusal (exit status 1) and counts \
            against the account.

            JSON (printed on success and on failure): {"success", "remaining", "low" (3 or \
            fewer left), "locked_until" (Unix seconds or null)}.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The backup code (xxxx-xxxx-xxxx-xxxx).") var code: String
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        guard !code.isEmpty else { throw ValidationError("CODE must not be empty.") }
    }

    func run() async throws {
        let request = RedeemBackupCodeRequest(accountId: account, code: code)
        let response = try await global.request(account: account) { client throws(RPCError) in
            try await client.redeemBackupCode(request)
        }
        if global.json {
            JSONOutput.print([
                "success": response.success, "remaining": Int(response.remaining), "low": response.low,
                "locked_until": JSONOutput.time(response.lockedUntil),
            ])
        }
        guard response.success else {
            throw CommandFailure.codeNotValid(attemptsLeft: nil, lockedUntil: response.lockedUntil, account: account)
        }
        guard !global.json else { return }
        print("Accepted. \(response.remaining) backup \(response.remaining == 1 ? "code" : "codes") left.")
        if response.low {
            print("Make a new set soon: otpctl backup generate \(shellWord(account)) --out FILE")
        }
    }
}
