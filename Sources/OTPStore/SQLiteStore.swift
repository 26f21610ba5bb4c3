internal import Foundation
public import Logging
internal import OTPMetrics
internal import Synchronization

/// How durable a commit is. `full` (the default) means a used code stays used after a power
/// cut; `normal` in WAL mode may lose the last commits on power loss (never on a crash).
public enum SynchronousMode: String, Sendable, CaseIterable {
    case full
    case normal
}

/// The SQLite store: one writer connection on its own thread whose commits are shared by every
/// request that arrives while the previous commit is in progress (group commit).
///
/// Each `write` body runs inside its own savepoint of the batch's transaction, so a body that
/// throws is rolled back alone; the batch commits once, and no caller hears "done" before the
/// commit that holds its change is durable. If the commit fails, every caller of the batch gets
/// the error (fail closed: nothing is acknowledged that is not stored).
public final class SQLiteStore: Sendable {
    /// The database file.
    public let path: String
    /// `PRAGMA user_version` after migrations.
    public let schemaVersion: Int
    private let queue: WriterQueue
    private let checkpointer: Checkpointer

    /// Opens the database (creating it when missing), checks what can be checked in a bounded
    /// number of pages (the header, the schema, that every table and index the migrations make
    /// is there: `StartupCheck`), applies pending migrations, records that otpd runs (see
    /// `previousShutdown`) and starts the writer thread.
    ///
    /// Start-up does not read the data: its cost does not grow with the file. Damage inside the
    /// data pages is refused when a statement meets it, and found by the full check
    /// (`DatabaseCheck`, `BackgroundIntegrityCheck`).
    ///
    /// - Throws: `StoreError` with kind `.corrupt` when the file is not a database or its header
    ///   or schema is damaged, `.schemaTooNew` when it was written by a newer otpd, or the SQLite
    ///   error when it cannot be opened.
    /// - Parameter walLimitBytes: past this size of WAL the writer lets a checkpoint catch up
    ///   so that the WAL starts over (see `WriterQueue.catchUpCheckpointAndWait`); a WAL that
    ///   started over is also cut back to this size.
    public init(
        path: String, synchronous: SynchronousMode = .full, migrations: [Migration] = Migration.all,
        walLimitBytes: Int = SQLiteStore.defaultWALLimitBytes, logger: Logger
    ) throws(StoreError) {
        let started = ContinuousClock.now
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA journal_mode=WAL")
        try connection.execute("PRAGMA synchronous=\(synchronous.rawValue.uppercased())")
        try connection.execute("PRAGMA foreign_keys=ON")
        try connection.execute("PRAGMA secure_delete=ON")
        // 32 MiB of page cache for the one connection (SQLite's default is 2 MiB): the hot
        // pages of accounts, challenges and indexes stay in memory, the rest comes from the
        // OS's page cache. Not more: when a b-tree page split reorders pages, SQLite 3.40
        // parks a page at the lock-byte page number for a moment, and the COMMIT then walks
        // the whole cache (found with perf and gdb: with 128 MiB, a third of the writer's time
        // at 64 connections). Verify, right codes, 64 connections: 128 MiB 8,700-15,000/s with
        // p99 7.7-11.8 ms; 32 MiB 15,600-16,900/s with p99 6.7-8.8 ms; 16 MiB about the same.
        try connection.execute("PRAGMA cache_size=-32768")
        // A WAL that was restarted is cut back to this size (it never shrinks otherwise).
        try connection.execute("PRAGMA journal_size_limit=\(walLimitBytes)")
        try connection.execute("PRAGMA temp_store=MEMORY")
        try StartupCheck.checkReadable(connection)
        self.schemaVersion = try Migration.apply(migrations, to: connection, logger: logger)
        try StartupCheck.checkSchema(connection, migrations: migrations, path: path)
        self.previousShutdown = try StartupCheck.markRunning(connection)
        self.startupPagesRead = connection.pagesRead
        // Checkpoints run on their own connection and thread, not inside a commit of the
        // writer, where they would stall every request queued behind that commit.
        try connection.execute("PRAGMA wal_autocheckpoint=0")
        let queue = WriterQueue(connection: connection, logger: logger)
        self.checkpointer = try Checkpointer(path: path, walLimitBytes: walLimitBytes, logger: logger) { [weak queue] in
            queue?.catchUpCheckpointAndWait(timeout: 2)
        }
        self.path = path
        self.queue = queue
        logger.info(
            "database opened",
            metadata: [
                "database": "\(path)", "schema.version": "\(schemaVersion)",
                "previous_shutdown": "\(previousShutdown.rawValue)", "pages_read": "\(startupPagesRead)",
                "duration": "\(ContinuousClock.now - started)",
            ])
    }

    /// How the previous otpd on this file ended (read when the store opened).
    public let previousShutdown: PreviousShutdown

    /// Pages the writer's connection read from the file while the store opened: the header, the
    /// schema and one row of `daemon_meta`, a number that does not grow with the file (tests and
    /// the start-up log).
    public let startupPagesRead: Int

    /// Records that otpd is stopping cleanly, so that the next start sees
    /// `previousShutdown == .clean`. Call it when nothing else writes any more, before `close()`.
    public func recordCleanShutdown() async throws {
        try await write { db in
            try StartupCheck.markStopped(db)
        }
    }

    /// Runs `body` in a write transaction shared with other concurrent writers and returns its
    /// result once the transaction is durably committed.
    ///
    /// Cancellation: a caller cancelled before the writer starts its body (while the job waits
    /// in the queue, or before it is queued) gets `CancellationError` at once, and its body
    /// never runs: no savepoint, nothing stored. Once the writer has started the body,
    /// cancellation changes nothing: the body's effects commit with its batch like any other,
    /// and the caller gets the real outcome (the value after the commit, or the error) as if it
    /// had not been cancelled, so a change that is stored is never reported as not done.
    public func write<T: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) throws -> T
    ) async throws -> T {
        try Task.checkCancellation()
        let job = WriteJob(body: body)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                if job.wait(continuation) { queue.enqueue(job) }
            }
        } onCancel: {
            job.cancel()
        }
    }

    /// Gives the heap memory of the writer's page cache back (`sqlite3_db_release_memory`:
    /// every cached page that is not in use; pages of a transaction in progress stay), for a
    /// daemon that has gone quiet. Later reads take their pages from the OS's page cache again.
    /// Runs on the writer like a write that changes nothing. Returns the cache's bytes before
    /// and after.
    public func releaseCacheMemory() async throws -> (before: Int, after: Int) {
        try await write { db in
            let before = db.cacheBytes
            db.releaseCacheMemory()
            return (before, db.cacheBytes)
        }
    }

    /// Stops the writer after the jobs already queued, checkpoints the WAL into the database
    /// file and returns when the writer thread has finished; later writes fail with `.other`.
    public func close() {
        checkpointer.stop()
        queue.stop()
    }

    /// The default WAL limit: 256 MiB, a pause of a few milliseconds every few seconds at most.
    public static let defaultWALLimitBytes = 256 * 1024 * 1024

    /// How many batches and jobs the writer has committed (for benchmarks and tests).
    public var commitStatistics: (batches: Int, jobs: Int) { queue.statistics }

    /// Jobs waiting for the writer, cancelled ones not yet skipped included (for tests).
    var queuedWrites: Int { queue.queuedCount }
}

/// One job in the writer's queue; the writer claims it, runs it and then settles it.
///
/// Whoever takes the caller's continuation out of the job's state, under the job's lock,
/// resumes it, so it is resumed exactly once however cancellation, the writer and `stop` race.
protocol WriterJob: AnyObject, Sendable {
    /// Called by the writer before it starts the job: true makes the body the writer's to run;
    /// false means the caller gave up (cancelled) and has had its answer, so the job is skipped.
    func claim() -> Bool
    /// Runs the body (of a claimed job) on the writer's connection; false when it threw.
    func run(_ connection: SQLiteConnection) -> Bool
    /// Delivers the body's outcome to the caller (after the commit that holds it).
    func settle()
    /// Delivers `error` to the caller instead, unless it already has its answer.
    func abandon(_ error: any Error)
}

/// A `SQLiteStore.write` call: its body and the state of its caller.
final class WriteJob<T: Sendable>: WriterJob {
    private enum State {
        /// Created, the caller's continuation not known yet.
        case created
        /// Queued, the caller waiting.
        case waiting(CheckedContinuation<T, any Error>)
        /// Claimed by the writer, the body running or about to.
        case running(CheckedContinuation<T, any Error>)
        /// The body ran; its outcome waits for the commit.
        case ran(CheckedContinuation<T, any Error>, Result<T, any Error>)
        /// Cancelled before the writer claimed it; the body never runs.
        case cancelled
        /// The caller has its answer.
        case done
    }

    private let body: @Sendable (SQLiteConnection) throws -> T
    private let state = Mutex(State.created)

    init(body: @escaping @Sendable (SQLiteConnection) throws -> T) {
        self.body = body
    }

    /// Hands over the caller's continuation; false (after answering `CancellationError`) when
    /// the caller was cancelled before, in which case the job must not be queued.
    func wait(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let queued = state.withLock { state in
            guard case .created = state else { return false }
            state = .waiting(continuation)
            return true
        }
        if !queued { continuation.resume(throwing: CancellationError()) }
        return queued
    }

    /// The caller's task was cancelled: answers it now if the writer has not claimed the job.
    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            switch state {
            case .created:
                state = .cancelled
                return nil
            case .waiting(let continuation):
                state = .cancelled
                return continuation
            case .running, .ran, .cancelled, .done:
                return nil
            }
        }
        continuation?.resume(throwing: CancellationError())
    }

    func claim() -> Bool {
        state.withLock { state in
            guard case .waiting(let continuation) = state else { return false }
            state = .running(continuation)
            return true
        }
    }

    func run(_ connection: SQLiteConnection) -> Bool {
        let result = Result { try body(connection) }
        state.withLock { state in
            if case .running(let continuation) = state { state = .ran(continuation, result) }
        }
        if case .success = result { return true }
        return false
    }

    func settle() {
        let answer = state.withLock { state -> (CheckedContinuation<T, any Error>, Result<T, any Error>)? in
            guard case .ran(let continuation, let result) = state else { return nil }
            state = .done
            return (continuation, result)
        }
        if let (continuation, result) = answer { continuation.resume(with: result) }
    }

    func abandon(_ error: any Error) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            switch state {
            case .waiting(let continuation), .running(let continuation), .ran(let continuation, _):
                state = .done
                return continuation
            case .created, .cancelled, .done:
                return nil
            }
        }
        continuation?.resume(throwing: error)
    }
}

/// The writer thread and its queue.
final class WriterQueue: @unchecked Sendable {
    // @unchecked Sendable: `pending`, `catchUpRequested`, `catchUpsDone`, `stopped`, `finished`,
    // `batches` and `jobs` are only touched while holding `condition`; `connection` is only used by the writer
    // thread after init.

    private let condition = NSCondition()
    private var pending: [any WriterJob] = []
    private var catchUpRequested = false
    private var catchUpsDone = 0
    private var stopped = false
    private var finished = false
    private var batches = 0
    private var jobs = 0
    private let connection: SQLiteConnection
    private let logger: Logger

    init(connection: SQLiteConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
        let thread = Thread { [self] in self.loop() }
        thread.name = "otpd-sqlite-writer"
        thread.start()
    }

    var statistics: (batches: Int, jobs: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (batches, jobs)
    }

    var queuedCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending.count
    }

    func enqueue(_ job: any WriterJob) {
        condition.lock()
        if stopped {
            condition.unlock()
            job.abandon(StoreError(kind: .other, message: "the store is closed"))
            return
        }
        pending.append(job)
        condition.broadcast()  // the writer, or the checkpointer waiting for a catch-up
        condition.unlock()
    }

    /// Has the writer run a checkpoint itself before its next batch.
    ///
    /// Background PASSIVE checkpoints copy the WAL into the database while the writer goes on,
    /// but SQLite starts the WAL over only when a write transaction begins with every frame
    /// already copied, which never happens while writes keep coming: under sustained load the
    /// WAL grew without bound (1.7 GB after preparing 100,000 challenges), and every page read
    /// that missed the cache searched all of its index. A checkpoint between two batches, when
    /// nothing else writes, copies the few frames the background pass left and lets the next
    /// transaction restart the WAL. It costs one pause of 2-10 ms per 256 MiB of WAL (every
    /// few seconds under full load).
    ///
    /// Called by the background checkpointer, which waits (at most `timeout`) until it is done:
    /// a background pass running at the same time would make this one give up (SQLITE_BUSY).
    func catchUpCheckpointAndWait(timeout: TimeInterval) {
        condition.lock()
        let target = catchUpsDone + 1
        catchUpRequested = true
        condition.broadcast()
        let deadline = Date().addingTimeInterval(timeout)
        while catchUpsDone < target && !stopped {
            if !condition.wait(until: deadline) { break }
        }
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopped && !catchUpRequested { condition.wait() }
            if catchUpRequested {
                catchUpRequested = false
                condition.unlock()
                catchUp()
                condition.lock()
                catchUpsDone += 1
                condition.broadcast()
                condition.unlock()
                continue
            }
            if pending.isEmpty && stopped {
                condition.unlock()
                try? connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            condition.unlock()
            runBatch(batch)
        }
    }

    private func catchUp() {
        let started = ContinuousClock.now
        do {
            let result = try connection.query("PRAGMA wal_checkpoint(PASSIVE)")
            logger.debug(
                "catch-up checkpoint",
                metadata: [
                    "frames": "\(result.first?.dropFirst().first?.integer ?? -1)",
                    "duration": "\(ContinuousClock.now - started)",
                ])
        } catch {
            logger.warning("catch-up checkpoint failed", metadata: ["error": "\(error)"])
        }
    }

    /// Runs the jobs of `batch` that are still wanted, each in its own savepoint, in one
    /// transaction. A job cancelled before its turn is skipped (no savepoint, its body never
    /// runs); a batch of only such jobs begins no transaction at all.
    private func runBatch(_ batch: [any WriterJob]) {
        /// The claimed jobs, with the error that replaces the body's outcome if its savepoint failed.
        var claimed: [(job: any WriterJob, error: (any Error)?)] = []
        claimed.reserveCapacity(batch.count)
        for (index, job) in batch.enumerated() {
            guard job.claim() else { continue }
            if claimed.isEmpty {
                do {
                    try connection.execute("BEGIN IMMEDIATE")
                } catch {
                    logger.error("cannot begin a write transaction", metadata: ["error": "\(error)"])
                    for job in batch[index...] { job.abandon(error) }
                    return
                }
            }
            do {
                try connection.run("SAVEPOINT job")
            } catch {
                claimed.append((job, error))
                continue
            }
            let succeeded = job.run(connection)
            guard connection.isInTransaction else {
                // SQLite rolled the whole transaction back (disk full, I/O error): nothing of
                // this batch is stored, so nobody in it may hear "done".
                let error = StoreError(kind: .other, message: "the transaction was rolled back by SQLite")
                logger.error(
                    "write transaction lost; refusing every call of the batch", metadata: ["error": "\(error)"])
                for job in batch { job.abandon(error) }
                return
            }
            do {
                if !succeeded {
                    try connection.run("ROLLBACK TO job")
                }
                try connection.run("RELEASE job")
                claimed.append((job, nil))
            } catch {
                claimed.append((job, error))
            }
        }
        guard !claimed.isEmpty else { return }
        let committing = ContinuousClock.now
        do {
            try connection.execute("COMMIT")
            OTPMetrics.writerCommit(transactions: claimed.count, duration: ContinuousClock.now - committing)
        } catch {
            logger.error("commit failed; refusing every call of the batch", metadata: ["error": "\(error)"])
            try? connection.execute("ROLLBACK")
            for job in batch { job.abandon(error) }
            return
        }
        condition.lock()
        batches += 1
        jobs += claimed.count
        condition.unlock()
        for (job, error) in claimed {
            if let error { job.abandon(error) } else { job.settle() }
        }
    }
}

/// Copies committed WAL frames into the database file in the background (PASSIVE checkpoints,
/// which never block the writer), every 100 ms while there is something to copy.
final class Checkpointer: @unchecked Sendable {
    // @unchecked Sendable: `stopped` and `finished` are only touched while holding
    // `condition`; `connection` is only used by the checkpointer thread after init.
    private let condition = NSCondition()
    private var stopped = false
    private var finished = false
    private let connection: SQLiteConnection
    private let logger: Logger
    private let walTooLong: @Sendable () -> Void
    private let pageSize: Int
    private let walLimitBytes: Int

    /// - Parameter walTooLong: called after a pass that found more than
    ///   `walLimitBytes` in the WAL while writes outran the pass.
    init(
        path: String, walLimitBytes: Int, logger: Logger, walTooLong: @escaping @Sendable () -> Void
    ) throws(StoreError) {
        connection = try SQLiteConnection(path: path, create: false)
        pageSize = Int(try connection.query("PRAGMA page_size").first?.first?.integer ?? 4096)
        self.logger = logger
        self.walTooLong = walTooLong
        self.walLimitBytes = walLimitBytes
        let thread = Thread { [self] in self.loop() }
        thread.name = "otpd-sqlite-checkpoint"
        thread.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        var failures = 0
        var framesSeen: Int64 = 0
        while true {
            condition.lock()
            if !stopped { _ = condition.wait(until: Date().addingTimeInterval(0.1)) }
            let stop = stopped
            condition.unlock()
            if stop { break }
            do {
                // One row: busy, frames in the WAL, frames copied.
                let row = try connection.query("PRAGMA wal_checkpoint(PASSIVE)").first
                failures = 0
                let frames = row?.dropFirst().first?.integer ?? 0
                // Only while writes keep coming (the WAL grew since the last pass): when they
                // stop, the next write transaction finds everything copied and restarts the WAL
                // by itself.
                if frames != framesSeen && frames * Int64(pageSize) > Int64(walLimitBytes) { walTooLong() }
                framesSeen = frames
            } catch {
                failures += 1
                if failures == 1 || failures % 100 == 0 {
                    logger.warning("background checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
