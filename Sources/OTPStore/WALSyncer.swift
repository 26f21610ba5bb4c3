internal import Foundation
internal import Logging

#if canImport(Glibc)
    import Glibc
#else
    import Darwin
#endif

/// The commit pipeline's second stage: makes the writer's commits durable on its own thread, so
/// that the writer runs the next batch while the previous one's `fdatasync` is in progress.
///
/// With `synchronous = "full"`, the writer's connection runs `synchronous=NORMAL` in WAL mode:
/// its COMMIT writes the batch's frames to the WAL without syncing them (SQLite still syncs the
/// WAL before every checkpoint, the database after it, and a restarted WAL's header). The writer
/// then hands the batch's answers to this syncer, which `fdatasync`s its own descriptor of the
/// same `-wal` file and delivers them afterwards.
///
/// The promise, the same as SQLite's `synchronous=FULL` for everything a caller hears:
/// - An answer is delivered only after an `fdatasync` of the WAL that *began after* the COMMIT
///   of the batch that holds it returned, so every frame of that commit, and of every commit
///   before it, is on disk. This holds for answers that only read, too: whatever a job saw was
///   committed before its own batch was.
/// - A later batch may read an earlier one's changes before they are durable (SQLite makes a
///   commit visible at once); its own answers wait for a later sync, which covers both.
/// - If an `fdatasync` fails, nothing it covered may be reported done, and, as with
///   PostgreSQL's PANIC, the process must not go on: the kernel may have dropped the dirty pages
///   while later batches already read them, and a later `fdatasync` could succeed without them.
///   `onFailure` is called (in otpd: log and stop the process, so that a restart recovers from
///   what is on disk); every answer waiting then and later gets the error instead.
final class WALSyncer: @unchecked Sendable {
    // @unchecked Sendable: `waiting`, `failure`, `stopped`, `finished` and `syncs` are only
    // touched while holding `condition`; `descriptor` is written in init only.

    /// What the writer hands over after a COMMIT: delivers the batch's answers, or refuses them
    /// all with the given error.
    typealias Delivery = @Sendable (_ failure: (any Error)?) -> Void

    private let condition = NSCondition()
    private var waiting: [Delivery] = []
    private var failure: (any Error)?
    private var stopped = false
    private var finished = false
    private var syncs = 0
    private let descriptor: Int32
    private let walPath: String
    private let beforeSync: (@Sendable () throws -> Void)?
    private let onFailure: @Sendable (any Error) -> Void
    private let logger: Logger

    /// Opens `walPath` (which must exist: SQLite makes it when a connection first reads in WAL
    /// mode) and syncs its directory once, so the file's entry is durable too; then starts the
    /// syncer thread.
    ///
    /// - Parameters:
    ///   - beforeSync: tests only: runs before each `fdatasync`, may block it or make it fail.
    ///   - onFailure: called once, on the syncer thread, with the first failed sync.
    init(
        walPath: String, logger: Logger, beforeSync: (@Sendable () throws -> Void)? = nil,
        onFailure: @escaping @Sendable (any Error) -> Void
    ) throws(StoreError) {
        let descriptor = open(walPath, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StoreError(kind: .other, message: "cannot open the WAL \(walPath) to sync it: \(Self.systemError())")
        }
        let directory = (walPath as NSString).deletingLastPathComponent
        let directoryDescriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if directoryDescriptor >= 0 { close(directoryDescriptor) } }
        guard directoryDescriptor >= 0, fsync(directoryDescriptor) == 0 else {
            let message = "cannot sync the directory of \(walPath): \(Self.systemError())"
            close(descriptor)
            throw StoreError(kind: .other, message: message)
        }
        self.descriptor = descriptor
        self.walPath = walPath
        self.beforeSync = beforeSync
        self.onFailure = onFailure
        self.logger = logger
        let thread = Thread { [self] in self.loop() }
        thread.name = "otpd-sqlite-sync"
        thread.start()
    }

    deinit {
        close(descriptor)
    }

    /// Delivers `delivery` after the next `fdatasync` that begins from now on. Call it right
    /// after the COMMIT of the batch the delivery answers.
    func afterNextSync(_ delivery: @escaping Delivery) {
        condition.lock()
        if let failure {
            condition.unlock()
            delivery(failure)
            return
        }
        waiting.append(delivery)
        condition.signal()
        condition.unlock()
    }

    /// How many `fdatasync`s succeeded (tests).
    var completedSyncs: Int {
        condition.lock()
        defer { condition.unlock() }
        return syncs
    }

    /// The inode of the file the syncer syncs (tests: it must be the WAL SQLite writes).
    var syncedInode: UInt64 {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return 0 }
        return UInt64(status.st_ino)
    }

    /// Syncs once more for whatever is waiting, delivers it and ends the thread. Call it after
    /// the writer's last COMMIT.
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
            while waiting.isEmpty && !stopped { condition.wait() }
            if waiting.isEmpty {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            // Everything taken here was committed before the sync below begins.
            let deliveries = waiting
            waiting.removeAll(keepingCapacity: true)
            let earlierFailure = failure
            condition.unlock()

            var failed = earlierFailure
            if failed == nil {
                do {
                    try sync()
                    condition.lock()
                    syncs += 1
                    condition.unlock()
                } catch {
                    failed = error
                    condition.lock()
                    failure = error
                    condition.unlock()
                    logger.critical(
                        "cannot make commits durable: fdatasync of the WAL failed; stopping",
                        metadata: ["wal": "\(walPath)", "error": "\(error)"])
                    onFailure(error)
                }
            }
            for delivery in deliveries { delivery(failed) }
        }
    }

    private func sync() throws {
        try beforeSync?()
        // The file SQLite writes must still be the one this descriptor holds: a WAL deleted and
        // made again (which SQLite does only when no connection has the database open, never
        // while the writer runs) would leave the new file unsynced.
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_nlink > 0 else {
            throw StoreError(kind: .other, message: "the WAL \(walPath) this syncer opened is gone")
        }
        while fdatasync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw StoreError(kind: .other, message: "fdatasync of \(walPath): \(Self.systemError())")
        }
    }

    private static func systemError() -> String { String(cString: strerror(errno)) }
}
