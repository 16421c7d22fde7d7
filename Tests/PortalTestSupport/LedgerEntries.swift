package import Foundation
package import Ledger
package import Storage

extension LedgerSequencer {
    /// Every entry of an organization's ledger, once what is queued (the outbox included) is chained.
    package func chainedEntries(of organizationID: UUID, in database: Database) async throws -> [LedgerEntry] {
        try await drainAll()
        return try await database.read { tx in
            try await LedgerStore(tx).entries(organizationID, from: 0, limit: 100_000).map { try LedgerEntry(canonical: $0.bytes) }
        }
    }
}
