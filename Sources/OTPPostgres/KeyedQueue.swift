import Synchronization

/// One holder per key at a time in this process, the others waiting in arrival order: the
/// transactions of one account, so that a burst at one account holds one pooled connection,
/// not all of them (the account's advisory lock then orders the daemons between them).
///
/// A waiter whose task is cancelled leaves the queue and gets `CancellationError`; nothing of
/// its transaction ran. Keys nobody holds take no memory.
final class KeyedQueue: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        /// The keys held, each with the waiters behind its holder.
        var held: [String: [Waiter]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Returns once the caller holds `key`; call `release(key)` when done.
    func acquire(_ key: String) async throws {
        try Task.checkCancellation()
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now: Bool = state.withLock { state in
                    guard state.held[key] != nil else {
                        state.held[key] = []
                        return true
                    }
                    state.held[key]!.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                if now {
                    continuation.resume()
                } else if Task.isCancelled {
                    // Cancelled before the handler could see the waiter: leave now.
                    removeWaiter(id, key)?.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            removeWaiter(id, key)?.resume(throwing: CancellationError())
        }
    }

    /// Hands `key` to the next waiter, or frees it.
    func release(_ key: String) {
        let next: CheckedContinuation<Void, any Error>? = state.withLock { state in
            guard var waiters = state.held[key], !waiters.isEmpty else {
                state.held[key] = nil
                return nil
            }
            let first = waiters.removeFirst()
            state.held[key] = waiters
            return first.continuation
        }
        next?.resume()
    }

    private func removeWaiter(_ id: UInt64, _ key: String) -> CheckedContinuation<Void, any Error>? {
        state.withLock { state in
            guard let index = state.held[key]?.firstIndex(where: { $0.id == id }) else { return nil }
            return state.held[key]!.remove(at: index).continuation
        }
    }
}
