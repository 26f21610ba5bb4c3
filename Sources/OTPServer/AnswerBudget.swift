internal import COTPSys
internal import Synchronization

/// The daemon-wide ceiling on answer bytes, shared by every connection: the answers set aside
/// for calls in flight (`TwoFactorMethod.answerReservation`) plus the answers handed to the
/// socket and not yet written. A connection that would take the daemon past it starts no more
/// calls and stops being read until there is room again, so many connections that send
/// calls and never read cannot exhaust the machine together either.
///
/// Fairness: connections that find no room wait in a queue, and room that is given back goes
/// to them in the order they came, before anyone else may take it; so a connection whose
/// client reads gets its turn even while other connections keep taking and giving back room.
///
/// Memory given back: the C heap keeps memory it freed (glibc does not return freed chunks in
/// the middle of its heaps, and each thread's arena keeps its own), so after a flood of large
/// answers the daemon would stay at its peak. When the budget has been used past
/// `trimThreshold` and nothing is held any more, the heap's free memory is given back to the
/// system (`malloc_trim`), once per such episode, off the event loop.
final class AnswerBudget: Sendable {
    /// A connection waiting for room: `granted` is called (on any thread) once `bytes` have
    /// been charged on its behalf.
    struct Waiter: Sendable {
        let id: ObjectIdentifier
        let bytes: Int
        let granted: @Sendable (Int) -> Void
    }

    private struct State {
        var used = 0
        /// The most used since the heap was last trimmed.
        var peak = 0
        var waiters: [Waiter] = []
    }

    /// The ceiling, in bytes.
    let limit: Int
    private let state = Mutex(State())
    /// A peak past this is worth giving memory back for when it ends.
    static let trimThreshold = 4 * 1024 * 1024

    init(limit: Int) {
        self.limit = limit
    }

    /// Bytes charged now (for `SocketServer.answerBytesHeld` and tests).
    var charged: Int { state.withLock { $0.used } }

    /// Connections waiting for room now.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// Takes `bytes` when nobody waits and they fit under the ceiling; false (nothing taken,
    /// nothing queued) otherwise.
    func tryCharge(_ bytes: Int) -> Bool {
        state.withLock { state in
            guard state.waiters.isEmpty && state.used + bytes <= limit else { return false }
            state.used += bytes
            state.peak = max(state.peak, state.used)
            return true
        }
    }

    /// Takes `bytes` when nobody waits and they fit under the ceiling. Otherwise queues
    /// `waiter` (once per id) and returns false: its `granted` is called when its turn comes.
    func charge(_ bytes: Int, orQueue waiter: Waiter) -> Bool {
        state.withLock { state in
            if state.waiters.isEmpty && state.used + bytes <= limit {
                state.used += bytes
                state.peak = max(state.peak, state.used)
                return true
            }
            if !state.waiters.contains(where: { $0.id == waiter.id }) { state.waiters.append(waiter) }
            return false
        }
    }

    /// Takes `bytes` whatever the ceiling: answers already produced must be written.
    func charge(_ bytes: Int) {
        state.withLock { state in
            state.used += bytes
            state.peak = max(state.peak, state.used)
        }
    }

    /// Gives back what a `charge` took (or a grant that was not used), and hands the room to
    /// the waiters in order.
    func release(_ bytes: Int) {
        let (granted, trim) = state.withLock { state in
            state.used -= bytes
            var granted: [Waiter] = []
            while let head = state.waiters.first, state.used + head.bytes <= limit {
                state.waiters.removeFirst()
                state.used += head.bytes
                granted.append(head)
            }
            state.peak = max(state.peak, state.used)
            let trim = state.used == 0 && state.peak >= Self.trimThreshold
            if trim { state.peak = 0 }
            return (granted, trim)
        }
        for waiter in granted { waiter.granted(waiter.bytes) }
        if trim { Task.detached(priority: .background) { _ = cotp_release_free_memory() } }
    }

    /// Takes the connection `id` out of the queue (it closed). A grant already made still
    /// reaches it, and it gives the grant back.
    func stopWaiting(_ id: ObjectIdentifier) {
        state.withLock { state in state.waiters.removeAll { $0.id == id } }
    }
}
