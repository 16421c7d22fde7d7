package import Foundation
package import SQLKit

/// Every PostgreSQL advisory lock the service takes, in one place. All are transaction-scoped: released
/// at commit or rollback, so a killed process never leaves one behind. SQLite takes none: its one writer
/// (`BEGIN IMMEDIATE`) already serializes every write transaction.
///
/// The keys are part of the deployment's contract: instances of different versions sharing a database
/// during a rolling upgrade must agree on them, so a key never changes once released.
package enum AdvisoryLock: Sendable, Equatable {
    /// Schema migrations, so that instances starting together migrate one at a time.
    case migrations
    /// An organization's ledger: one appender (sequencer batch) at a time.
    case ledger(UUID)
    /// An organization's checkpoint cutting (tried, never waited for).
    case checkpoint(UUID)
    /// Creating the checkpoint signing keys, once, however many instances start together.
    case signingKeys
    /// An integration's OAuth token refresh, even before its first token row exists.
    case integrationToken(UUID)
    /// An organization's alert silences: the count and the insert that follows it.
    case alertSilences(UUID)

    /// The lock's key as SQL: one `bigint`, or a pair of `int`s (a class and a hashed identifier).
    private var key: SQLQueryString {
        if let (lockClass, text) = pair { return "\(unsafeRaw: String(lockClass)), hashtext(\(bind: text))" }
        switch self {
        case .migrations: return "7461839201"
        case .signingKeys: return "7461841"
        case .alertSilences(let id): return "hashtext(\(bind: "alert_silences:" + id.uuidString.lowercased()))"
        case .ledger, .checkpoint, .integrationToken: return "0" // never reached: these keys have a pair
        }
    }

    /// A two-part key: a class and the text PostgreSQL hashes with `hashtext`; nil for the other keys. The
    /// `portal_ledger_append` function takes the ledger's lock itself from these parts
    /// (``LedgerStore/append(_:expected:entries:tiles:head:at:)``).
    package var pair: (Int32, String)? {
        switch self {
        case .ledger(let id): return (7461839, id.uuidString.lowercased())
        case .checkpoint(let id): return (7461840, id.uuidString.lowercased())
        case .integrationToken(let id): return (7461842, id.uuidString.lowercased())
        case .migrations, .signingKeys, .alertSilences: return nil
        }
    }

    /// Waits for the lock and holds it until the transaction ends (PostgreSQL; nothing on SQLite).
    package func take(in transaction: Transaction) async throws {
        try await take(on: transaction.sql)
    }

    /// Takes the lock if no other transaction holds it; false if one does (always true on SQLite).
    package func tryTake(in transaction: Transaction) async throws -> Bool {
        try await tryTake(on: transaction.sql)
    }

    package func take(on db: any SQLDatabase) async throws {
        guard db.backend == .postgres else { return }
        try await db.raw("SELECT pg_advisory_xact_lock(" + key + ")").run()
    }

    package func tryTake(on db: any SQLDatabase) async throws -> Bool {
        guard db.backend == .postgres else { return true }
        let row = try await db.raw("SELECT pg_try_advisory_xact_lock(" + key + ") AS ok").first()
        return try row?.decode(column: "ok", as: Bool.self) ?? false
    }
}
