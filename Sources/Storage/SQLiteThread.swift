import Foundation

/// One thread that runs the jobs of the tasks that prefer it: the home of one SQLite connection.
///
/// A transaction lends its connection to its body through ``run(_:)``, so the body's nonisolated code, and
/// with it every statement it runs, executes here without a thread hop: the hop in at the start and the hop
/// out at the end are the only two of the transaction (sqlite-nio's driver made three
/// per statement: to its thread pool, to an event loop for every row, back to the task). A statement runs
/// synchronously, so a connection waiting out another process's lock (`busy_timeout`) sleeps on its own
/// thread and blocks no other connection or task.
///
/// After ``stop()`` the thread finishes what is queued and exits; a job that arrives later (a task still
/// holding a connection while the database shuts down) runs on the global executor instead, which is safe
/// because a connection is only ever used by the one task it is lent to.
final class SQLiteThread: TaskExecutor, @unchecked Sendable { // the queue and flag are guarded by `condition`
    private let condition = NSCondition()
    private var queue: [UnownedJob] = []
    private var stopping = false
    private var exited = false

    init(name: String) {
        let thread = Thread { [self] in serve(name: name) }
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        if exited {
            condition.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        queue.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Runs `operation` on this thread and comes back off it.
    ///
    /// Preferring a task executor does not move a task that is already running on the global executor: it
    /// takes effect at the task's next suspension (the standard library's `withTaskExecutorPreference` does
    /// not hop). So the hop in is attempted here with a yield, and so is the hop out, so that what the
    /// caller does next (encoding a response, say) is not done on this thread.
    ///
    /// The placement is not guaranteed: beside `stress-ng`, a test asking which thread ran the statements
    /// found a cooperative thread in 7 runs of 15 (and 11 of 15 when the task was resumed from here through
    /// a continuation). Correctness does not depend on it, as a connection is lent to one task at a time;
    /// what it costs then is a cooperative thread blocked in `fsync` or a lock wait. A guaranteed placement
    /// is left open (issue 19's note).
    ///
    /// Only the transaction's body runs under the preference. Code that holds a lock across an await must
    /// not: under a preference the await consults the task's status lock, which a cancellation holds while
    /// its handlers run (swift-async-algorithms' merge deadlocked so, see docs/decisions.md).
    func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withTaskExecutorPreference(self) {
            await Task.yield()
            do {
                return .success(try await operation())
            } catch {
                return .failure(error)
            }
        }
        await Task.yield()
        return try result.get()
    }

    /// Lets the thread exit once its queue is empty.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func serve(name: String) {
        // Set from the thread itself, so that the kernel's name (what profilers and `top -H` show) is set too.
        Thread.current.name = name
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {
                exited = true
                condition.unlock()
                return
            }
            swap(&batch, &queue)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
