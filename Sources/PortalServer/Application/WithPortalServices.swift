import Foundation
package import Logging
package import PortalCore
package import Storage
package import Ledger

/// The one scope every command outside `portal serve` works in: the database opened and migrated, the
/// services built from the settings, the ledger sequencer running, so that what a command records is
/// appended exactly as the server appends it; at the end the ledger is drained and everything is closed.
/// (`portal serve` assembles the same `PortalServices` in ``buildApplication(_:)``, where the service group
/// runs every loop.)
package func withPortalServices<T: Sendable>(
    _ settings: PortalSettings, logger: Logger, _ body: (PortalServices) async throws -> T
) async throws -> T {
    try await Database.withDatabase(url: settings.databaseURL, logger: logger) { db in
        try await Migrator(database: db, logger: logger).migrate()
        let services = try PortalServices(settings: settings, database: db, logger: logger)
        return try await services.ledger.whileRunning { try await body(services) }
    }
}

/// The scope of the commands that touch no secret (issuing, listing and revoking API tokens): the database
/// opened and migrated and the ledger sequencer running, without the master key the other services need, so
/// that a first admin token can be made (or a leaked one revoked) before a master key is configured.
package func withAuditedDatabase<T: Sendable>(
    _ settings: PortalSettings, logger: Logger, clock: any WallClock = SystemWallClock(), _ body: (Database, LedgerSequencer) async throws -> T
) async throws -> T {
    try await Database.withDatabase(url: settings.databaseURL, logger: logger) { db in
        try await Migrator(database: db, logger: logger).migrate()
        let ledger = LedgerSequencer(database: db, clock: clock, logger: logger)
        return try await ledger.whileRunning { try await body(db, ledger) }
    }
}
