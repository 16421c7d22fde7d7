import Foundation
public import Logging
import NIOCore
import NIOPosix
import NIOSSL
public import PortalCore
import PostgresKit
import PostgresNIO
public import SQLKit
import SQLiteKit
import SQLiteNIO
public import ServiceLifecycle

/// The product's database: read and write transactions over SQLite (embedded default) or PostgreSQL.
///
/// sql-kit has no transaction API and a connection must never be shared by two tasks, so every use goes
/// through ``read(_:)`` or ``write(_:)``, which lend one connection, inside one transaction, to one closure.
/// The closure must not let the `SQLDatabase` escape. Query logging is off: sql-kit logs bind values,
/// which may be secrets.
///
/// `Database` is a `Service`: run it (in the application's service group, or with ``withDatabase(url:logger:_:)``)
/// for as long as it is used. For PostgreSQL that runs the connection pool; for SQLite it closes the
/// connections on shutdown.
public final class Database: Service, Sendable {
    /// The SQL dialect, for the few statements that differ (DDL types, locking).
    public enum Dialect: String, Sendable {
        case sqlite
        case postgres
    }

    private enum Backend: Sendable {
        case sqlite(writer: SQLiteConnectionPool, readers: SQLiteConnectionPool, threads: NIOThreadPool)
        case postgres(PostgresClient)
    }

    public let dialect: Dialect
    public let location: DatabaseLocation
    private let backend: Backend
    private let logger: Logger

    /// Prepares a database at `url` (see ``DatabaseLocation``); no connection is made until first use.
    public convenience init(url: String, logger: Logger) throws(PortalError) {
        try self.init(location: DatabaseLocation(url: url), logger: logger)
    }

    /// Prepares a database at `location`; no connection is made until first use.
    public init(location: DatabaseLocation, logger: Logger) throws(PortalError) {
        self.location = location
        self.logger = logger
        switch location {
        case .sqlite(let path):
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            dialect = .sqlite
            // One thread per connection, of this database only: a connection waiting for another process's
            // write lock sleeps on its thread, and with a shared pool of two threads (NIOThreadPool.singleton
            // on two cores) two waiters would starve the lock holder of a thread to commit on.
            let threads = NIOThreadPool(numberOfThreads: 5)
            threads.start()
            backend = .sqlite(
                writer: SQLiteConnectionPool(path: path, maximum: 1, logger: logger, threadPool: threads),
                readers: SQLiteConnectionPool(path: path, maximum: 4, logger: logger, threadPool: threads),
                threads: threads
            )
        case .postgres(let pg):
            let tls: PostgresClient.Configuration.TLS
            switch pg.sslMode {
            case "disable": tls = .disable
            case "require":
                tls = .require(.makeClientConfiguration())
            default: tls = .prefer(.makeClientConfiguration())
            }
            var configuration = PostgresClient.Configuration(
                host: pg.host, port: pg.port, username: pg.username, password: pg.password,
                database: pg.database, tls: tls
            )
            configuration.options.maximumConnections = 16
            dialect = .postgres
            backend = .postgres(PostgresClient(configuration: configuration, backgroundLogger: logger))
        }
    }

    /// Runs the connection pool until cancelled or shut down gracefully, then closes every connection.
    public func run() async throws {
        switch backend {
        case .postgres(let client):
            await client.run()
        case .sqlite(let writer, let readers, let threads):
            try? await gracefulShutdown()
            await writer.close()
            await readers.close()
            try? await threads.shutdownGracefully()
        }
    }

    /// Runs `body` with a running database at `url`, then shuts it down: for CLI commands and tests.
    public static func withDatabase<T: Sendable>(
        url: String,
        logger: Logger,
        _ body: (Database) async throws -> T
    ) async throws -> T {
        // The body may ask for a connection a moment before the pool's run task starts; PostgresNIO warns
        // about that although the request simply waits. Short-lived commands do not need the warning.
        var poolLogger = logger
        if poolLogger.logLevel < .error { poolLogger.logLevel = .error }
        let database = try Database(url: url, logger: poolLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await database.run() }
            do {
                let result = try await body(database)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// Runs `body` in a read-only transaction, which sees one consistent snapshot.
    public func read<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(_, let readers, _):
                return try await Self.transaction(pool: readers, begin: "BEGIN", body)
            case .postgres(let client):
                return try await client.withConnection { connection in
                    let sql = connection.sql(queryLogLevel: nil)
                    try await sql.raw("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").run()
                    do {
                        let result = try await body(sql)
                        try await sql.raw("COMMIT").run()
                        return result
                    } catch {
                        try? await sql.raw("ROLLBACK").run()
                        throw error
                    }
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Runs `body` in a write transaction that commits when it returns and rolls back when it throws.
    ///
    /// On SQLite the transaction starts with `BEGIN IMMEDIATE`, so it holds the file's write lock from the
    /// start and never fails half-way with `SQLITE_BUSY`.
    public func write<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let writer, _, _):
                return try await Self.transaction(pool: writer, begin: "BEGIN IMMEDIATE", body)
            case .postgres(let client):
                return try await client.withConnection { connection in
                    let sql = connection.sql(queryLogLevel: nil)
                    try await sql.raw("BEGIN").run()
                    do {
                        let result = try await body(sql)
                        try await sql.raw("COMMIT").run()
                        return result
                    } catch {
                        try? await sql.raw("ROLLBACK").run()
                        throw error
                    }
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Runs `body` with a read connection in autocommit mode: each statement sees its own snapshot, and
    /// the transaction round trips are saved. Only for reads whose statements need no common snapshot,
    /// such as ledger tiles for a proof (append-only rows whose prefixes never change).
    public func readStatements<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(_, let readers, _):
                return try await Self.lend(readers, body)
            case .postgres(let client):
                return try await client.withConnection { connection in
                    try await body(connection.sql(queryLogLevel: nil))
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Lends one of `pool`'s SQLite connections to `body` in autocommit mode.
    private static func lend<T: Sendable>(_ pool: SQLiteConnectionPool, _ body: (any SQLDatabase) async throws -> T) async throws -> T {
        let connection = try await pool.acquire()
        do {
            let result = try await body(connection.sql(queryLogLevel: nil))
            await pool.release(connection)
            return result
        } catch {
            await pool.release(connection)
            throw error
        }
    }

    /// Lends a connection outside any transaction, for the few statements that cannot run in one
    /// (PostgreSQL's `CREATE DATABASE`, SQLite's `VACUUM`). Everything else uses ``read(_:)`` or ``write(_:)``.
    public func withoutTransaction<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let writer, _, _):
                return try await Self.lend(writer, body)
            case .postgres(let client):
                return try await client.withConnection { connection in
                    try await body(connection.sql(queryLogLevel: nil))
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Whether the database answers a trivial query within `timeout` (a pool waiting on an unreachable
    /// server would otherwise hold the caller for its whole connect timeout).
    public func isReachable(timeout: Duration = .seconds(2)) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    _ = try await self.read { db in try await db.raw("SELECT 1 AS one").first() }
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    private static func transaction<T: Sendable>(
        pool: SQLiteConnectionPool, begin: String, _ body: (any SQLDatabase) async throws -> T
    ) async throws -> T {
        let connection = try await pool.acquire()
        let sql = connection.sql(queryLogLevel: nil)
        do {
            try await control(begin, on: connection)
        } catch {
            await pool.release(connection)
            throw error
        }
        do {
            let result = try await body(sql)
            try await control("COMMIT", on: connection)
            await pool.release(connection)
            return result
        } catch {
            do {
                try await control("ROLLBACK", on: connection)
                await pool.release(connection)
            } catch {
                await pool.discard(connection)
            }
            throw error
        }
    }

    /// Runs BEGIN, COMMIT or ROLLBACK even when the calling task is cancelled: SQLiteNIO's async calls
    /// skip their work once cancelled, which would return a connection to the pool inside an open
    /// transaction holding the file's write lock. The future-based call always runs.
    private static func control(_ statement: String, on connection: SQLiteConnection) async throws {
        let future: EventLoopFuture<[SQLiteRow]> = connection.query(statement, [])
        _ = try await future.get()
    }

    /// Turns driver errors into ``PortalError``: unique violations become `conflict`, the rest `storage`.
    /// The driver's own text is logged (it holds no bind values), never returned to a client.
    private func mapError(_ error: any Error) -> any Error {
        if Self.isUniqueViolation(error) {
            return PortalError(.conflict, "a resource with the same unique key already exists")
        }
        // Only the drivers' own errors are translated; the caller's errors pass through unchanged.
        guard error is SQLiteError || error is PSQLError || error is DecodingError || error is PostgresDecodingError else {
            return error
        }
        logger.error("database error", metadata: ["portal.error": "\(String(reflecting: error))"])
        return PortalError(.storage, "the database failed to complete the operation")
    }

    /// Whether `error` is a unique-constraint violation on either backend.
    public static func isUniqueViolation(_ error: any Error) -> Bool {
        if let e = error as? SQLiteError {
            return e.reason == .constraintUniqueFailed || e.reason == .constraintPrimaryKeyFailed
        }
        if let e = error as? PSQLError {
            return e.serverInfo?[.sqlState] == "23505"
        }
        return false
    }
}
