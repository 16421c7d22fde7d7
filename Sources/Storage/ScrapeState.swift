package import Foundation
package import PortalCore
import SQLKit

/// Everything a scrape shows that is not in the collector: read from the database in one transaction.
package struct ScrapeState: Sendable {
    package struct Organization: Sendable {
        package var id: UUID
        package var slug: String
    }

    package var organizations: [Organization] = []
    /// Live integrations: id -> organization id.
    package var integrations: [(id: UUID, organizationID: UUID)] = []
    /// Live integrations' service level objectives (their `config.slo`), for those that have them.
    package var objectives: [UUID: JSONValue] = [:]
    package var queueDepth: [UUID: Int] = [:]
    package var oldestPending: [UUID: Date] = [:]
    package var deadLetters: [UUID: Int] = [:]
    package var syncJobs: [UUID: [String: Int]] = [:]
    package var ledgerSize: [UUID: Int64] = [:]
    package var lastCheckpoint: [UUID: Date] = [:]
    package var alerts: [UUID: [String: [String: Int]]] = [:]

    package init() {}

    /// Reads the state of one organization, or of every organization when nil.
    package static func read(organizationID: UUID?, in transaction: Transaction) async throws -> ScrapeState {
        let db = transaction.sql
        var state = ScrapeState()
        func scope(_ column: String, _ leading: String) -> SQLQueryString {
            organizationID.map { SQLQueryString(" \(unsafeRaw: leading) \(unsafeRaw: column) = \(bind: $0)") } ?? SQLQueryString("")
        }
        state.organizations = try await db.raw("SELECT id, slug FROM organizations\(scope("id", "WHERE")) ORDER BY slug").all().map {
            Organization(id: try $0.decode(column: "id", as: UUID.self), slug: try $0.decode(column: "slug", as: String.self))
        }
        let backend = db.backend
        for row in try await db.raw("SELECT id, organization_id, config FROM integrations WHERE deleted_at IS NULL\(scope("organization_id", "AND"))").all() {
            let id = try row.decode(column: "id", as: UUID.self)
            state.integrations.append((id, try row.decode(column: "organization_id", as: UUID.self)))
            if let slo = try row.decodeJSON(column: "config", backend: backend)?.objectValue?["slo"] { state.objectives[id] = slo }
        }
        for row in try await db.raw("""
            SELECT organization_id, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM webhook_events
            WHERE status IN ('pending', 'retrying', 'failed')\(scope("organization_id", "AND")) GROUP BY organization_id, status
            """).all() {
            let org = try row.decode(column: "organization_id", as: UUID.self)
            let n = try row.decode(column: "n", as: Int.self)
            if try row.decode(column: "status", as: String.self) == "failed" {
                state.deadLetters[org, default: 0] += n
            } else {
                state.queueDepth[org, default: 0] += n
                if let oldest = try row.decodeOptional(column: "oldest", as: Date.self) {
                    state.oldestPending[org] = min(state.oldestPending[org] ?? oldest, oldest)
                }
            }
        }
        for row in try await db.raw("SELECT organization_id, status, COUNT(*) AS n FROM sync_jobs\(scope("organization_id", "WHERE")) GROUP BY organization_id, status").all() {
            state.syncJobs[try row.decode(column: "organization_id", as: UUID.self), default: [:]][try row.decode(column: "status", as: String.self)] = try row.decode(column: "n", as: Int.self)
        }
        for row in try await db.raw("SELECT organization_id, size FROM ledger_heads\(scope("organization_id", "WHERE"))").all() {
            state.ledgerSize[try row.decode(column: "organization_id", as: UUID.self)] = try row.decode(column: "size", as: Int64.self)
        }
        for row in try await db.raw("SELECT organization_id, MAX(created_at) AS last FROM ledger_checkpoints\(scope("organization_id", "WHERE")) GROUP BY organization_id").all() {
            if let last = try row.decodeOptional(column: "last", as: Date.self) { state.lastCheckpoint[try row.decode(column: "organization_id", as: UUID.self)] = last }
        }
        for row in try await db.raw("""
            SELECT organization_id, rule, state, COUNT(*) AS n FROM alert_states WHERE state IN ('pending', 'firing')\(scope("organization_id", "AND"))
            GROUP BY organization_id, rule, state
            """).all() {
            state.alerts[try row.decode(column: "organization_id", as: UUID.self), default: [:]][try row.decode(column: "rule", as: String.self), default: [:]][
                try row.decode(column: "state", as: String.self)
            ] = try row.decode(column: "n", as: Int.self)
        }
        return state
    }
}
