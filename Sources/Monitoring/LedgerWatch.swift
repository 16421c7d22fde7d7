package import Foundation
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage

/// Verifies ledgers and records the result three ways: a `ledger.verified` entry (in the ledger verified
/// when it passed, in the platform ledger when it failed, since a broken chain is no place for its own
/// verdict), the `ledger_verifications` row the metrics and the `ledger_verification_failure` rule read, and
/// the return value. `portal ledger verify` and the periodic ``LedgerWatch`` both go through here.
package struct LedgerVerificationRun: Sendable {
    let database: Database
    let checkpointer: LedgerCheckpointer
    let sequencer: any AuditTrail
    let clock: any WallClock

    package init(database: Database, checkpointer: LedgerCheckpointer, sequencer: any AuditTrail, clock: any WallClock) {
        self.database = database
        self.checkpointer = checkpointer
        self.sequencer = sequencer
        self.clock = clock
    }

    /// Verifies one ledger with `keys` (the ledger's own verifier keys when empty).
    package func verify(
        organizationID: UUID, slug: String, keys given: [SignedNote.VerifierKey] = [], publishedDirectory: String?, actor: String,
        progress: (Int64) -> Void = { _ in }
    ) async throws -> LedgerVerification {
        let keys = given.isEmpty ? try await checkpointer.verifierKeys(slug: slug) : given
        let result = try await LedgerVerifier().verify(
            database: database, organizationID: organizationID, slug: slug, keys: keys, publishedDirectory: publishedDirectory, progress: progress
        )
        let now = clock.now()
        let root = Data(result.root).base64EncodedString()
        if let failure = result.failure {
            try await sequencer.append([AuditEvent(
                organizationID: Organization.platformID, type: .ledgerVerified, actor: actor,
                data: ["ledger": .string(slug), "result": "failed", "seq": .int(failure.seq), "reason": .string(failure.message)], time: now
            )])
        } else {
            try await sequencer.append([AuditEvent(
                organizationID: organizationID, type: .ledgerVerified, actor: actor,
                data: ["size": .int(result.size), "root": .string(root), "result": "ok", "checkpoints": .int(Int64(result.checkpointsChecked))], time: now
            )])
        }
        try await database.write { db in
            try await LedgerVerificationStore(db).save(
                organizationID: organizationID, passed: result.passed, size: result.size,
                message: result.failure.map { "seq \($0.seq): \($0.message)" }, at: now
            )
        }
        return result
    }
}

/// Verifies every organization's ledger on an interval (`PORTAL_LEDGER_VERIFY_INTERVAL`, default 1 h; the
/// first run a minute after start), one instance at a time (a `service_leases` lease), so a tampered or
/// broken chain raises `ledger_verification_failure` without anyone running the CLI.
package final class LedgerWatch: Service, Sendable {
    let run: LedgerVerificationRun
    let database: Database
    let clock: any WallClock
    let logger: Logger
    let interval: Duration
    let publishedDirectory: String?
    let owner: String

    package init(run: LedgerVerificationRun, database: Database, clock: any WallClock, logger: Logger, interval: Duration, publishedDirectory: String?, owner: String) {
        self.run = run
        self.database = database
        self.clock = clock
        self.logger = logger
        self.interval = interval
        self.publishedDirectory = publishedDirectory
        self.owner = owner
    }

    package func run() async throws {
        await LeasedLoop(name: "ledger-watch", owner: owner, database: database, clock: clock, logger: logger)
            .run(every: interval, first: min(interval, .seconds(60))) { try await self.verifyAll() }
    }

    /// Verifies every ledger (organizations and the platform's).
    @discardableResult
    package func verifyAll() async throws -> [String: Bool] {
        let ledgers = try await database.read { db in
            try await OrganizationStore(db).ledgerOwners()
        }
        var results: [String: Bool] = [:]
        for (id, slug) in ledgers {
            let result = try await run.verify(organizationID: id, slug: slug, publishedDirectory: publishedDirectory, actor: AuditEvent.system("ledger-watch"))
            results[slug] = result.passed
            if let failure = result.failure {
                logger.error("ledger verification failed", metadata: ["portal.ledger": "\(slug)", "portal.seq": "\(failure.seq)", "portal.reason": "\(failure.message)"])
            }
        }
        return results
    }
}
