package import Foundation
package import PortalCore
import SQLKit

/// The `purpose_keys` table: keys for keyed hashes that must outlive master-key rotations (the subject
/// lookup), each stored sealed by the vault under the platform's data key.
package struct PurposeKeyStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// The sealed key of `label` (the vault's envelope), if one was stored.
    package func find(label: String) async throws -> JSONValue? {
        guard let text = try await db.raw("SELECT sealed FROM purpose_keys WHERE label = \(bind: label)").first()?.decode(column: "sealed", as: String.self) else {
            return nil
        }
        return try JSONValue.parse(Array(text.utf8))
    }

    /// Stores the sealed key of `label` unless one is there already (another instance may have made it first).
    package func insertIfAbsent(label: String, sealed: JSONValue, at time: Date) async throws {
        try await db.raw("""
            INSERT INTO purpose_keys (label, sealed, created_at) VALUES (\(bind: label), \(bind: sealed.sortedText), \(bind: time))
            ON CONFLICT (label) DO NOTHING
            """).run()
    }
}
