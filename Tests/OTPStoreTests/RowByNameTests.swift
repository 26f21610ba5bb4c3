import OTPCore
import Testing

@testable import OTPStore

/// The store reads a row's values by column name, never by position.
@Suite("rows by column name")
struct RowByNameTests {
    @Test func aRowDecodesTheSameWhateverTheOrderOfItsColumns() async throws {
        let (inOrder, reordered, missing) = try await StatementPlanTests.onFreshStore {
            db -> ([EventRecord], [EventRecord], StoreError.Kind?) in
            try db.run(
                SQL.insertEvent,
                [.text("alice"), .text("verify"), .text("success"), .text("login via sms"), .text(""), .integer(1000)])
            let inOrder = try db.rows(SQL.selectEvents).map(SQLiteStoreTransaction.decodeEvent)
            // Another order, and a column the decoder does not know: nothing shifts.
            let reordered = try db.rows(
                "SELECT 'x' AS extra, at, detail, id, outcome, kind, destination_masked, account_id FROM events"
            ).map(SQLiteStoreTransaction.decodeEvent)
            do {
                _ = try db.rows("SELECT id, account_id, kind FROM events").map(SQLiteStoreTransaction.decodeEvent)
                return (inOrder, reordered, nil)
            } catch {
                return (inOrder, reordered, (error as? StoreError)?.kind)
            }
        }
        #expect(inOrder.count == 1)
        #expect(inOrder.first?.kind == .verify && inOrder.first?.detail == "login via sms")
        #expect(reordered == inOrder)
        #expect(missing == .corrupt)
    }

    @Test func aRowAnswersByName() async throws {
        let row = try await StatementPlanTests.onFreshStore { db in
            try db.rows("SELECT 1 AS one, 'two' AS two").first
        }
        #expect(row?["two"] == .text("two"))
        #expect(row?["one"] == .integer(1))
        #expect(row?["three"] == nil)
    }
}
