import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO

/// A bounded set of connections to one SQLite file, handed to one task at a time.
///
/// The writer is a pool of one (so writes are serialized in this process; `BEGIN IMMEDIATE` and
/// `busy_timeout` serialize them against other processes); readers share a pool of a few connections,
/// which WAL lets read while the writer writes. Connections open lazily with the pragmas every
/// connection needs.
actor SQLiteConnectionPool {
    private let path: String
    private let maximum: Int
    private let logger: Logger
    private let threadPool: NIOThreadPool
    private var idle: [SQLiteConnection] = []
    private var openCount = 0
    private var waiters: [CheckedContinuation<SQLiteConnection, any Error>] = []
    private var closed = false

    /// `threadPool` runs this pool's SQLite calls; it needs a thread per connection, because a connection
    /// waiting out another process's write lock (busy_timeout) sleeps on its thread.
    init(path: String, maximum: Int, logger: Logger, threadPool: NIOThreadPool) {
        self.path = path
        self.maximum = maximum
        self.logger = logger
        self.threadPool = threadPool
    }

    /// Takes a connection, opening one if the pool is below its maximum, else waiting for a release.
    func acquire() async throws -> SQLiteConnection {
        guard !closed else { throw CancellationError() }
        if let connection = idle.popLast() { return connection }
        if openCount < maximum {
            openCount += 1
            do {
                return try await open()
            } catch {
                openCount -= 1
                throw error
            }
        }
        return try await withCheckedThrowingContinuation { waiters.append($0) }
    }

    /// Returns a healthy connection to the pool.
    func release(_ connection: SQLiteConnection) async {
        if closed {
            openCount -= 1
            await Self.close(connection)
            return
        }
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }

    /// Drops a connection whose state is unknown (a failed rollback), so the next user gets a fresh one.
    func discard(_ connection: SQLiteConnection) async {
        openCount -= 1
        await Self.close(connection)
    }

    /// Closes every idle connection; connections in use close when released.
    func close() async {
        closed = true
        for waiter in waiters { waiter.resume(throwing: CancellationError()) }
        waiters.removeAll()
        for connection in idle {
            await Self.close(connection)
            openCount -= 1
        }
        idle.removeAll()
    }

    /// Closes a connection even when the calling task is cancelled (shutdown runs after cancellation):
    /// the future-based close is not cancellation-aware, the async one skips the work when cancelled and
    /// leaves a handle that SQLiteNIO asserts on.
    private static func close(_ connection: SQLiteConnection) async {
        let closing: EventLoopFuture<Void> = connection.close()
        try? await closing.get()
    }

    private func open() async throws -> SQLiteConnection {
        let connection = try await SQLiteConnection.open(
            storage: .file(path: path),
            threadPool: threadPool,
            logger: logger,
            on: MultiThreadedEventLoopGroup.singleton.any()
        )
        do {
            // WAL lets readers run beside the writer; FULL makes a commit durable once acknowledged;
            // busy_timeout makes other processes (the CLI beside a running server) wait, not fail.
            // busy_timeout first: even switching to WAL takes a lock another process may hold.
            _ = try await connection.query("PRAGMA busy_timeout = 10000", [])
            _ = try await connection.query("PRAGMA journal_mode = WAL", [])
            _ = try await connection.query("PRAGMA synchronous = FULL", [])
            _ = try await connection.query("PRAGMA foreign_keys = ON", [])
        } catch {
            await Self.close(connection)
            throw error
        }
        return connection
    }
}
