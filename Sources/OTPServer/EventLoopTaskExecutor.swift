import NIOCore

/// Runs a call's task on its connection's event loop instead of the global concurrency pool.
///
/// A call's task would otherwise be started on a pool thread, and its answer handed back to
/// the event loop with `execute`: two thread changes per call on top of the writer's. With the
/// event loop as the task's preferred executor, the call is decoded, hashed and encoded on the
/// loop that read it, and when the store answers, the task resumes there, so the answer is
/// written without another hop. Code isolated to an actor still runs on that actor.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
