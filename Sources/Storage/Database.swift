import Foundation
package import Logging
import NIOCore
import NIOPosix
import NIOSSL
package import PortalCore
import PostgresKit
import PostgresNIO
import SQLKit
import Synchronization
import ServiceLifecycle

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
package final class Database: Service, Sendable {
    /// The SQL dialect, for the few statements that differ (DDL types, locking).
    package enum Dialect: String, Sendable {
        case sqlite
        case postgres
    }

    private enum Backend: Sendable {
        case sqlite(writer: SQLiteConnectionPool, readers: SQLiteConnectionPool)
        case postgres(PostgresClient)
    }

    package let dialect: Dialect
    package let location: DatabaseLocation
    private let backend: Backend
    private let logger: Logger
    /// How long an operation waits for a PostgreSQL connection before it fails with
    /// ``PortalError/Code/unavailable`` (the pool itself would wait until its circuit breaker trips, a
    /// minute, while the server is down or restarting): `PORTAL_DATABASE_WAIT` (a duration such as 30s),
    /// default 30 s, long enough to ride out a server restart or a short burst that uses every connection
    /// the server allows, short enough that a client hears 503 with Retry-After rather than nothing.
    package static let connectionWait: Duration = {
        guard let text = ProcessInfo.processInfo.environment["PORTAL_DATABASE_WAIT"], !text.isEmpty,
              let seconds = try? DurationText.seconds(text, field: "PORTAL_DATABASE_WAIT"), seconds >= 1
        else { return .seconds(30) }
        return .seconds(seconds)
    }()

    /// Connections of a PostgreSQL pool, at most.
    package static let maximumConnections = 16

    /// How long a PostgreSQL connection may stay idle before the pool closes it.
    ///
    /// PostgresNIO arms an idle-timeout timer (and a keep-alive timer, when configured) each time a
    /// connection goes back to the pool, and cancels it when the connection is lent again. A cancelled
    /// timer (a `Task.sleep`) keeps about 400 bytes until its deadline, so what those timers hold is this
    /// long's worth of releases: with PostgresNIO's defaults (60 s idle, 30 s keep-alive) a release
    /// `portal serve` grew from 52 to 181 MiB over 80,000 requests. Ten seconds and no keep-alive (an
    /// idle connection is closed before a keep-alive would matter) bound it to a few MiB. A minimum of
    /// kept connections is not used: PostgresNIO 1.33 traps (`createNewDemandConnectionIfPossible`) when
    /// a lease arrives while the server has closed connections below the minimum, as after a restart.
    package static let idleConnectionTimeout: Duration = .seconds(10)

    /// Prepares a database at `url` (see ``DatabaseLocation``); no connection is made until first use.
    package convenience init(url: String, logger: Logger) throws(PortalError) {
        try self.init(location: DatabaseLocation(url: url), logger: logger)
    }

    /// Prepares a database at `location`; no connection is made until first use.
    package init(location: DatabaseLocation, logger: Logger) throws(PortalError) {
        self.location = location
        self.logger = logger
        switch location {
        case .sqlite(let path):
            let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""  // (NSString's deletingLastPathComponent traps on a one-letter name in release builds)
            if !directory.isEmpty {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            dialect = .sqlite
            // One thread per connection (see SQLiteThread): a connection waiting for another process's
            // write lock sleeps on its own thread and starves no one of a thread to commit on.
            backend = .sqlite(
                writer: SQLiteConnectionPool(path: path, maximum: 1, name: "writer"),
                readers: SQLiteConnectionPool(path: path, maximum: 4, name: "reader")
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
            configuration.options.maximumConnections = Self.maximumConnections
            configuration.options.connectionIdleTimeout = Self.idleConnectionTimeout
            configuration.options.keepAliveBehavior = nil
            dialect = .postgres
            backend = .postgres(PostgresClient(configuration: configuration, backgroundLogger: logger))
        }
    }

    /// Runs the connection pool until cancelled or shut down gracefully, then closes every connection.
    package func run() async throws {
        switch backend {
        case .postgres(let client):
            await client.run()
        case .sqlite(let writer, let readers):
            try? await gracefulShutdown()
            writer.close()
            readers.close()
        }
    }

    /// Runs `body` with a running database at `url`, then shuts it down: for CLI commands and tests.
    package static func withDatabase<T: Sendable>(
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
    package func read<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(_, let readers):
                return try await transaction(pool: readers, begin: "BEGIN", body)
            case .postgres(let client):
                return try await Self.leased(client) { connection in
                    let sql = OpenConnectionSQL(connection)
                    try await sql.raw("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").run()
                    do {
                        let result = try await body(Transaction(sql))
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
    package func write<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let writer, _):
                return try await transaction(pool: writer, begin: "BEGIN IMMEDIATE", body)
            case .postgres(let client):
                return try await Self.leased(client) { connection in
                    let sql = OpenConnectionSQL(connection)
                    try await sql.raw("BEGIN").run()
                    do {
                        let result = try await body(Transaction(sql))
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
    package func readStatements<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(_, let readers):
                return try await lend(readers, body)
            case .postgres(let client):
                return try await Self.leased(client) { connection in
                    try await body(Transaction(OpenConnectionSQL(connection)))
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Lends one of `pool`'s SQLite connections to `body` in autocommit mode, on the connection's thread.
    private func lend<T: Sendable>(_ pool: SQLiteConnectionPool, _ body: (Transaction) async throws -> T) async throws -> T {
        let connection = try await pool.acquire()
        let sql = SQLiteSQLDatabase(connection: connection, logger: logger)
        return try await connection.thread.run {
            defer { pool.release(connection) }
            return try await body(Transaction(sql))
        }
    }

    /// Lends a connection outside any transaction, for the few statements that cannot run in one
    /// (PostgreSQL's `CREATE DATABASE`, SQLite's `VACUUM`). Everything else uses ``read(_:)`` or ``write(_:)``.
    package func withoutTransaction<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let writer, _):
                return try await lend(writer, body)
            case .postgres(let client):
                return try await Self.leased(client) { connection in
                    try await body(Transaction(OpenConnectionSQL(connection)))
                }
            }
        } catch {
            throw mapError(error)
        }
    }

    /// Lends `body` a pooled PostgreSQL connection, waiting at most ``connectionWait`` for one.
    ///
    /// The lease is requested in a child task beside a timer: when the timer finds no connection lent
    /// yet, the lease request is cancelled (PostgresNIO honours that) and the caller gets a 503-mapped
    /// `unavailable` error instead of waiting for the pool's circuit breaker.
    private static func leased<T: Sendable>(_ client: PostgresClient, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withoutActuallyEscaping(body) { body in
            // Safe to send: `body` runs in exactly one child task, once, while this frame only awaits it.
            let work = UncheckedSendableBox(body)
            let lent = LeaseFlag()
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    try await client.withConnection { connection in
                        lent.set()
                        return try await work.value(connection)
                    }
                }
                group.addTask {
                    // Not Task.sleep: this deadline is cancelled by almost every operation (see TimerSleep).
                    try await TimerSleep.sleep(for: connectionWait)
                    guard lent.isSet else {
                        var error = PortalError(.unavailable, "the database cannot be reached (no connection within \(connectionWait.components.seconds) s); retry shortly")
                        error.retryAfterSeconds = 5
                        throw error
                    }
                    return nil
                }
                while let next = try await group.next() {
                    if let value = next {
                        group.cancelAll()
                        return value
                    }
                }
                throw PortalError(.internal, "the database operation ended without a result")
            }
        }
    }

    /// Whether the database answers a trivial query within `timeout` (a pool waiting on an unreachable
    /// server would otherwise hold the caller for its whole connect timeout).
    package func isReachable(timeout: Duration = .seconds(2)) async -> Bool {
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
                try? await TimerSleep.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Runs `body` in a transaction on one of `pool`'s connections, on the connection's own thread: its
    /// statements, BEGIN and COMMIT included, run there without a hop each (see ``SQLiteThread``). They run
    /// even when the calling task is cancelled, so a connection never goes back to the pool inside an
    /// open transaction holding the file's write lock.
    private func transaction<T: Sendable>(
        pool: SQLiteConnectionPool, begin: String, _ body: (Transaction) async throws -> T
    ) async throws -> T {
        let connection = try await pool.acquire()
        let sql = SQLiteSQLDatabase(connection: connection, logger: logger)
        return try await connection.thread.run {
            do {
                try connection.execute(begin)
            } catch {
                pool.release(connection)
                throw error
            }
            do {
                let result = try await body(Transaction(sql))
                try connection.execute("COMMIT")
                pool.release(connection)
                return result
            } catch {
                do {
                    try connection.execute("ROLLBACK")
                    pool.release(connection)
                } catch {
                    pool.discard(connection)
                }
                throw error
            }
        }
    }

    /// Turns driver errors into ``PortalError``: unique violations become `conflict`, the rest `storage`.
    /// The driver's own text is logged (it holds no bind values), never returned to a client.
    private func mapError(_ error: any Error) -> any Error {
        if Self.isUniqueViolation(error) {
            return PortalError(.conflict, "a resource with the same unique key already exists")
        }
        if Self.isUnreachable(error) {
            if var error = error as? PortalError {
                if error.operatorContext == nil { error.operatorContext = location.description }
                return error
            }
            logger.warning("database unreachable", metadata: ["portal.error": "\(String(reflecting: error).prefix(300))"])
            var unavailable = PortalError(.unavailable, "the database cannot be reached (\(Self.unreachableReason(error))); retry shortly")
            unavailable.operatorContext = location.description
            unavailable.retryAfterSeconds = 5
            return unavailable
        }
        // Only the drivers' own errors are translated; the caller's errors pass through unchanged.
        guard error is SQLiteFailure || error is PSQLError || error is DecodingError || error is PostgresDecodingError else {
            return error
        }
        logger.error("database error", metadata: ["portal.error": "\(String(reflecting: error))"])
        return PortalError(.storage, "the database failed to complete the operation")
    }

    /// Whether `error` says the database server cannot be reached now (refused or lost connections, the
    /// pool's circuit breaker, a server starting up or shutting down), rather than that a statement failed.
    package static func isUnreachable(_ error: any Error) -> Bool {
        if let e = error as? PortalError { return e.code == .unavailable }
        if let e = error as? PSQLError {
            switch e.code {
            case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection, .poolClosed: return true
            default:
                // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 08xxx: connection exceptions.
                let state = e.serverInfo?[.sqlState] ?? ""
                return state.hasPrefix("57P") || state.hasPrefix("08")
            }
        }
        // PostgresNIO's pool errors (its circuit breaker, a closed pool) and NIO's connect errors.
        let name = String(describing: type(of: error))
        return name.contains("ConnectionPoolError") || name == "NIOConnectionError" || name == "IOError" || name == "ChannelError"
    }

    /// Why the database cannot be reached, in words that name no host, user or value.
    static func unreachableReason(_ error: any Error) -> String {
        let text = String(reflecting: error)
        if text.contains("CircuitBreaker") { return "connections kept failing" }
        if text.contains("Connection refused") || text.contains("errno: 111") { return "connection refused" }
        if text.contains("57P03") { return "the server is starting up" }
        if text.contains("57P01") || text.contains("57P02") { return "the server is shutting down" }
        if text.contains("serverClosedConnection") || text.contains("uncleanShutdown") { return "the server closed the connection" }
        if text.contains("timed out") || text.contains("Timeout") { return "connection timed out" }
        if let e = error as? PSQLError, e.code == .poolClosed || e.code == .clientClosedConnection { return "the pool is shut down" }
        return "connection failed"
    }

    /// Whether `error` is a unique-constraint violation on either backend.
    package static func isUniqueViolation(_ error: any Error) -> Bool {
        if let e = error as? SQLiteFailure {
            return e.isUniqueViolation
        }
        if let e = error as? PSQLError {
            return e.serverInfo?[.sqlState] == "23505"
        }
        return false
    }
}

/// Whether a connection was lent (set once by the lease, read by the timer).
private final class LeaseFlag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// A non-Sendable closure handed to one child task while its owner awaits that task (see `leased`).
private struct UncheckedSendableBox<Value>: @unchecked Sendable { // used by one task at a time: see `leased`
    let value: Value

    init(_ value: Value) { self.value = value }
}
