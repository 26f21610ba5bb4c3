internal import Foundation
internal import OTPCore

/// Challenges and proofs (`ChallengeStorage`).
extension SQLiteStoreTransaction {
    func insertChallenge(_ challenge: ChallengeRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                SQL.insertChallenge,
                [
                    try bind(challenge.id),
                    try bind(challenge.accountID),
                    .text(challenge.purpose.rawValue),
                    .text(challenge.destination.e164),
                    try bind(challenge.codeHash, column: "challenges.code_hash"),
                    try bind(challenge.createdAt),
                    try bind(challenge.expiresAt),
                    .integer(Int64(challenge.attemptsLeft)),
                    .text(challenge.state.rawValue),
                ])
        }
    }

    func challenge(id: String) throws(StoreError) -> ChallengeRecord? {
        try perform { db throws(StoreError) in
            guard let row = try db.rows(SQL.selectChallenge, [try bind(id)]).first else { return nil }
            return try Self.decodeChallenge(row)
        }
    }

    /// Throws (kind `.other`) when no challenge has this id, so a lost decrement never passes
    /// unnoticed.
    func updateChallenge(id: String, state: ChallengeState, attemptsLeft: Int) throws(StoreError) {
        try perform { db throws(StoreError) in
            let changed = try db.run(
                SQL.updateChallenge,
                [.text(state.rawValue), .integer(Int64(attemptsLeft)), try bind(id)])
            guard changed == 1 else {
                throw StoreError(kind: .other, message: "no challenge to update with the given id")
            }
        }
    }

    func voidActiveChallenges(accountID: String, purpose: CodePurpose?) throws(StoreError) {
        try perform { db throws(StoreError) in
            if let purpose {
                try db.run(
                    SQL.voidChallengesOfPurpose,
                    [try bind(accountID), .text(purpose.rawValue)])
            } else {
                try db.run(
                    SQL.voidChallenges,
                    [try bind(accountID)])
            }
        }
    }

    // MARK: Proofs

    func insertProof(_ proof: ProofRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                SQL.insertProof,
                [
                    try bind(proof.tokenHash, column: "proofs.token_hash"),
                    try bind(proof.accountID),
                    .text(proof.purpose.rawValue),
                    try bind(proof.expiresAt),
                ])
        }
    }

    func takeProof(tokenHash: [UInt8]) throws(StoreError) -> ProofRecord? {
        try perform { db throws(StoreError) in
            guard !tokenHash.isEmpty else { return nil }
            // Read, then delete, in this transaction (one writer: nothing runs in between).
            let rows = try db.rows(SQL.selectProof, [.blob(tokenHash)])
            guard let row = rows.first else { return nil }
            var reader = RowReader(row, table: "proofs")
            let proof = ProofRecord(
                tokenHash: try reader.blob("token_hash"),
                accountID: try reader.text("account_id"),
                purpose: try reader.enumeration("purpose", CodePurpose.self),
                expiresAt: try reader.date("expires_at"))
            guard try db.run(SQL.deleteProof, [.blob(tokenHash)]) == 1 else {
                throw StoreError(kind: .other, message: "a proof vanished while it was being taken")
            }
            return proof
        }
    }

    func deleteChallenges(expiredBefore: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try db.run(SQL.deleteExpiredChallenges, [try bind(expiredBefore), .integer(Int64(limit))])
        }
    }

    func deleteProofs(expiredBefore: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try db.run(SQL.deleteExpiredProofs, [try bind(expiredBefore), .integer(Int64(limit))])
        }
    }
}
