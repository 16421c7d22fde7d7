package import Foundation
package import PortalCore
import SQLKit

/// One request to approve an integration's material configuration (issue 21).
package struct ApprovalRecord: Sendable, Equatable {
    package enum State: String, Sendable, CaseIterable {
        case pending, approved, rejected
        /// Replaced by a later change before anyone decided.
        case superseded
    }

    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    /// The digest of the material configuration asked for (``IntegrationRegistry`` computes it).
    package var digest: String
    /// The fields whose change asked for it (`created` for a new integration).
    package var changed: [String]
    package var state: State
    package var requestedBy: UUID
    package var requestedOwner: String
    package var requestedAt: Date
    package var decidedBy: UUID?
    package var decidedOwner: String?
    package var decidedAt: Date?
    package var comment: String?
    /// The integration's name, when read with it (``GovernanceStore/list(organizationID:state:integrationID:limit:before:)``).
    package var integrationName: String?

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, digest: String, changed: [String], state: State, requestedBy: UUID,
        requestedOwner: String, requestedAt: Date, decidedBy: UUID? = nil, decidedOwner: String? = nil, decidedAt: Date? = nil, comment: String? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.digest = digest
        self.changed = changed
        self.state = state
        self.requestedBy = requestedBy
        self.requestedOwner = requestedOwner
        self.requestedAt = requestedAt
        self.decidedBy = decidedBy
        self.decidedOwner = decidedOwner
        self.decidedAt = decidedAt
        self.comment = comment
    }
}

/// The `organization_policies` and `integration_approvals` tables, scoped by organization.
package struct GovernanceStore {
    private let db: any SQLDatabase
    private static let approvalColumns = """
        id, organization_id, integration_id, digest, changed, state, requested_by, requested_owner, requested_at,
        decided_by, decided_owner, decided_at, comment
        """

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// The organization's stored policy document, if it set one.
    package func policy(organizationID: UUID) async throws -> JSONValue? {
        let backend = db.backend
        return try await db.raw("SELECT policy FROM organization_policies WHERE organization_id = \(bind: organizationID)")
            .first().flatMap { try $0.decodeJSON(column: "policy", backend: backend) }
    }

    package func setPolicy(organizationID: UUID, policy: JSONValue, at time: Date, by actor: String) async throws {
        try await db.raw("""
            INSERT INTO organization_policies (organization_id, policy, updated_at, updated_by)
            VALUES (\(bind: organizationID), \(bind: db.jsonBind(policy)), \(bind: time), \(bind: actor))
            ON CONFLICT (organization_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at, updated_by = excluded.updated_by
            """).run()
    }

    package func insert(_ r: ApprovalRecord) async throws {
        try await db.raw("""
            INSERT INTO integration_approvals (\(unsafeRaw: Self.approvalColumns))
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.digest),
                    \(bind: JSONValue.encodeText(.array(r.changed.map(JSONValue.string)))), \(bind: r.state.rawValue), \(bind: r.requestedBy),
                    \(bind: r.requestedOwner), \(bind: r.requestedAt), \(bind: r.decidedBy), \(bind: r.decidedOwner), \(bind: r.decidedAt), \(bind: r.comment))
            """).run()
    }

    /// Records the decision on a pending request; false when it was no longer pending.
    package func decide(_ r: ApprovalRecord) async throws -> Bool {
        try await db.raw("""
            UPDATE integration_approvals SET state = \(bind: r.state.rawValue), decided_by = \(bind: r.decidedBy),
              decided_owner = \(bind: r.decidedOwner), decided_at = \(bind: r.decidedAt), comment = \(bind: r.comment)
            WHERE id = \(bind: r.id) AND organization_id = \(bind: r.organizationID) AND state = 'pending'
            RETURNING id
            """).first() != nil
    }

    /// The integration's pending request, if any (at most one: a unique index).
    package func pending(integrationID: UUID, organizationID: UUID) async throws -> ApprovalRecord? {
        let backend = db.backend
        return try await db.raw("""
            SELECT \(unsafeRaw: Self.approvalColumns) FROM integration_approvals
            WHERE integration_id = \(bind: integrationID) AND organization_id = \(bind: organizationID) AND state = 'pending'
            """).first().map { try Self.decode($0, backend) }
    }

    /// The organization's requests, newest first, optionally of one state or one integration, after the cursor id.
    package func list(
        organizationID: UUID, state: ApprovalRecord.State?, integrationID: UUID?, limit: Int, before cursor: UUID?
    ) async throws -> [ApprovalRecord] {
        let columns = Self.approvalColumns.split(separator: ",").map { "a." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")
        var query = SQLQueryString("""
            SELECT \(unsafeRaw: columns), i.name AS integration_name FROM integration_approvals a JOIN integrations i ON i.id = a.integration_id
            WHERE a.organization_id = \(bind: organizationID)
            """)
        if let state { query = query + " AND a.state = \(bind: state.rawValue)" }
        if let integrationID { query = query + " AND a.integration_id = \(bind: integrationID)" }
        if let cursor { query = query + " AND a.id < \(bind: cursor)" }
        query = query + " ORDER BY a.id DESC LIMIT \(bind: limit)"
        let backend = db.backend
        return try await db.raw(query).all().map { row in
            var record = try Self.decode(row, backend)
            record.integrationName = try row.decodeOptional(column: "integration_name", as: String.self)
            return record
        }
    }

    private static func decode(_ row: any SQLRow, _ backend: Database.Dialect) throws -> ApprovalRecord {
        ApprovalRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            digest: try row.decode(column: "digest", as: String.self),
            changed: ((try? JSONValue.parse(Data(try row.decode(column: "changed", as: String.self).utf8)))?.arrayValue ?? []).compactMap(\.stringValue),
            state: try row.decodeCase(column: "state", as: ApprovalRecord.State.self),
            requestedBy: try row.decode(column: "requested_by", as: UUID.self),
            requestedOwner: try row.decode(column: "requested_owner", as: String.self),
            requestedAt: try row.decode(column: "requested_at", as: Date.self),
            decidedBy: try row.decodeOptional(column: "decided_by", as: UUID.self),
            decidedOwner: try row.decodeOptional(column: "decided_owner", as: String.self),
            decidedAt: try row.decodeOptional(column: "decided_at", as: Date.self),
            comment: try row.decodeOptional(column: "comment", as: String.self)
        )
    }
}
