import Foundation
import Synchronization

/// A bounded set of connections to one SQLite file, handed to one task at a time.
///
/// The writer is a pool of one (so writes are serialized in this process; `BEGIN IMMEDIATE` and
/// `busy_timeout` serialize them against other processes); readers share a pool of a few connections,
/// which WAL lets read while the writer writes. Each connection has a ``SQLiteThread`` of its own (the pool
/// starts one per connection it may open) and is opened lazily on it with the pragmas every connection
/// needs. Taking and returning a connection is a lock, not an
/// actor hop: the only hops of a transaction are onto its connection's thread and back.
final class SQLiteConnectionPool: Sendable {
    private struct State {
        var idle: [SQLiteHandle] = []
        var waiters: [CheckedContinuation<SQLiteHandle, any Error>] = []
        var closed = false
        /// Threads without a connection (so the pool may open as many more): a connection opened takes one,
        /// one discarded gives it back.
        var freeThreads: [SQLiteThread]
    }

    private let path: String
    private let state: Mutex<State>
    /// The pool's threads, one per connection it may open.
    private let threads: [SQLiteThread]

    init(path: String, maximum: Int, name: String) {
        self.path = path
        threads = (1...maximum).map { SQLiteThread(name: "sqlite-\(name)-\($0)") }
        state = Mutex(State(freeThreads: threads.reversed()))
    }

    private enum Next {
        case lent(SQLiteHandle)
        case open(SQLiteThread)
        case wait
        case closed
    }

    /// Takes a connection, opening one if the pool is below its maximum, else waiting for a release.
    func acquire() async throws -> SQLiteHandle {
        let next: Next = state.withLock { state in
            if state.closed { return .closed }
            if let connection = state.idle.popLast() { return .lent(connection) }
            if let thread = state.freeThreads.popLast() { return .open(thread) }
            return .wait
        }
        switch next {
        case .lent(let connection): return connection
        case .closed: throw CancellationError()
        case .open(let thread):
            do {
                return try await open(on: thread)
            } catch {
                state.withLock { $0.freeThreads.append(thread) }
                throw error
            }
        case .wait:
            return try await withCheckedThrowingContinuation { continuation in
                let lent: SQLiteHandle? = state.withLock { state in
                    if state.closed {
                        continuation.resume(throwing: CancellationError())
                        return nil
                    }
                    // A release may have come between the first look and this one.
                    if let connection = state.idle.popLast() { return connection }
                    state.waiters.append(continuation)
                    return nil
                }
                if let lent { continuation.resume(returning: lent) }
            }
        }
    }

    /// Returns a healthy connection to the pool.
    func release(_ connection: SQLiteHandle) {
        enum Then { case closeIt, handTo(CheckedContinuation<SQLiteHandle, any Error>), keep }
        let then: Then = state.withLock { state in
            if state.closed { return .closeIt }
            if !state.waiters.isEmpty { return .handTo(state.waiters.removeFirst()) }
            state.idle.append(connection)
            return .keep
        }
        switch then {
        case .closeIt: connection.close()
        case .handTo(let waiter): waiter.resume(returning: connection)
        case .keep: break
        }
    }

    /// Drops a connection whose state is unknown (a failed rollback), so the next user gets a fresh one.
    func discard(_ connection: SQLiteHandle) {
        connection.close()
        state.withLock { $0.freeThreads.append(connection.thread) }
    }

    /// Closes every idle connection; connections in use close when released.
    func close() {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.idle.removeAll()
                state.waiters.removeAll()
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.resume(throwing: CancellationError()) }
        for connection in idle { connection.close() }
        // A thread stopped while its connection is still lent finishes its queue and exits; later jobs of
        // that task run on the global executor (see SQLiteThread).
        for thread in threads { thread.stop() }
    }

    /// Opens a connection on its thread (the pragmas may wait out another process's lock).
    private func open(on thread: SQLiteThread) async throws -> SQLiteHandle {
        try await thread.run { [path] in
            try SQLiteHandle.open(path: path, thread: thread)
        }
    }
}
