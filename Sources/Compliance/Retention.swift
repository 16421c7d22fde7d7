package import Foundation
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage

/// Retention: each organization's periods for request logs, stored bodies and webhook bodies
/// (`GET`/`PUT /portal/retention`, changes ledgered as `retention.updated`), and the service that applies
/// them (once an hour by default, one instance at a time), appending `retention.applied` with what it removed.
/// Ledger entries are never deleted.
package final class Retention: Service, Sendable {
    let database: Database
    let audit: any AuditTrail
    let clock: any WallClock
    let logger: Logger
    let interval: Duration
    let owner: String
    /// Rows per statement, so a large backlog never holds the writer long.
    let batch: Int

    package init(database: Database, audit: any AuditTrail, clock: any WallClock, logger: Logger, interval: Duration = .seconds(3600), owner: String, batch: Int = 5_000) {
        self.database = database
        self.audit = audit
        self.clock = clock
        self.logger = logger
        self.interval = interval
        self.owner = owner
        self.batch = batch
    }

    package func run() async throws {
        await LeasedLoop(name: "retention", owner: owner, database: database, clock: clock, logger: logger)
            .run(every: interval, first: min(interval, .seconds(120))) { try await self.applyAll() }
    }

    // MARK: Policy

    package struct PolicyView: Sendable, Encodable {
        package var requestLogsDays: Int?
        package var storedBodiesDays: Int?
        package var webhookPayloadsDays: Int?
        /// Whether these are the defaults (no policy set).
        package var isDefault: Bool
        package var updatedBy: String?
        package var updatedAt: String?

        enum CodingKeys: String, CodingKey { case requestLogsDays, storedBodiesDays, webhookPayloadsDays, isDefault, updatedBy, updatedAt }

        package func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(requestLogsDays, forKey: .requestLogsDays)
            try c.encode(storedBodiesDays, forKey: .storedBodiesDays)
            try c.encode(webhookPayloadsDays, forKey: .webhookPayloadsDays)
            try c.encode(isDefault, forKey: .isDefault)
            try c.encodeIfPresent(updatedBy, forKey: .updatedBy)
            try c.encodeIfPresent(updatedAt, forKey: .updatedAt)
        }
    }

    package func policy(by principal: Principal) async throws -> PolicyView {
        try principal.require(.readIntegrations)
        let (policy, by, at) = try await database.read { db in try await RetentionStore(db).policy(organizationID: principal.organizationID) }
        return PolicyView(
            requestLogsDays: policy.requestLogsDays, storedBodiesDays: policy.storedBodiesDays, webhookPayloadsDays: policy.webhookPayloadsDays,
            isDefault: at == nil, updatedBy: by, updatedAt: at.map(Timestamp.rfc3339)
        )
    }

    /// Sets the organization's periods from `{requestLogsDays, storedBodiesDays, webhookPayloadsDays}` (each
    /// 1 to 3650, or null to keep for ever; all three required).
    package func setPolicy(_ json: JSONValue, by principal: Principal) async throws -> PolicyView {
        try principal.require(.manageReports)
        guard case .object(let m) = json else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        let fields = ["requestLogsDays", "storedBodiesDays", "webhookPayloadsDays"]
        for key in m.keys.sorted() where !fields.contains(key) { errors.append(.init(pointer: "/\(key)", message: "unknown field")) }
        var values: [String: Int?] = [:]
        for field in fields {
            switch m[field] {
            case .null?: values[field] = .some(nil)
            case .int(let n)? where (1...3650).contains(n): values[field] = .some(Int(n))
            case nil: errors.append(.init(pointer: "/\(field)", message: "is required: days from 1 to 3650, or null to keep for ever"))
            default: errors.append(.init(pointer: "/\(field)", message: "must be days from 1 to 3650, or null to keep for ever"))
            }
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }
        let policy = RetentionPolicy(requestLogsDays: values["requestLogsDays"]!, storedBodiesDays: values["storedBodiesDays"]!, webhookPayloadsDays: values["webhookPayloadsDays"]!)
        let actor = principal.tokenID.uuidString.lowercased()
        let now = clock.now()
        try await database.write { db in
            try await RetentionStore(db).save(policy, organizationID: principal.organizationID, by: actor, at: now)
            func days(_ v: Int?) -> JSONValue { v.map { .int(Int64($0)) } ?? "keep" }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .retentionUpdated, actor: actor,
                data: ["requestLogsDays": days(policy.requestLogsDays), "storedBodiesDays": days(policy.storedBodiesDays), "webhookPayloadsDays": days(policy.webhookPayloadsDays)],
                time: now
            ), in: db)
        }
        audit.wake()
        return try await self.policy(by: principal)
    }

    // MARK: Applying

    /// What one run removed in one organization.
    package struct Applied: Sendable, Equatable {
        package var requestLogsDeleted = 0
        package var bodiesCleared = 0
        package var webhookPayloadsExpired = 0

        package init() {}
    }

    /// Applies every organization's policy at the clock's time; returns what was removed, by slug.
    @discardableResult
    package func applyAll() async throws -> [String: Applied] {
        let organizations = try await database.read { db in try await OrganizationStore(db).list() }.map { ($0.id, $0.slug) }
        var out: [String: Applied] = [:]
        for (id, slug) in organizations { out[slug] = try await apply(organizationID: id) }
        return out
    }

    package func apply(organizationID: UUID) async throws -> Applied {
        let now = clock.now()
        let policy = try await database.read { db in try await RetentionStore(db).policy(organizationID: organizationID).policy }
        let batch = batch
        var applied = Applied()
        // Bodies first: rows about to be deleted need no clearing.
        if let days = policy.storedBodiesDays {
            applied.bodiesCleared = try await repeatBatches(organizationID, "integration_requests", "bodies_cleared", days: days, now: now) { db, before in
                try await RetentionStore(db).clearBodies(organizationID: organizationID, before: before, limit: batch)
            }
        }
        if let days = policy.requestLogsDays {
            applied.requestLogsDeleted = try await repeatBatches(organizationID, "integration_requests", "rows_deleted", days: days, now: now) { db, before in
                try await RetentionStore(db).deleteRequestLogs(organizationID: organizationID, before: before, limit: batch)
            }
        }
        if let days = policy.webhookPayloadsDays {
            applied.webhookPayloadsExpired = try await repeatBatches(organizationID, "webhook_events", "payloads_expired", days: days, now: now) { db, before in
                try await RetentionStore(db).expireWebhookPayloads(organizationID: organizationID, before: before, limit: batch)
            }
        }
        audit.wake()
        return applied
    }

    /// Runs `step` in its own write transaction until it touches less than a full batch, appending a
    /// `retention.applied` entry in each transaction that removed something (so the evidence commits with
    /// the deletion); returns the total.
    private func repeatBatches(
        _ organizationID: UUID, _ table: String, _ action: String, days: Int, now: Date,
        _ step: @escaping @Sendable (Transaction, Date) async throws -> Int
    ) async throws -> Int {
        let before = now.addingTimeInterval(-Double(days) * 86_400)
        var total = 0
        while true {
            let n = try await database.write { db in
                let n = try await step(db, before)
                if n > 0 {
                    try await audit.record(AuditEvent(
                        organizationID: organizationID, type: .retentionApplied, actor: AuditEvent.system("retention"),
                        data: ["table": .string(table), "action": .string(action), "cutoff": .string(Timestamp.rfc3339(before)), "rows": .int(Int64(n)), "days": .int(Int64(days))],
                        time: now
                    ), in: db)
                }
                return n
            }
            total += n
            if n < batch { return total }
        }
    }
}
