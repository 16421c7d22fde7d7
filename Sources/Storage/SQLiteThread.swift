import Foundation

/// One thread that runs the jobs of the tasks that prefer it: the home of one SQLite connection.
///
/// A transaction lends its connection to its body under `withTaskExecutorPreference(thread)`, so the body's
/// nonisolated code, and with it every statement it runs, executes here without a thread hop: the hop in at
/// the start and the hop out at the end are the only two of the transaction (sqlite-nio's driver made three
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
        let thread = Thread { [self] in run() }
        thread.name = name
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

    /// Lets the thread exit once its queue is empty.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
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
