import Foundation
import Logging
import OTPCore
import OTPPostgres
import OTPStore
import OTPTestSupport
import Synchronization
import Testing

/// A database file in its own directory under /tmp, removed by `remove()`.
private struct TemporaryDatabase {
    let directory: String
    let path: String

    init() throws {
        directory = "/tmp/otpd-2fa-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        path = directory + "/otpd.sqlite"
    }

    func open() throws -> SQLiteTwoFactorStore {
        try SQLiteTwoFactorStore(store: SQLiteStore(path: path, logger: Logger(label: "test")))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs `body` with a fresh store; closes it and removes the file afterwards.
private func withStore(_ body: (SQLiteTwoFactorStore) async throws -> Void) async throws {
    let database = try TemporaryDatabase()
    defer { database.remove() }
    let store = try database.open()
    defer { store.store.close() }
    try await body(store)
}

/// A whole-millisecond time `milliseconds` after 2023-11-14 22:13:20 UTC.
private func time(_ milliseconds: Int64) -> Date {
    Date(timeIntervalSince1970: Double(1_700_000_000_000 + milliseconds) / 1000)
}

private func phone(_ text: String) -> PhoneNumber {
    try! PhoneNumber(parsing: text)
}

/// A 32-byte hash whose every byte is `byte` (and whose first byte is `tag`, to tell sets apart).
private func hash(_ byte: UInt8, tag: UInt8 = 0) -> [UInt8] {
    [tag] + [UInt8](repeating: byte, count: 31)
}

private func challenge(
    _ id: String, account: String = "alice", purpose: CodePurpose = .login, state: ChallengeState = .active
) -> ChallengeRecord {
    ChallengeRecord(
        id: id, accountID: account, purpose: purpose, destination: phone("+14155552671"), codeHash: hash(7),
        createdAt: time(0), expiresAt: time(300_000), attemptsLeft: 5, state: state)
}

private struct Refused: Error {}

/// One store conformance suite: every test here runs against SQLite and against PostgreSQL (a
/// throw-away cluster, `PostgresTestCluster`), the same functions for both.
@Suite("Two-factor store conformance (SQLite and PostgreSQL)")
struct StoreConformanceTests {
    // MARK: Accounts

    @Test(arguments: StoreBackend.allCases) func accountRoundTripWithEveryFieldSet(_ backend: StoreBackend) async throws
    {
        try await withConformanceStore(backend) { store in
            var full = AccountRecord(id: "alice@shop", now: time(1))
            full.phone = phone("+44 20 7946 0958")
            full.phoneVerified = true
            full.pendingPhone = phone("+14155552671")
            full.totpSecretSealed = [1, 2, 3, 4, 5]
            full.totpLastStep = 56_666_667
            full.pendingTotpSealed = [9, 8, 7]
            full.pendingTotpExpiresAt = time(123)
            full.preferred = .totp
            full.consecutiveFailures = 7
            full.lockCount = 2
            full.lockedUntil = time(999)
            full.updatedAt = time(1001)
            let empty = AccountRecord(id: "bob", now: time(-5))
            var lockedForever = AccountRecord(id: "carol", now: time(2))
            lockedForever.lockedUntil = .distantFuture

            try await store.transaction { [full, lockedForever] tx in
                try tx.saveAccount(full)
                try tx.saveAccount(empty)
                try tx.saveAccount(lockedForever)
            }
            let (readFull, readEmpty, readLocked, missing) = try await store.transaction { tx in
                (try tx.account("alice@shop"), try tx.account("bob"), try tx.account("carol"), try tx.account("dave"))
            }
            #expect(readFull == full)
            #expect(readEmpty == empty)
            #expect(readEmpty?.phone == nil && readEmpty?.totpSecretSealed == nil && readEmpty?.preferred == nil)
            #expect(readLocked?.lockedUntil == .distantFuture, "the permanent lock must survive the round trip")
            #expect(missing == nil)

            // Saving again replaces every field, including back to nil.
            var changed = full
            changed.phone = nil
            changed.phoneVerified = false
            changed.pendingPhone = nil
            changed.totpSecretSealed = nil
            changed.totpLastStep = nil
            changed.pendingTotpSealed = nil
            changed.pendingTotpExpiresAt = nil
            changed.preferred = nil
            changed.consecutiveFailures = 0
            changed.lockCount = 0
            changed.lockedUntil = nil
            changed.updatedAt = time(5000)
            try await store.transaction { [changed] tx in try tx.saveAccount(changed) }
            #expect(try await store.transaction { tx in try tx.account("alice@shop") } == changed)
        }
    }

    @Test(arguments: StoreBackend.allCases) func timesAreKeptToTheMillisecond(_ backend: StoreBackend) async throws {
        try await withConformanceStore(backend) { store in
            var account = AccountRecord(id: "alice", now: Date(timeIntervalSince1970: 1_700_000_000.1234))
            account.lockedUntil = Date(timeIntervalSince1970: 1_700_000_000.9996)
            account.pendingTotpExpiresAt = Date(timeIntervalSince1970: -1.5)
            try await store.transaction { [account] tx in try tx.saveAccount(account) }
            let read = try #require(try await store.transaction { tx in try tx.account("alice") })
            #expect(read.createdAt == Date(timeIntervalSince1970: 1_700_000_000.123))
            #expect(read.lockedUntil == Date(timeIntervalSince1970: 1_700_000_001.000))
            #expect(read.pendingTotpExpiresAt == Date(timeIntervalSince1970: -1.5))
        }
    }

    @Test(arguments: StoreBackend.allCases) func valuesThatCannotBeStoredFaithfullyAreRefused(_ backend: StoreBackend)
        async throws
    {
        try await withConformanceStore(backend) { store in
            var emptySecret = AccountRecord(id: "alice", now: time(0))
            emptySecret.totpSecretSealed = []
            await #expect(throws: (any Error).self) {
                try await store.transaction { [emptySecret] tx in try tx.saveAccount(emptySecret) }
            }
            await #expect(throws: (any Error).self) {
                try await store.transaction { tx in try tx.saveAccount(AccountRecord(id: "a\u{0}b", now: time(0))) }
            }
            await #expect(throws: (any Error).self) {
                try await store.transaction { tx in
                    try tx.saveAccount(AccountRecord(id: "alice", now: Date(timeIntervalSince1970: .infinity)))
                }
            }
            var shortHash = challenge("c1")
            shortHash.codeHash = [1, 2, 3]
            await #expect(throws: (any Error).self) {
                try await store.transaction { [shortHash] tx in try tx.insertChallenge(shortHash) }
            }
            let leftover = try await store.transaction { tx in try tx.account("alice") }
            #expect(leftover == nil)
        }
    }

    // MARK: Challenges

    @Test(arguments: StoreBackend.allCases) func challengesInsertLookUpUpdateAndVoid(_ backend: StoreBackend)
        async throws
    {
        try await withConformanceStore(backend) { store in
            let login1 = challenge("c-login-1", state: .used)
            let login2 = challenge("c-login-2")
            let change = challenge("c-change", purpose: .changePhone)
            let otherAccount = challenge("c-bob", account: "bob")
            try await store.transaction { tx in
                for record in [login1, login2, change, otherAccount] { try tx.insertChallenge(record) }
            }
            #expect(try await store.transaction { tx in try tx.challenge(id: "c-login-2") } == login2)
            #expect(try await store.transaction { tx in try tx.challenge(id: "nope") } == nil)

            // A duplicate id is refused as a constraint.
            await #expect {
                try await store.transaction { tx in try tx.insertChallenge(login2) }
            } throws: { error in
                isConstraintViolation(error)
            }

            try await store.transaction { tx in try tx.updateChallenge(id: "c-login-2", state: .active, attemptsLeft: 3)
            }
            var expected = login2
            expected.attemptsLeft = 3
            #expect(try await store.transaction { tx in try tx.challenge(id: "c-login-2") } == expected)
            await #expect(throws: (any Error).self) {
                try await store.transaction { tx in try tx.updateChallenge(id: "nope", state: .used, attemptsLeft: 0) }
            }

            // Voiding one purpose leaves the others, used ones and other accounts alone.
            try await store.transaction { tx in try tx.voidActiveChallenges(accountID: "alice", purpose: .login) }
            var states = try await store.transaction { tx in
                try ["c-login-1", "c-login-2", "c-change", "c-bob"].map { try tx.challenge(id: $0)?.state }
            }
            #expect(states == [.used, .voided, .active, .active])

            // Every purpose.
            try await store.transaction { tx in try tx.voidActiveChallenges(accountID: "alice", purpose: nil) }
            states = try await store.transaction { tx in
                try ["c-login-1", "c-login-2", "c-change", "c-bob"].map { try tx.challenge(id: $0)?.state }
            }
            #expect(states == [.used, .voided, .voided, .active])
        }
    }

    /// The schema's CHECK lists must know every purpose and state the domain has.
    @Test(arguments: StoreBackend.allCases) func everyPurposeAndStateCanBeStored(_ backend: StoreBackend) async throws {
        let states: [ChallengeState] = [.active, .used, .voided, .failed]
        try await withConformanceStore(backend) { store in
            try await store.transaction { tx in
                for (index, purpose) in CodePurpose.allCases.enumerated() {
                    for state in states {
                        try tx.insertChallenge(
                            challenge("\(purpose.rawValue)-\(state.rawValue)", purpose: purpose, state: state))
                    }
                    try tx.insertProof(
                        ProofRecord(
                            tokenHash: hash(1, tag: UInt8(index)), accountID: "a", purpose: purpose, expiresAt: time(0))
                    )
                    try tx.recordSMSSend(
                        SMSSendRecord(
                            accountID: "a", phone: phone("+4915112345678"), purpose: purpose, challengeID: "c",
                            at: time(0)))
                }
                var account = AccountRecord(id: "a", now: time(0))
                for kind in FactorKind.allCases {
                    account.preferred = kind
                    try tx.saveAccount(account)
                }
            }
            for purpose in CodePurpose.allCases {
                for state in states {
                    let read = try await store.transaction { tx in
                        try tx.challenge(id: "\(purpose.rawValue)-\(state.rawValue)")
                    }
                    #expect(read?.purpose == purpose && read?.state == state)
                }
            }
            let sends = try await store.transaction { tx in try tx.smsSends(accountID: "a", since: time(0)) }
            #expect(Set(sends.map(\.purpose)) == Set(CodePurpose.allCases))
        }
    }

    // MARK: Proofs

    @Test(arguments: StoreBackend.allCases) func aProofCanBeTakenOnce(_ backend: StoreBackend) async throws {
        try await withConformanceStore(backend) { store in
            let proof = ProofRecord(
                tokenHash: hash(3), accountID: "alice", purpose: .changePhone, expiresAt: time(60_000))
            try await store.transaction { tx in try tx.insertProof(proof) }
            let first = try await store.transaction { tx in try tx.takeProof(tokenHash: hash(3)) }
            let second = try await store.transaction { tx in try tx.takeProof(tokenHash: hash(3)) }
            let unknown = try await store.transaction { tx in try tx.takeProof(tokenHash: hash(4)) }
            #expect(first == proof)
            #expect(second == nil)
            #expect(unknown == nil)
        }
    }

    // MARK: Events

    @Test(arguments: StoreBackend.allCases) func eventsAreNewestFirstAndPageByID(_ backend: StoreBackend) async throws {
        try await withConformanceStore(backend) { store in
            let ids = try await store.transaction { tx in
                try (0..<10).map { i in
                    try tx.appendEvent(
                        EventRecord(
                            accountID: i % 2 == 0 ? "alice" : "bob", kind: .verify, outcome: .success, detail: "d\(i)",
                            destinationMasked: "+1******4567", at: time(Int64(i))))
                }
            }
            #expect(ids == ids.sorted() && Set(ids).count == 10)

            let all = try await store.transaction { tx in try tx.events(accountID: nil, beforeID: nil, limit: 100) }
            #expect(all.map(\.detail) == (0..<10).reversed().map { "d\($0)" })
            #expect(all.allSatisfy { $0.kind == .verify && $0.outcome == .success })
            #expect(all.first?.id == ids.last)
            #expect(all.first?.detail == "d9" && all.first?.destinationMasked == "+1******4567")
            #expect(all.first?.at == time(9))

            // Alice's events in pages of two, following beforeID.
            var pages: [[String]] = []
            var before: Int64? = nil
            while true {
                let cursor = before
                let page = try await store.transaction { tx in
                    try tx.events(accountID: "alice", beforeID: cursor, limit: 2)
                }
                if page.isEmpty { break }
                pages.append(page.map(\.detail))
                before = page.last!.id
            }
            #expect(pages == [["d8", "d6"], ["d4", "d2"], ["d0"]])

            // Every account, below an id.
            let older = try await store.transaction { tx in try tx.events(accountID: nil, beforeID: ids[3], limit: 10) }
            #expect(older.map(\.detail) == ["d2", "d1", "d0"])

            // The limit is clamped to 1...1000.
            let one = try await store.transaction { tx in try tx.events(accountID: nil, beforeID: nil, limit: 0) }
            #expect(one.map(\.detail) == ["d9"])
            try await store.transaction { tx in
                for i in 0..<1000 {
                    try tx.appendEvent(
                        EventRecord(
                            accountID: "carol", kind: .verify, outcome: .success, detail: "bulk\(i)", at: time(0)))
                }
            }
            let capped = try await store.transaction { tx in try tx.events(accountID: nil, beforeID: nil, limit: 5000) }
            #expect(capped.count == 1000)
            #expect(capped.first?.detail == "bulk999")
        }
    }

    // MARK: SMS sends

    @Test(arguments: StoreBackend.allCases) func smsSendCountsHonourTheSinceBoundaryAndPrune(_ backend: StoreBackend)
        async throws
    {
        try await withConformanceStore(backend) { store in
            let us1 = phone("+14155552671")
            let us2 = phone("+12125550100")
            let uk = phone("+447946000958")
            let sends = [
                SMSSendRecord(accountID: "alice", phone: us1, purpose: .login, challengeID: "c1", at: time(0)),
                SMSSendRecord(accountID: "alice", phone: us1, purpose: .login, challengeID: "c2", at: time(1000)),
                SMSSendRecord(accountID: "alice", phone: uk, purpose: .verifyPhone, challengeID: "c3", at: time(2000)),
                SMSSendRecord(accountID: "bob", phone: us2, purpose: .login, challengeID: "c4", at: time(2000)),
                SMSSendRecord(accountID: "bob", phone: us1, purpose: .changePhone, challengeID: "c5", at: time(3000)),
            ]
            try await store.transaction { tx in for send in sends { try tx.recordSMSSend(send) } }

            struct Counts: Equatable, Sendable {
                var alice: [String], bob: Int, us1: Int, us2: Int, uk: Int, nanp: Int, britain: Int, all: Int
            }
            func counts(since: Date) async throws -> Counts {
                try await store.transaction { tx in
                    Counts(
                        alice: try tx.smsSends(accountID: "alice", since: since).map(\.challengeID),
                        bob: try tx.smsSends(accountID: "bob", since: since).count,
                        us1: try tx.countSMSSends(phone: us1, pool: .verified, since: since, limit: 100),
                        us2: try tx.countSMSSends(phone: us2, pool: .verified, since: since, limit: 100),
                        uk: try tx.countSMSSends(phone: uk, pool: .verification, since: since, limit: 100),
                        nanp: try tx.countSMSSends(countryCallingCode: "1", since: since, limit: 100),
                        britain: try tx.countSMSSends(countryCallingCode: "44", since: since, limit: 100),
                        all: try tx.countAllSMSSends(since: since, limit: 100))
                }
            }
            #expect(
                try await counts(since: time(0))
                    == Counts(alice: ["c3", "c2", "c1"], bob: 2, us1: 3, us2: 1, uk: 1, nanp: 4, britain: 1, all: 5))
            // `since` is inclusive: a send at exactly `since` counts, one a millisecond earlier does not.
            #expect(
                try await counts(since: time(1000))
                    == Counts(alice: ["c3", "c2"], bob: 2, us1: 2, us2: 1, uk: 1, nanp: 3, britain: 1, all: 4))
            #expect(
                try await counts(since: time(1001))
                    == Counts(alice: ["c3"], bob: 2, us1: 1, us2: 1, uk: 1, nanp: 2, britain: 1, all: 3))
            #expect(
                try await counts(since: time(3001))
                    == Counts(alice: [], bob: 0, us1: 0, us2: 0, uk: 0, nanp: 0, britain: 0, all: 0))
            let full = try await store.transaction { tx in try tx.smsSends(accountID: "alice", since: time(0)) }
            #expect(full.last == sends[0])

            // Pruning removes sends strictly before the cut-off.
            try await store.transaction { tx in try tx.pruneSMSSends(before: time(2000)) }
            #expect(
                try await counts(since: time(-1_000_000))
                    == Counts(alice: ["c3"], bob: 2, us1: 1, us2: 1, uk: 1, nanp: 2, britain: 1, all: 3))
        }
    }

    // MARK: Backup codes

    @Test(arguments: StoreBackend.allCases) func concurrentRedemptionsOfOneBackupCodeSucceedOnce(
        _ backend: StoreBackend
    ) async throws {
        try await withConformanceStore(backend) { store in
            let codes = (1...10).map { hash(UInt8($0)) }
            try await store.transaction { tx in
                try tx.replaceBackupCodes(accountID: "alice", hashes: codes, at: time(0))
            }
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<64 {
                    group.addTask {
                        try await store.transaction { tx in
                            try tx.consumeBackupCode(accountID: "alice", hash: codes[4], at: time(Int64(i)))
                        }
                    }
                }
                var results: [Bool] = []
                for try await result in group { results.append(result) }
                return results
            }
            #expect(results.count == 64)
            #expect(results.filter { $0 }.count == 1)
            #expect(try await store.transaction { tx in try tx.remainingBackupCodes(accountID: "alice") } == 9)
        }
    }

    @Test(arguments: StoreBackend.allCases) func backupCodesAreSingleUseScopedAndReplaceable(_ backend: StoreBackend)
        async throws
    {
        try await withConformanceStore(backend) { store in
            let old = (1...10).map { hash(UInt8($0), tag: 1) }
            let new = (1...10).map { hash(UInt8($0), tag: 2) }
            try await store.transaction { tx in
                try tx.replaceBackupCodes(accountID: "alice", hashes: old, at: time(0))
                try tx.replaceBackupCodes(accountID: "bob", hashes: [hash(99)], at: time(0))
            }
            let first = try await store.transaction { tx in
                (
                    try tx.consumeBackupCode(accountID: "alice", hash: old[0], at: time(1)),
                    try tx.consumeBackupCode(accountID: "alice", hash: old[0], at: time(2)),
                    try tx.consumeBackupCode(accountID: "alice", hash: hash(99), at: time(2)),  // Bob's code
                    try tx.consumeBackupCode(accountID: "alice", hash: hash(42), at: time(2)),
                    try tx.remainingBackupCodes(accountID: "alice")
                )
            }
            #expect(first == (true, false, false, false, 9))

            try await store.transaction { tx in try tx.replaceBackupCodes(accountID: "alice", hashes: new, at: time(3))
            }
            let second = try await store.transaction { tx in
                (
                    try tx.remainingBackupCodes(accountID: "alice"),
                    try old.map { try tx.consumeBackupCode(accountID: "alice", hash: $0, at: time(4)) },
                    try tx.consumeBackupCode(accountID: "alice", hash: new[9], at: time(4)),
                    try tx.remainingBackupCodes(accountID: "alice"),
                    try tx.remainingBackupCodes(accountID: "bob")
                )
            }
            #expect(second.0 == 10)
            #expect(second.1 == Array(repeating: false, count: 10), "a replaced set must be void")
            #expect(second.2 == true)
            #expect(second.3 == 9)
            #expect(second.4 == 1)

            // A set with a duplicate is refused whole; the previous set stays.
            await #expect(throws: (any Error).self) {
                try await store.transaction { tx in
                    try tx.replaceBackupCodes(
                        accountID: "alice", hashes: [hash(1, tag: 3), hash(1, tag: 3)], at: time(5))
                }
            }
            #expect(try await store.transaction { tx in try tx.remainingBackupCodes(accountID: "alice") } == 9)
        }
    }

    // MARK: Deleting and atomicity

    @Test(arguments: StoreBackend.allCases) func deleteAccountDataKeepsEventsAndOtherAccounts(_ backend: StoreBackend)
        async throws
    {
        try await withConformanceStore(backend) { store in
            try await store.transaction { tx in
                for id in ["alice", "bob"] {
                    try tx.saveAccount(AccountRecord(id: id, now: time(0)))
                    try tx.insertChallenge(challenge("c-\(id)", account: id))
                    try tx.insertProof(
                        ProofRecord(
                            tokenHash: hash(id == "alice" ? 1 : 2), accountID: id, purpose: .manageFactors,
                            expiresAt: time(1)))
                    try tx.replaceBackupCodes(accountID: id, hashes: [hash(5), hash(6)], at: time(0))
                    try tx.appendEvent(EventRecord(accountID: id, kind: .phoneSaved, outcome: .success, at: time(0)))
                    try tx.recordSMSSend(
                        SMSSendRecord(
                            accountID: id, phone: phone("+14155552671"), purpose: .login, challengeID: "c-\(id)",
                            at: time(0)))
                }
                try tx.deleteAccountData("alice")
            }
            let alice = try await store.transaction { tx in
                (
                    try tx.account("alice"), try tx.challenge(id: "c-alice"), try tx.takeProof(tokenHash: hash(1)),
                    try tx.remainingBackupCodes(accountID: "alice"),
                    try tx.events(accountID: "alice", beforeID: nil, limit: 10).count,
                    try tx.smsSends(accountID: "alice", since: time(0)).count
                )
            }
            #expect(alice.0 == nil)
            #expect(alice.1 == nil)
            #expect(alice.2 == nil)
            #expect(alice.3 == 0)
            #expect(alice.4 == 1, "events outlive the account")
            #expect(alice.5 == 1, "sends still count toward the budgets")
            let bob = try await store.transaction { tx in
                (
                    try tx.account("bob") != nil, try tx.challenge(id: "c-bob") != nil,
                    try tx.takeProof(tokenHash: hash(2)) != nil, try tx.remainingBackupCodes(accountID: "bob")
                )
            }
            #expect(bob == (true, true, true, 2))
        }
    }

    @Test(arguments: StoreBackend.allCases) func aThrowingBodyLeavesNothingBehind(_ backend: StoreBackend) async throws
    {
        try await withConformanceStore(backend) { store in
            await #expect(throws: Refused.self) {
                try await store.transaction { tx in
                    try tx.saveAccount(AccountRecord(id: "alice", now: time(0)))
                    try tx.insertChallenge(challenge("c1"))
                    try tx.insertProof(
                        ProofRecord(tokenHash: hash(1), accountID: "alice", purpose: .login, expiresAt: time(1)))
                    try tx.appendEvent(EventRecord(accountID: "alice", kind: .verify, outcome: .success, at: time(0)))
                    try tx.recordSMSSend(
                        SMSSendRecord(
                            accountID: "alice", phone: phone("+14155552671"), purpose: .login, challengeID: "c1",
                            at: time(0)))
                    try tx.replaceBackupCodes(accountID: "alice", hashes: [hash(1)], at: time(0))
                    throw Refused()
                }
            }
            let left = try await store.transaction { tx in
                (
                    try tx.account("alice") == nil, try tx.challenge(id: "c1") == nil,
                    try tx.takeProof(tokenHash: hash(1)) == nil,
                    try tx.events(accountID: nil, beforeID: nil, limit: 10).isEmpty,
                    try tx.countAllSMSSends(since: time(-1), limit: 100),
                    try tx.remainingBackupCodes(accountID: "alice")
                )
            }
            #expect(left == (true, true, true, true, 0, 0))
        }
    }

    /// A body that catches a storage error and carries on still fails, and keeps nothing.
    @Test(arguments: StoreBackend.allCases) func aSwallowedStorageErrorStillRefusesTheTransaction(
        _ backend: StoreBackend
    ) async throws {
        try await withConformanceStore(backend) { store in
            try await store.transaction { tx in try tx.insertChallenge(challenge("c1")) }
            // Swallowed as the last operation: the transaction itself throws.
            await #expect {
                try await store.transaction { tx in
                    try tx.saveAccount(AccountRecord(id: "alice", now: time(0)))
                    do {
                        try tx.insertChallenge(challenge("c1"))  // duplicate id
                    } catch {}
                    return true
                }
            } throws: { error in
                isConstraintViolation(error)
            }
            // Swallowed, then more work: every later operation throws the same error.
            let laterOperationThrew = Mutex<Bool?>(nil)
            await #expect {
                try await store.transaction { tx in
                    try? tx.insertChallenge(challenge("c1"))
                    do {
                        try tx.saveAccount(AccountRecord(id: "bob", now: time(0)))
                        laterOperationThrew.withLock { $0 = false }
                    } catch {
                        laterOperationThrew.withLock { $0 = isConstraintViolation(error) }
                    }
                }
            } throws: { error in
                isConstraintViolation(error)
            }
            #expect(laterOperationThrew.withLock { $0 } == true)
            let leftovers = try await store.transaction { tx in (try tx.account("alice"), try tx.account("bob")) }
            #expect(leftovers.0 == nil)
            #expect(leftovers.1 == nil)
        }
    }

    @Test(arguments: StoreBackend.allCases) func aTransactionObjectIsDeadAfterItsBody(_ backend: StoreBackend)
        async throws
    {
        /// Smuggles the transaction object out of its body, which the API otherwise prevents.
        final class Escape: @unchecked Sendable {
            // @unchecked Sendable: written once inside the first transaction body and read only
            // after that transaction's `await` returned, so the accesses never overlap.
            var transaction: (any StoreTransaction)?
        }
        try await withConformanceStore(backend) { store in
            let escape = Escape()
            try await store.transaction { tx in escape.transaction = tx }
            #expect(escape.transaction != nil)
            let refused = try await store.transaction { _ in
                do {
                    try escape.transaction?.saveAccount(AccountRecord(id: "alice", now: time(0)))
                    return false
                } catch {
                    return error is StoreError || error is PostgresStoreError
                }
            }
            #expect(refused)
            #expect(try await store.transaction { tx in try tx.account("alice") } == nil)
        }
    }

}

/// What only the SQLite store has: its file, its schema's CHECKs on rows written by hand, and
/// corruption found on reading.
@Suite("Two-factor store on SQLite")
struct TwoFactorStoreTests {
    // MARK: Corruption and durability

    @Test func theSchemaRefusesMalformedRows() async throws {
        try await withStore { store in
            await #expect {
                try await store.store.write { db in
                    try db.run(
                        """
                        INSERT INTO accounts (id, phone, phone_verified, consecutive_failures, lock_count, created_at, updated_at)
                        VALUES ('eve', '0123', 0, 0, 0, 0, 0)
                        """)
                }
            } throws: { error in
                (error as? StoreError)?.kind == .constraint
            }
            await #expect {
                try await store.store.write { db in
                    try db.run(
                        """
                        INSERT INTO challenges (id, account_id, purpose, destination, code_hash, created_at, expires_at,
                            attempts_left, state)
                        VALUES ('c', 'eve', 'sudo', '+14155552671', zeroblob(32), 0, 0, 5, 'active')
                        """)
                }
            } throws: { error in
                (error as? StoreError)?.kind == .constraint
            }
        }
    }

    @Test func corruptRowsThrowInsteadOfBeingSkipped() async throws {
        try await withStore { store in
            // Rows that got past the CHECKs (an older build, a manual edit, a damaged page).
            try await store.store.write { db in
                try db.execute("PRAGMA ignore_check_constraints = ON")
                defer { try? db.execute("PRAGMA ignore_check_constraints = OFF") }
                try db.run(
                    """
                    INSERT INTO accounts (id, phone, phone_verified, consecutive_failures, lock_count, created_at, updated_at)
                    VALUES ('eve', 'not a phone', 1, 0, 0, 0, 0),
                           ('mallory', '+1 415 555 2671', 1, 0, 0, 0, 0),
                           ('trent', NULL, 2, 0, 0, 0, 0),
                           ('peggy', NULL, 0, -1, 0, 0, 0)
                    """)
                try db.run(
                    """
                    INSERT INTO challenges (id, account_id, purpose, destination, code_hash, created_at, expires_at,
                        attempts_left, state)
                    VALUES ('c-purpose', 'eve', 'sudo', '+14155552671', zeroblob(32), 0, 0, 5, 'active'),
                           ('c-state', 'eve', 'login', '+14155552671', zeroblob(32), 0, 0, 5, 'pending')
                    """)
                try db.run(
                    """
                    INSERT INTO sms_sends (account_id, phone, country_code, purpose, challenge_id, at)
                    VALUES ('eve', '+0000', '0', 'login', 'c', 0)
                    """)
            }
            for id in ["eve", "mallory", "trent", "peggy"] {
                await #expect {
                    _ = try await store.transaction { tx in try tx.account(id) }
                } throws: { error in
                    (error as? StoreError)?.kind == .corrupt
                }
            }
            for id in ["c-purpose", "c-state"] {
                await #expect {
                    _ = try await store.transaction { tx in try tx.challenge(id: id) }
                } throws: { error in
                    (error as? StoreError)?.kind == .corrupt
                }
            }
            await #expect {
                _ = try await store.transaction { tx in
                    try tx.smsSends(accountID: "eve", since: time(-2_000_000_000_000))
                }
            } throws: { error in
                (error as? StoreError)?.kind == .corrupt
            }
        }
    }

    @Test func eventKindsAndOutcomesKeepTheirSpellingAndAnUnknownOneIsCorrupt() async throws {
        try await withStore { store in
            // Every kind and outcome is stored as its raw value and comes back as itself.
            try await store.transaction { tx in
                for (i, kind) in EventKind.allCases.enumerated() {
                    let outcome = EventOutcome.allCases[i % EventOutcome.allCases.count]
                    try tx.appendEvent(EventRecord(accountID: "alice", kind: kind, outcome: outcome, at: time(0)))
                }
            }
            let stored = try await store.store.write { db in
                try db.query("SELECT kind, outcome FROM events ORDER BY id").map {
                    ($0[0].text ?? "", $0[1].text ?? "")
                }
            }
            #expect(stored.map(\.0) == EventKind.allCases.map(\.rawValue))
            #expect(stored.contains { $0.0 == "sms_delivery_failed" })
            #expect(stored.contains { $0.1 == "rate_limited" })
            let read = try await store.transaction { tx in
                try tx.eventsToNotify(
                    after: EventPosition(id: 0), through: EventPosition(id: 1000),
                    kinds: [.phoneVerified, .accountReset],
                    window: 1000, limit: 10)
            }
            #expect(read.events.map(\.kind) == [.phoneVerified, .accountReset])

            // A spelling otpd does not know (a newer build, a manual edit) is corruption: reading
            // it throws, it is never skipped or turned into another kind.
            _ = try await store.store.write { db in
                try db.run(
                    """
                    INSERT INTO events (account_id, kind, outcome, detail, destination_masked, at)
                    VALUES ('eve', 'teleported', 'success', '', '', 0), ('trent', 'verify', 'maybe', '', '', 0)
                    """)
            }
            for id in ["eve", "trent"] {
                await #expect {
                    _ = try await store.transaction { tx in try tx.events(accountID: id, beforeID: nil, limit: 10) }
                } throws: { error in
                    (error as? StoreError)?.kind == .corrupt
                }
            }
            await #expect {
                _ = try await store.transaction { tx in
                    try tx.eventsToNotify(
                        after: EventPosition(id: 0), through: EventPosition(id: 1000), kinds: [.verify], window: 1000,
                        limit: 1000)
                }
            } throws: { error in
                (error as? StoreError)?.kind == .corrupt
            }
        }
    }

    @Test func dataSurvivesClosingAndReopening() async throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        var account = AccountRecord(id: "alice", now: time(0))
        account.phone = phone("+14155552671")
        account.phoneVerified = true
        account.totpLastStep = 12
        do {
            let store = try database.open()
            defer { store.store.close() }
            try await store.transaction { [account] tx in
                try tx.saveAccount(account)
                try tx.replaceBackupCodes(accountID: "alice", hashes: [hash(1), hash(2)], at: time(0))
                _ = try tx.consumeBackupCode(accountID: "alice", hash: hash(1), at: time(1))
                try tx.appendEvent(
                    EventRecord(accountID: "alice", kind: .backupCodeRedeemed, outcome: .success, at: time(1)))
                try tx.insertChallenge(challenge("c1"))
            }
        }
        let reopened = try database.open()
        defer { reopened.store.close() }
        #expect(reopened.store.schemaVersion == Migration.all.last!.version)
        let read = try await reopened.transaction { tx in
            (
                try tx.account("alice"), try tx.remainingBackupCodes(accountID: "alice"),
                try tx.consumeBackupCode(accountID: "alice", hash: hash(1), at: time(2)),
                try tx.events(accountID: "alice", beforeID: nil, limit: 10).map(\.kind), try tx.challenge(id: "c1")
            )
        }
        #expect(read.0 == account)
        #expect(read.1 == 1)
        #expect(read.2 == false, "a used backup code must stay used")
        #expect(read.3 == [.backupCodeRedeemed])
        #expect(read.4 == challenge("c1"))
    }

    @Test func aStoreWithoutTheTablesIsRefused() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let old = try SQLiteStore(
            path: database.path, migrations: Array(Migration.all.prefix(1)), logger: Logger(label: "test"))
        defer { old.close() }
        #expect(throws: StoreError.self) { _ = try SQLiteTwoFactorStore(store: old) }
    }
}
