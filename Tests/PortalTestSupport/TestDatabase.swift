import Foundation
package import Logging
import PortalCore
import SQLKit
package import Storage
import Synchronization

/// The database backends a storage test runs on: SQLite always, PostgreSQL when
/// `PORTAL_TEST_POSTGRES_URL` names a server (CI and `make test` set it).
package enum Backend: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    package var description: String { rawValue }

    /// The backends available in this run.
    package static var available: [Backend] {
        postgresAdminURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    static var postgresAdminURL: String? {
        let url = ProcessInfo.processInfo.environment["PORTAL_TEST_POSTGRES_URL"]
        return (url?.isEmpty ?? true) ? nil : url
    }
}

/// A fresh, empty database for one test: a new SQLite file in a temporary folder, or a new PostgreSQL
/// database created on the test server and dropped afterwards.
package struct TestDatabase: Sendable {
    package let backend: Backend
    package let url: String
    /// The SQLite file (nil for PostgreSQL).
    package let sqlitePath: String?
    let postgresName: String?

    /// Creates a new empty database on `backend`.
    package static func create(_ backend: Backend) async throws -> TestDatabase {
        let suffix = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portal-test-\(suffix)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let path = directory.appendingPathComponent("portal.sqlite").path
            return TestDatabase(backend: .sqlite, url: "sqlite://\(path)", sqlitePath: path, postgresName: nil)
        case .postgres:
            guard let admin = Backend.postgresAdminURL else {
                throw PortalError(.configuration, "PORTAL_TEST_POSTGRES_URL is not set")
            }
            let name = "portal_t_\(suffix)"
            try await Database.withDatabase(url: admin, logger: quietLogger) { db in
                try await db.withoutTransaction { sql in try await sql.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
            }
            return TestDatabase(backend: .postgres, url: replacingDatabase(in: admin, with: name), sqlitePath: nil, postgresName: name)
        }
    }

    /// Removes the database.
    package func drop() async {
        switch backend {
        case .sqlite:
            if let sqlitePath {
                try? FileManager.default.removeItem(atPath: (sqlitePath as NSString).deletingLastPathComponent)
            }
        case .postgres:
            guard let admin = Backend.postgresAdminURL, let postgresName else { return }
            _ = try? await Database.withDatabase(url: admin, logger: quietLogger) { db in
                try await db.withoutTransaction { sql in
                    try await sql.raw("DROP DATABASE IF EXISTS \(unsafeRaw: postgresName) WITH (FORCE)").run()
                }
            }
        }
    }

    /// Runs `body` with a fresh, migrated database, then drops it.
    package static func with<T: Sendable>(
        _ backend: Backend, logger: Logger = quietLogger, _ body: (TestDatabase, Database) async throws -> T
    ) async throws -> T {
        let test = try await create(backend)
        do {
            let result = try await Database.withDatabase(url: test.url, logger: logger) { db in
                try await Migrator(database: db, logger: logger).migrate()
                return try await body(test, db)
            }
            await test.drop()
            return result
        } catch {
            await test.drop()
            throw error
        }
    }

    static func replacingDatabase(in url: String, with name: String) -> String {
        var components = URLComponents(string: url)!
        components.path = "/" + name
        return components.string!
    }
}

/// A logger that drops everything below errors.
package let quietLogger: Logger = {
    var logger = Logger(label: "portal.test")
    logger.logLevel = .error
    return logger
}()

/// Collects every log line written through its logger, for tests that check what logs contain.
package final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    package init() {}

    /// A logger at trace level whose JSON-ish lines (message and metadata) land in this capture.
    package func logger(label: String = "portal.test") -> Logger {
        var logger = Logger(label: label) { label in CaptureHandler(label: label, capture: self) }
        logger.logLevel = .trace
        return logger
    }

    /// Everything captured so far, one line per log event.
    package var text: String { lines.withLock { $0.joined(separator: "\n") } }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }
}

private struct CaptureHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    let label: String
    let capture: LogCapture

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        capture.append("\(event.level) \(event.message) \(merged)")
    }
}
