import Foundation
import OTPProtocol
import OTPTestSupport
import Synchronization
import Testing

@testable import OTPServer

/// A router whose `ListEvents` answers are `answerBytes` long (taking the reservation of a
/// listing, 60 KiB), held until `release()` when `holding` is set; every other call gets a
/// 10-byte answer at once.
final class LargeAnswerRouter: CallRouter {
    let answerBytes: Int
    private let state: Mutex<(started: Int, released: Bool, held: [CheckedContinuation<Void, Never>])>

    init(answerBytes: Int, holding: Bool) {
        self.answerBytes = answerBytes
        state = Mutex((started: 0, released: !holding, held: []))
    }

    var started: Int { state.withLock { $0.started } }

    func release() {
        let held = state.withLock { state in
            state.released = true
            defer { state.held = [] }
            return state.held
        }
        for waiter in held { waiter.resume() }
    }

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? { nil }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        guard context.method == .listEvents else { return .success([UInt8](repeating: 0x42, count: 10)) }
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state in
                state.started += 1
                if state.released { return true }
                state.held.append(waiter)
                return false
            }
            if resumeNow { waiter.resume() }
        }
        return .success([UInt8](repeating: 0x41, count: answerBytes))
    }
}

@Suite("Answer budgets") struct AnswerBudgetTests {
    static let listEvents = TwoFactorMethod.listEvents.rawValue
    static let reservation = TwoFactorMethod.listEvents.answerReservation

    /// Polls `condition` for up to `seconds`: a bound on liveness, not a timing threshold.
    /// The server's tasks run on the shared concurrency pool, which other tests' blocking
    /// reads can hold for seconds under CI's load, so the bounds are generous.
    static func eventually(seconds: Int = 60, _ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<(seconds * 100) {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// `readAnswers` on a thread of its own: a blocking read on one of the few threads of the
    /// concurrency pool would keep the server's tasks, which answer, from running.
    static func readAnswersOnThread(_ raw: RawConnection, count: Int, answerBytes: Int) async -> Set<UInt64> {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: readAnswers(raw, count: count, answerBytes: answerBytes)) }
                .start()
        }
    }

    /// Reads `count` answers and checks that each is whole and answers one of the calls sent.
    static func readAnswers(_ raw: RawConnection, count: Int, answerBytes: Int) -> Set<UInt64> {
        var answered: Set<UInt64> = []
        for _ in 0..<count {
            guard let response = raw.readResponse() else {
                Issue.record("an answer is missing after \(answered.count)")
                break
            }
            #expect(response.error == nil)
            #expect(response.payload.count == answerBytes)
            answered.insert(response.callId)
        }
        return answered
    }

    /// A connection starts only the calls whose answers fit in its budget (240 KiB set aside
    /// for each listing, 1 MiB per connection: four), reads nothing more while they run, and
    /// gets every call done, whole, once the first ones finish.
    @Test func aConnectionStartsOnlyTheCallsWhoseAnswersFitItsBudget() async throws {
        let router = LargeAnswerRouter(answerBytes: 50 * 1024, holding: true)
        let server = Mutex<SocketServer?>(nil)
        try await withRunningServer(
            router: router, configure: { $0.maximumAnswerBytesPerConnection = 1024 * 1024 },
            serverCreated: { created in server.withLock { $0 = created } }, beforeShutdown: router.release
        ) { path, _ in
            let server = try #require(server.withLock { $0 })
            let raw = try RawConnection(path: path, receiveTimeout: 60)
            let count = 20
            raw.send((1...count).flatMap { requestFrame(callID: UInt64($0), method: Self.listEvents) })

            #expect(try await Self.eventually { router.started == 4 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(router.started == 4, "a call started without room for its answer")
            #expect(server.answerBytesHeld == 4 * Self.reservation)

            router.release()
            let answered = await Self.readAnswersOnThread(raw, count: count, answerBytes: 50 * 1024)
            #expect(answered == Set(1...UInt64(count)))
            #expect(try await Self.eventually { server.answerBytesHeld == 0 })
        }
    }

    /// Clients on many connections that send large-answer calls and never read cannot make the
    /// daemon hold more than its ceiling in answers, and every answer arrives whole once they
    /// read; afterwards the daemon holds nothing.
    @Test func allConnectionsTogetherStayUnderTheDaemonsCeiling() async throws {
        let router = LargeAnswerRouter(answerBytes: 50 * 1024, holding: false)
        let server = Mutex<SocketServer?>(nil)
        let ceiling = 2 * 1024 * 1024
        try await withRunningServer(
            router: router, configure: { $0.maximumAnswerBytes = ceiling },
            serverCreated: { created in server.withLock { $0 = created } }
        ) { path, _ in
            let server = try #require(server.withLock { $0 })
            let connections = try (0..<16).map { _ in try RawConnection(path: path, receiveTimeout: 60) }
            let callsEach = 40
            let frames = (1...callsEach).flatMap { requestFrame(callID: UInt64($0), method: Self.listEvents) }
            for raw in connections { raw.send(frames) }

            var most = 0
            for _ in 0..<200 {
                most = max(most, server.answerBytesHeld)
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(most <= ceiling)
            // Not vacuous: the clients did fill the ceiling.
            #expect(most > ceiling - 2 * Self.reservation)
            #expect(router.started < 16 * callsEach)

            // A client that sends one short call at a time and reads its answer is served while
            // the others hold the whole budget.
            let polite = try RawConnection(path: path, receiveTimeout: 60)
            let served = await withCheckedContinuation { continuation in
                Thread {
                    var served = 0
                    for id in 1...UInt64(20) {
                        polite.send(requestFrame(callID: id, method: TwoFactorMethod.verify.rawValue))
                        guard let answer = polite.readResponse(), answer.callId == id, answer.error == nil,
                            answer.payload.count == 10
                        else { break }
                        served += 1
                    }
                    continuation.resume(returning: served)
                }.start()
            }
            #expect(served == 20)

            // Blocking reads on threads of their own, not on the test's few pool threads.
            let answered = Mutex<[Set<UInt64>]>([])
            let readers = connections.map { raw in
                Thread {
                    let ids = Self.readAnswers(raw, count: callsEach, answerBytes: 50 * 1024)
                    answered.withLock { $0.append(ids) }
                }
            }
            for reader in readers { reader.start() }
            #expect(try await Self.eventually(seconds: 120) { answered.withLock { $0.count } == connections.count })
            for ids in answered.withLock({ $0 }) { #expect(ids == Set(1...UInt64(callsEach))) }
            #expect(try await Self.eventually { server.answerBytesHeld == 0 })
        }
    }

    /// A listing page whose records would not fit in the listing bound is cut short, and its
    /// `next_before_id` continues after the last record kept.
    @Test func aListingPageIsCutToItsBound() throws {
        let big = String(repeating: "d", count: 1000)
        let events = (0..<200).map { Event(id: UInt64(1000 - $0), kind: "verify", detail: big) }
        let (kept, next) = TwoFactorRouter.boundedPage(events, next: 42, id: { $0.id })
        #expect(kept.count < events.count)
        #expect(kept.count > 50)
        #expect(next == kept.last?.id)
        let answer = ListEventsResponse(events: kept, nextBeforeId: next)
        #expect(answer.serialized().count <= TwoFactorMethod.maximumListingAnswerBytes - 64)

        let (all, same) = TwoFactorRouter.boundedPage(Array(events.prefix(10)), next: 42, id: { $0.id })
        #expect(all.count == 10)
        #expect(same == 42)
    }
}
