import Foundation
import OTPStore
import OTPTestSupport
import Testing

@testable import OTPCore

/// The step-up table (docs/SECURITY.md, "Step-up"), walked through the domain service: every
/// account state × every factor change × every kind of proof. The expected table below is
/// written out by hand from the document, not computed from `StepUpPolicy`, so a change to
/// the code that the document does not make fails here.
@Suite struct StepUpTableTests {
    /// The account states of the table.
    enum State: String, CaseIterable {
        case none, sms, totp, backupOnly, smsTotp, smsBackup, totpBackup, all, pendingNumber, locked
    }

    /// The actions, as the service offers them.
    enum Action: String, CaseIterable {
        case setPhone, startAuthenticator, generateBackupCodes, disableSMS, disableAuthenticator
        case disableBackupCodes, setPreferred
    }

    /// The proofs a caller can offer.
    enum Offered: String, CaseIterable {
        case nothing, changePhoneToken, disableFactorToken, manageFactorsToken, loginToken
        case otherAccountToken, usedToken, authenticatorCode, backupCode
    }

    /// What the document says: `-` refused (precondition), `L` refused (locked), `free` no
    /// proof needed, else `<purpose letter>:<kinds>` where the purpose is C(hange_phone),
    /// D(isable_factor) or M(anage_factors) and the kinds are t(oken of that purpose),
    /// a(uthenticator code), b(ackup code).
    static let expected: [State: [Action: String]] = [
        .none: [
            .setPhone: "free", .startAuthenticator: "free", .generateBackupCodes: "-", .disableSMS: "-",
            .disableAuthenticator: "-", .disableBackupCodes: "-", .setPreferred: "-",
        ],
        .sms: [
            .setPhone: "C:t", .startAuthenticator: "M:t", .generateBackupCodes: "M:t", .disableSMS: "D:t",
            .disableAuthenticator: "-", .disableBackupCodes: "-", .setPreferred: "M:t",
        ],
        .totp: [
            .setPhone: "M:ta", .startAuthenticator: "-", .generateBackupCodes: "M:ta", .disableSMS: "-",
            .disableAuthenticator: "D:ta", .disableBackupCodes: "-", .setPreferred: "M:ta",
        ],
        // Only from data older than the rule (codes made before any factor): the codes are
        // the only current factor, so they are the proof for everything.
        .backupOnly: [
            .setPhone: "M:tb", .startAuthenticator: "M:tb", .generateBackupCodes: "-", .disableSMS: "-",
            .disableAuthenticator: "-", .disableBackupCodes: "D:tb", .setPreferred: "-",
        ],
        .smsTotp: [
            .setPhone: "C:ta", .startAuthenticator: "-", .generateBackupCodes: "M:ta", .disableSMS: "D:ta",
            .disableAuthenticator: "D:ta", .disableBackupCodes: "-", .setPreferred: "M:ta",
        ],
        .smsBackup: [
            .setPhone: "C:tb", .startAuthenticator: "M:t", .generateBackupCodes: "M:t", .disableSMS: "D:tb",
            .disableAuthenticator: "-", .disableBackupCodes: "D:tb", .setPreferred: "M:t",
        ],
        .totpBackup: [
            .setPhone: "M:ta", .startAuthenticator: "-", .generateBackupCodes: "M:ta", .disableSMS: "-",
            .disableAuthenticator: "D:tab", .disableBackupCodes: "D:tab", .setPreferred: "M:ta",
        ],
        .all: [
            .setPhone: "C:tab", .startAuthenticator: "-", .generateBackupCodes: "M:ta", .disableSMS: "D:tab",
            .disableAuthenticator: "D:tab", .disableBackupCodes: "D:tab", .setPreferred: "M:ta",
        ],
        .pendingNumber: [
            .setPhone: "C:t", .startAuthenticator: "M:t", .generateBackupCodes: "M:t", .disableSMS: "D:t",
            .disableAuthenticator: "-", .disableBackupCodes: "-", .setPreferred: "M:t",
        ],
        .locked: [
            .setPhone: "L", .startAuthenticator: "L", .generateBackupCodes: "L", .disableSMS: "L",
            .disableAuthenticator: "L", .disableBackupCodes: "L", .setPreferred: "L",
        ],
    ]

    /// Whether `offered` satisfies `rule`; nil when the action is refused whatever the proof.
    static func accepts(_ rule: String, _ offered: Offered) -> Bool? {
        if rule == "-" || rule == "L" { return nil }
        if rule == "free" { return true }
        let parts = rule.split(separator: ":")
        let purposeToken: Offered =
            switch parts[0] {
            case "C": .changePhoneToken
            case "D": .disableFactorToken
            default: .manageFactorsToken
            }
        if offered == purposeToken { return true }
        if offered == .authenticatorCode { return parts[1].contains("a") }
        if offered == .backupCode { return parts[1].contains("b") }
        return false
    }

    /// One account in a state, with what a proof can be made of.
    struct Subject {
        var id: String
        var totp: TOTP?
        var backupCodes: [String] = []
        var number: String
    }

    @Test(arguments: State.allCases)
    func everyActionAndProof(state: State) async throws {
        let f = try await Fixture { policy in
            policy.liftSMSBudgets()
            policy.lockDurations = [3600]
        }
        defer { f.tearDown() }
        let store = f.store
        var subjects: [String: Subject] = [:]
        var serial = 0
        for action in Action.allCases {
            for offered in Offered.allCases {
                serial += 1
                let id = Self.accountID(state, action, offered)
                subjects[id] = try await Self.make(state, id: id, serial: serial, f, store)
            }
        }
        // A fresh authenticator step for every proof (the set-up used the current one).
        f.clock.advance(31)
        var failures: [String] = []
        for action in Action.allCases {
            for offered in Offered.allCases {
                let id = Self.accountID(state, action, offered)
                let subject = subjects[id]!
                let rule = Self.expected[state]![action]!
                let proof = try await Self.proof(offered, for: subject, f, store)
                let before = try await f.service.status(accountID: id)
                let outcome = await Self.perform(action, subject, proof: proof, f)
                let after = try await f.service.status(accountID: id)
                let expectAccepted = Self.accepts(rule, offered)
                switch (expectAccepted, outcome) {
                case (true, .success):
                    break
                case (true, .failure(let error)):
                    failures.append("\(id): expected success (\(rule)), got \(error)")
                case (false, .failure(let error)) where error.kind == .permissionDenied:
                    if !Self.sameFactors(before, after) { failures.append("\(id): refused but changed the factors") }
                case (nil, .failure(let error))
                where error.kind == (rule == "L" ? .permissionDenied : .failedPrecondition):
                    if !Self.sameFactors(before, after) { failures.append("\(id): refused but changed the factors") }
                case (_, .failure(let error)):
                    failures.append("\(id): expected \(rule) to refuse with another status, got \(error)")
                case (_, .success):
                    failures.append("\(id): expected a refusal (\(rule)), got success")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")

        // Every kind of event these actions wrote is one `[notify] kinds` may name.
        var kinds: Set<EventKind> = []
        var before: Int64?
        repeat {
            let page = try await f.service.listEvents(accountID: nil, pageSize: 500, beforeID: before)
            kinds.formUnion(page.events.map(\.kind))
            before = page.nextBeforeID
        } while before != nil
        #expect(kinds.subtracting(TwoFactorService.recordedKinds).isEmpty)
    }

    /// Ids end in a precomposed "é", so that another account's id can differ in bytes only.
    static func accountID(_ state: State, _ action: Action, _ offered: Offered) -> String {
        "\(state.rawValue)-\(action.rawValue)-\(offered.rawValue)-caf\u{E9}"
    }

    static func sameFactors(_ a: AccountSummary, _ b: AccountSummary) -> Bool {
        a.phoneMasked == b.phoneMasked && a.phoneVerified == b.phoneVerified
            && a.pendingPhoneMasked == b.pendingPhoneMasked && a.totpEnabled == b.totpEnabled
            && a.backupCodesRemaining == b.backupCodesRemaining && a.preferred == b.preferred
    }

    /// Builds an account in `state` through the service, as a user would have.
    static func make(_ state: State, id: String, serial: Int, _ f: Fixture, _ store: any TwoFactorStore)
        async throws -> Subject
    {
        let number = "+1555" + String(format: "%07d", serial)
        var subject = Subject(id: id, number: number)
        let sms: Bool = [.sms, .smsTotp, .smsBackup, .all, .pendingNumber, .locked].contains(state)
        let totp: Bool = [.totp, .smsTotp, .totpBackup, .all].contains(state)
        let backup: Bool = [.smsBackup, .totpBackup, .all].contains(state)
        var grace: String?
        if sms { grace = try await f.enrollPhone(id, number).proofToken }
        if totp {
            let proof: ProofInput? = grace.map { .token($0) }
            let enrollment = try await f.service.beginTOTPEnrollment(accountID: id, label: nil, proof: proof)
            let secret = try TOTP(secret: try Base32.decode(enrollment.secretBase32))
            let confirmation = try await f.service.confirmTOTPEnrollment(
                accountID: id, code: secret.code(at: f.clock.now())!.text)
            #expect(confirmation.success)
            if grace == nil { grace = confirmation.proofToken } else { #expect(confirmation.proofToken == nil) }
            if sms {
                // The grace proof went on the authenticator: a fresh one for the codes.
                let challenge = try await f.challenge(id, .manageFactors)
                grace = try await f.service.verify(
                    accountID: id, purpose: .manageFactors, code: challenge.code, challengeID: challenge.id
                ).proofToken
            }
            subject.totp = secret
        }
        if backup {
            subject.backupCodes = try await f.service.generateBackupCodes(
                accountID: id, proof: grace.map { .token($0) }
            )
            .codes
        }
        if state == .backupOnly {
            // Codes made before the rule existed: written as an older otpd would have.
            let codes = BackupCode.generateSet(count: 10, using: SeededRandom(seed: UInt64(serial)))
            let hashes = codes.map { f.keys.hashing.hash($0, accountID: id) }
            try await store.transaction { tx in
                try tx.saveAccount(AccountRecord(id: id, now: f.clock.now()))
                try tx.replaceBackupCodes(accountID: id, hashes: hashes, at: f.clock.now())
            }
            subject.backupCodes = codes.map(\.formatted)
        }
        if state == .pendingNumber {
            let challenge = try await f.challenge(id, .changePhone)
            let token = try await f.service.verify(
                accountID: id, purpose: .changePhone, code: challenge.code, challengeID: challenge.id
            ).proofToken
            let result = try await f.service.setPhone(
                accountID: id, number: "+1666" + String(format: "%07d", serial), proof: token.map { .token($0) })
            #expect(result.pending)
        }
        if state == .locked {
            for _ in 0..<10 {
                _ = try await f.service.verify(accountID: id, purpose: .login, code: "000000", challengeID: nil)
            }
            #expect(try await f.service.status(accountID: id).locked)
        }
        return subject
    }

    /// Makes the offered proof for `subject`: tokens are stored as a successful verification
    /// stores them; codes are real ones of the account where it has them.
    static func proof(_ offered: Offered, for subject: Subject, _ f: Fixture, _ store: any TwoFactorStore)
        async throws -> ProofInput?
    {
        func token(_ purpose: CodePurpose, account: String, used: Bool = false) async throws -> ProofInput {
            let text = "pf_test_\(purpose.rawValue)_\(account.utf8.count)_\(subject.id)"
            let record = ProofRecord(
                tokenHash: TwoFactorService.tokenHash(text), accountID: account, purpose: purpose,
                expiresAt: f.clock.now().addingTimeInterval(300))
            try await store.transaction { tx in
                try tx.insertProof(record)
                if used { _ = try tx.takeProof(tokenHash: record.tokenHash) }
            }
            return .token(text)
        }
        switch offered {
        case .nothing: return nil
        case .changePhoneToken: return try await token(.changePhone, account: subject.id)
        case .disableFactorToken: return try await token(.disableFactor, account: subject.id)
        case .manageFactorsToken: return try await token(.manageFactors, account: subject.id)
        case .loginToken: return try await token(.login, account: subject.id)
        case .otherAccountToken:
            // Another account whose id is canonically equivalent (Swift's `==` says equal) but
            // spelled with other bytes: "é" decomposed.
            let other = String(subject.id.unicodeScalars.dropLast()) + "e\u{301}"
            #expect(other == subject.id && !other.utf8.elementsEqual(subject.id.utf8))
            return try await token(.manageFactors, account: other)
        case .usedToken: return try await token(.manageFactors, account: subject.id, used: true)
        case .authenticatorCode:
            return .totpCode(subject.totp?.code(at: f.clock.now())?.text ?? "123456")
        case .backupCode:
            return .backupCode(subject.backupCodes.first ?? "k7mq-2xtp-9fhw-c3rd")
        }
    }

    static func perform(_ action: Action, _ subject: Subject, proof: ProofInput?, _ f: Fixture) async
        -> Result<Void, TwoFactorError>
    {
        do throws(TwoFactorError) {
            switch action {
            case .setPhone:
                _ = try await f.service.setPhone(
                    accountID: subject.id, number: "+1777" + subject.number.suffix(7), proof: proof)
            case .startAuthenticator:
                _ = try await f.service.beginTOTPEnrollment(accountID: subject.id, label: nil, proof: proof)
            case .generateBackupCodes:
                _ = try await f.service.generateBackupCodes(accountID: subject.id, proof: proof)
            case .disableSMS:
                _ = try await f.service.disableFactor(accountID: subject.id, factor: .sms, proof: proof)
            case .disableAuthenticator:
                _ = try await f.service.disableFactor(accountID: subject.id, factor: .totp, proof: proof)
            case .disableBackupCodes:
                _ = try await f.service.disableFactor(accountID: subject.id, factor: .backup, proof: proof)
            case .setPreferred:
                let status = try await f.service.status(accountID: subject.id)
                _ = try await f.service.setPreferredMethod(
                    accountID: subject.id, method: status.smsEnabled ? .sms : .totp, proof: proof)
            }
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
