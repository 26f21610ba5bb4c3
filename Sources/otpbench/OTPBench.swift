import ArgumentParser
import Foundation
import OTPClient

/// Prepares the inputs of the `Verify` benchmarks (scripts/bench-verify.sh and
/// scripts/bench-uniform.sh): fresh accounts, each with a saved number and a `verify_phone`
/// challenge (or, with `--login`, a verified number and a `login` challenge), and one encoded
/// `VerifyRequest` per account, written as hex lines for the C load client's `--payload-file`.
@main
struct OTPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otpbench",
        abstract: "Prepare Verify benchmark payloads against a running otpd (development tool).")

    @Option(help: "otpd's socket.")
    var socket: String

    @Option(help: "otpd's SMS outbox file (where the codes are read from).")
    var outbox: String

    @Option(help: "Accounts (challenges) to prepare.")
    var count: Int

    @Option(help: "Account id prefix; use a new one for every set.")
    var prefix: String

    @Option(help: "Write VerifyRequests with the right codes here.")
    var right: String?

    @Option(help: "Write VerifyRequests with wrong codes here.")
    var wrong: String?

    @Option(
        help:
            "Write one file per kind of failed verification here (<kind>.hex): wrong, malformed, other-purpose, other-account, unknown-challenge, unknown-account."
    )
    var kindsDir: String?

    @Flag(help: "Lock every prepared account first (10 wrong codes each), so that its requests meet a locked account.")
    var lock = false

    @Flag(
        help:
            "Prepare logins instead: each account's number is verified first (its verify_phone code used), then a login challenge is started; --right and --wrong are for those."
    )
    var login = false

    @Option(help: "Concurrent connections used to prepare.")
    var connections: Int = 16

    @Option(
        help:
            "Calls in flight per connection while preparing (fewer: fewer serialization conflicts on PostgreSQL, where concurrent StartChallenges conflict on sms_sends)."
    )
    var inFlight: Int = 8

    func validate() throws {
        if login && kindsDir != nil { throw ValidationError("--kinds-dir is for verify_phone challenges, not --login") }
    }

    func run() async throws {
        let clients = (0..<connections).map { _ in OTPClient(socketPath: socket, defaultDeadline: .seconds(60)) }
        let started = ContinuousClock.now
        // Account i gets number +1 555 0xxxxxx with its own digits, so per-number budgets never bind.
        var challenges = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var results = [String](repeating: "", count: count)
            var next = 0
            func add(_ i: Int) {
                let client = clients[i % clients.count]
                let account = "\(prefix)-\(i)"
                group.addTask {
                    _ = try await client.setPhone(
                        SetPhoneRequest(accountId: account, phoneNumber: String(format: "+1555%07d", i)))
                    let ticket = try await client.startChallenge(
                        StartChallengeRequest(accountId: account, purpose: .verifyPhone))
                    return (i, ticket.challengeId)
                }
            }
            while next < min(count, connections * max(1, inFlight)) {
                add(next)
                next += 1
            }
            for try await (i, id) in group {
                results[i] = id
                if next < count {
                    add(next)
                    next += 1
                }
            }
            return results
        }
        for client in clients { await client.close() }
        var codes = try readCodes()
        var purpose = Purpose.verifyPhone
        if login {
            challenges = try await startLogins(challenges, codes: codes)
            codes = try readCodes()
            purpose = .login
        }
        var rightLines: [String] = []
        var wrongLines: [String] = []
        var wrongRequests: [VerifyRequest] = []
        for (i, challengeID) in challenges.enumerated() {
            guard let code = codes[challengeID] else {
                throw ValidationError("no outbox message for challenge \(challengeID)")
            }
            let account = "\(prefix)-\(i)"
            let wrongCode = String(code.map { $0 == "9" ? "0" : Character(String(($0.wholeNumberValue ?? 0) + 1)) })
            rightLines.append(
                hex(VerifyRequest(accountId: account, purpose: purpose, code: code, challengeId: challengeID)))
            let wrongRequest = VerifyRequest(
                accountId: account, purpose: purpose, code: wrongCode, challengeId: challengeID)
            wrongRequests.append(wrongRequest)
            wrongLines.append(hex(wrongRequest))
        }
        if lock { try await lockAccounts(wrongRequests) }
        if let kindsDir { try writeKinds(challenges, codes: codes, to: kindsDir) }
        if let right {
            try (rightLines.joined(separator: "\n") + "\n").write(toFile: right, atomically: true, encoding: .utf8)
        }
        if let wrong {
            try (wrongLines.joined(separator: "\n") + "\n").write(toFile: wrong, atomically: true, encoding: .utf8)
        }
        let elapsed = ContinuousClock.now - started
        FileHandle.standardError.write(Data("otpbench: prepared \(count) challenges in \(elapsed)\n".utf8))
    }

    /// Verifies each account's number with its code and starts a login challenge; returns the
    /// login challenges' ids, in the accounts' order.
    private func startLogins(_ challenges: [String], codes: [String: String]) async throws -> [String] {
        let clients = (0..<connections).map { _ in OTPClient(socketPath: socket, defaultDeadline: .seconds(60)) }
        let logins = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var logins = [String](repeating: "", count: challenges.count)
            for (i, challengeID) in challenges.enumerated() {
                guard let code = codes[challengeID] else {
                    throw ValidationError("no outbox message for challenge \(challengeID)")
                }
                let client = clients[i % clients.count]
                let account = "\(prefix)-\(i)"
                group.addTask {
                    let verified = try await client.verify(
                        VerifyRequest(accountId: account, purpose: .verifyPhone, code: code, challengeId: challengeID))
                    guard verified.success else { throw ValidationError("\(account): its number was not verified") }
                    let ticket = try await client.startChallenge(
                        StartChallengeRequest(accountId: account, purpose: .login))
                    return (i, ticket.challengeId)
                }
                if i >= connections * max(1, inFlight), let (done, id) = try await group.next() { logins[done] = id }
            }
            for try await (done, id) in group { logins[done] = id }
            return logins
        }
        for client in clients { await client.close() }
        return logins
    }

    /// Ten wrong codes per account (the challenge allows five, the account locks at ten).
    private func lockAccounts(_ requests: [VerifyRequest]) async throws {
        let clients = (0..<connections).map { _ in OTPClient(socketPath: socket, defaultDeadline: .seconds(60)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, request) in requests.enumerated() {
                let client = clients[i % clients.count]
                group.addTask {
                    for _ in 0..<10 { _ = try await client.verify(request) }
                }
                if i >= connections { try await group.next() }
            }
            try await group.waitForAll()
        }
        for client in clients { await client.close() }
    }

    /// One request per account for each way a verification can fail; all must look the same
    /// to the caller (docs/SECURITY.md §13), in answer and in time.
    private func writeKinds(_ challenges: [String], codes: [String: String], to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var kinds: [String: [String]] = [:]
        for (i, challengeID) in challenges.enumerated() {
            let account = "\(prefix)-\(i)"
            let code = codes[challengeID] ?? "000000"
            let wrongCode = String(code.map { $0 == "9" ? "0" : Character(String(($0.wholeNumberValue ?? 0) + 1)) })
            let other = challenges[(i + 1) % challenges.count]
            func add(_ kind: String, _ request: VerifyRequest) { kinds[kind, default: []].append(hex(request)) }
            add(
                "wrong",
                VerifyRequest(accountId: account, purpose: .verifyPhone, code: wrongCode, challengeId: challengeID))
            add(
                "malformed",
                VerifyRequest(accountId: account, purpose: .verifyPhone, code: "12a4 6", challengeId: challengeID))
            add(
                "other-purpose",
                VerifyRequest(accountId: account, purpose: .login, code: code, challengeId: challengeID))
            add(
                "other-account",
                VerifyRequest(accountId: account, purpose: .verifyPhone, code: code, challengeId: other))
            add(
                "unknown-challenge",
                VerifyRequest(accountId: account, purpose: .verifyPhone, code: code, challengeId: "ch_unknown\(i)"))
            add(
                "unknown-account",
                VerifyRequest(accountId: "\(prefix)-nobody-\(i)", purpose: .login, code: code, challengeId: challengeID)
            )
        }
        for (kind, lines) in kinds {
            try (lines.joined(separator: "\n") + "\n").write(
                toFile: directory + "/" + kind + ".hex", atomically: true, encoding: .utf8)
        }
    }

    private func readCodes() throws -> [String: String] {
        let text = try String(contentsOfFile: outbox, encoding: .utf8)
        var codes: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String],
                let id = object["challenge_id"], let body = object["body"],
                let code = body.split(separator: " ").first(where: { $0.count >= 6 && $0.allSatisfy(\.isNumber) })
            else { continue }
            codes[id] = String(code)
        }
        return codes
    }

    private func hex(_ message: some WireMessage) -> String {
        message.serialized().map { String(format: "%02x", $0) }.joined()
    }
}
