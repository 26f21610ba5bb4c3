import ArgumentParser
import Foundation
import OTPClient

/// Prepares the inputs of the `Verify` benchmark (scripts/bench-verify.sh): fresh accounts,
/// each with a saved number and a `verify_phone` challenge, and one encoded `VerifyRequest`
/// per account, written as hex lines for the C load client's `--payload-file`.
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

    @Option(help: "Concurrent connections used to prepare.")
    var connections: Int = 16

    func run() async throws {
        let clients = (0..<connections).map { _ in OTPClient(socketPath: socket, defaultDeadline: .seconds(60)) }
        let started = ContinuousClock.now
        // Account i gets number +1 555 0xxxxxx with its own digits, so per-number budgets never bind.
        let challenges = try await withThrowingTaskGroup(of: (Int, String).self) { group in
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
            while next < min(count, connections * 8) {
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
        let codes = try readCodes()
        var rightLines: [String] = []
        var wrongLines: [String] = []
        for (i, challengeID) in challenges.enumerated() {
            guard let code = codes[challengeID] else {
                throw ValidationError("no outbox message for challenge \(challengeID)")
            }
            let account = "\(prefix)-\(i)"
            let wrongCode = String(code.map { $0 == "9" ? "0" : Character(String(($0.wholeNumberValue ?? 0) + 1)) })
            rightLines.append(hex(VerifyRequest(accountId: account, purpose: .verifyPhone, code: code, challengeId: challengeID)))
            wrongLines.append(
                hex(VerifyRequest(accountId: account, purpose: .verifyPhone, code: wrongCode, challengeId: challengeID)))
        }
        if let right { try (rightLines.joined(separator: "\n") + "\n").write(toFile: right, atomically: true, encoding: .utf8) }
        if let wrong { try (wrongLines.joined(separator: "\n") + "\n").write(toFile: wrong, atomically: true, encoding: .utf8) }
        let elapsed = ContinuousClock.now - started
        FileHandle.standardError.write(Data("otpbench: prepared \(count) challenges in \(elapsed)\n".utf8))
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
