package import Foundation
package import PortalCore
import SQLKit

/// One stored rollup: an integration's activity over a minute (resolution 60) or an hour (3600), as
/// counted by one service instance.
package struct MetricRollupRow: Sendable {
    package var organizationID: UUID
    package var integrationID: UUID
    package var resolution: Int
    /// Unix seconds of the bucket's start.
    package var bucketStart: Int64
    package var instanceID: String
    /// `ActivityStats`' encoded form.
    package var stats: String

    package init(organizationID: UUID, integrationID: UUID, resolution: Int, bucketStart: Int64, instanceID: String, stats: String) {
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.resolution = resolution
        self.bucketStart = bucketStart
        self.instanceID = instanceID
        self.stats = stats
    }
}

/// `metric_rollups` and `service_leases`.
package struct MetricRollupStore: Sendable {
    let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Writes rows, replacing a row of the same bucket and instance (an instance rewrites its hour as it
    /// fills).
    package func upsert(_ rows: [MetricRollupRow]) async throws {
        for chunk in stride(from: 0, to: rows.count, by: 200).map({ Array(rows[$0..<min($0 + 200, rows.count)]) }) {
            let values = SQLList(chunk.map { r in
                SQLQueryString("(\(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.resolution), \(bind: r.bucketStart), \(bind: r.instanceID), \(bind: r.stats))")
            })
            try await db.raw("""
                INSERT INTO metric_rollups (organization_id, integration_id, resolution, bucket_start, instance_id, stats) VALUES \(values)
                ON CONFLICT (integration_id, resolution, bucket_start, instance_id) DO UPDATE SET stats = excluded.stats
                """).run()
        }
    }

    /// Rows of `organizationID` (optionally one integration) at `resolution` with `from <= bucket_start < to`.
    package func rows(
        organizationID: UUID, integrationID: UUID? = nil, among integrationIDs: [UUID]? = nil, resolution: Int, from: Int64, to: Int64
    ) async throws -> [(integrationID: UUID, bucketStart: Int64, stats: String)] {
        var filter = integrationID.map { SQLQueryString(" AND integration_id = \(bind: $0)") } ?? SQLQueryString("")
        if let integrationIDs {
            filter = filter + " AND integration_id IN (" + (integrationIDs.isEmpty ? [SQLQueryString("NULL")] : integrationIDs.map { "\(bind: $0)" }).joined(separator: ", ") + ")"
        }
        return try await db.raw("""
            SELECT integration_id, bucket_start, stats FROM metric_rollups
            WHERE organization_id = \(bind: organizationID) AND resolution = \(bind: resolution)
              AND bucket_start >= \(bind: from) AND bucket_start < \(bind: to)\(filter)
            """).all().map {
                (try $0.decode(column: "integration_id", as: UUID.self), try $0.decode(column: "bucket_start", as: Int64.self), try $0.decode(column: "stats", as: String.self))
            }
    }

    /// One integration's rows at `resolution` with `from <= bucket_start < to`, with their bucket (every
    /// instance's row of a bucket; the caller merges them).
    package func buckets(organizationID: UUID, integrationID: UUID, resolution: Int, from: Int64, to: Int64) async throws -> [(bucketStart: Int64, stats: String)] {
        try await db.raw("""
            SELECT bucket_start, stats FROM metric_rollups
            WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID) AND resolution = \(bind: resolution)
              AND bucket_start >= \(bind: from) AND bucket_start < \(bind: to)
            """).all().map { (try $0.decode(column: "bucket_start", as: Int64.self), try $0.decode(column: "stats", as: String.self)) }
    }

    /// Deletes rows of `resolution` that started before `cutoff`; returns how many.
    @discardableResult
    package func prune(resolution: Int, before cutoff: Int64) async throws -> Int {
        try await db.raw("DELETE FROM metric_rollups WHERE resolution = \(bind: resolution) AND bucket_start < \(bind: cutoff) RETURNING 1 AS gone").all().count
    }
}

/// `service_leases`: which instance runs a singleton loop (the alert evaluator) for now.
package struct ServiceLeaseStore: Sendable {
    let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Takes or renews the lease `name` for `owner` until `until`, unless another owner holds it past `now`.
    package func claim(_ name: String, owner: String, until: Date, now: Date) async throws -> Bool {
        try await db.raw("""
            INSERT INTO service_leases (name, owner, lease_until) VALUES (\(bind: name), \(bind: owner), \(bind: until))
            ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
            WHERE service_leases.owner = excluded.owner OR service_leases.lease_until < \(bind: now)
            RETURNING owner
            """).first() != nil
    }
}

/// A row of `alert_states`: one alert instance (a rule and its labels) of an organization.
package struct AlertStateRecord: Sendable, Equatable {
    package var organizationID: UUID
    package var fingerprint: String
    package var rule: String
    package var labels: [String: String]
    package var annotations: [String: String]
    /// `pending`, `firing` or `resolved`.
    package var state: String
    package var value: Double?
    package var activeAt: Date
    package var firedAt: Date?
    package var resolvedAt: Date?
    package var lastSeenAt: Date
    package var lastNotifiedAt: Date?

    package init(
        organizationID: UUID, fingerprint: String, rule: String, labels: [String: String], annotations: [String: String], state: String,
        value: Double?, activeAt: Date, firedAt: Date? = nil, resolvedAt: Date? = nil, lastSeenAt: Date, lastNotifiedAt: Date? = nil
    ) {
        self.organizationID = organizationID
        self.fingerprint = fingerprint
        self.rule = rule
        self.labels = labels
        self.annotations = annotations
        self.state = state
        self.value = value
        self.activeAt = activeAt
        self.firedAt = firedAt
        self.resolvedAt = resolvedAt
        self.lastSeenAt = lastSeenAt
        self.lastNotifiedAt = lastNotifiedAt
    }
}

package struct AlertSilenceRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    /// `[{name, value, isRegex, isEqual}]`, as Alertmanager's (stored as `{"matchers": [...]}`: a JSON column
    /// holds an object, since PostgreSQL's encoder would bind a bare array as an SQL array).
    package var matchers: JSONValue
    package var startsAt: Date
    package var endsAt: Date
    package var comment: String
    package var createdBy: String
    package var createdAt: Date

    package init(id: UUID, organizationID: UUID, matchers: JSONValue, startsAt: Date, endsAt: Date, comment: String, createdBy: String, createdAt: Date) {
        self.id = id
        self.organizationID = organizationID
        self.matchers = matchers
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.comment = comment
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

package struct AlertReceiverRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var name: String
    /// `webhook`, `slack`, `teams` or `sendgrid`.
    package var kind: String
    /// Settings that are not secret (recipients, title).
    package var config: JSONValue
    /// The secret settings (URL, signing secret, API key), sealed by the vault.
    package var sealedSecrets: JSONValue
    package var createdAt: Date
    package var updatedAt: Date

    package init(id: UUID, organizationID: UUID, name: String, kind: String, config: JSONValue, sealedSecrets: JSONValue, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.kind = kind
        self.config = config
        self.sealedSecrets = sealedSecrets
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

package struct AlertNotificationRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var receiverID: UUID
    package var fingerprint: String
    /// `firing` or `resolved`.
    package var status: String
    package var attempts: Int
    package var delivered: Bool
    package var httpStatus: Int?
    package var error: String?
    package var createdAt: Date

    package init(id: UUID, organizationID: UUID, receiverID: UUID, fingerprint: String, status: String, attempts: Int, delivered: Bool, httpStatus: Int?, error: String?, createdAt: Date) {
        self.id = id
        self.organizationID = organizationID
        self.receiverID = receiverID
        self.fingerprint = fingerprint
        self.status = status
        self.attempts = attempts
        self.delivered = delivered
        self.httpStatus = httpStatus
        self.error = error
        self.createdAt = createdAt
    }
}

/// `alert_states`, `alert_silences`, `alert_receivers` and `alert_notifications`.
package struct AlertStore: Sendable {
    let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    // MARK: States

    /// Alert states of one organization, or of all when nil; resolved ones only when seen since `resolvedSince`.
    package func states(organizationID: UUID?, resolvedSince: Date) async throws -> [AlertStateRecord] {
        let org = organizationID.map { SQLQueryString(" AND organization_id = \(bind: $0)") } ?? SQLQueryString("")
        return try await db.raw("""
            SELECT * FROM alert_states WHERE (state <> 'resolved' OR resolved_at >= \(bind: resolvedSince))\(org)
            ORDER BY active_at DESC, fingerprint
            """).all().map(decodeState)
    }

    package func upsert(_ states: [AlertStateRecord]) async throws {
        for s in states {
            try await db.raw("""
                INSERT INTO alert_states (organization_id, fingerprint, rule, labels, annotations, state, value, active_at, fired_at, resolved_at, last_seen_at, last_notified_at)
                VALUES (\(bind: s.organizationID), \(bind: s.fingerprint), \(bind: s.rule), \(bind: db.jsonBind(Self.object(s.labels))),
                        \(bind: db.jsonBind(Self.object(s.annotations))), \(bind: s.state), \(bind: s.value), \(bind: s.activeAt), \(bind: s.firedAt),
                        \(bind: s.resolvedAt), \(bind: s.lastSeenAt), \(bind: s.lastNotifiedAt))
                ON CONFLICT (organization_id, fingerprint) DO UPDATE SET rule = excluded.rule, labels = excluded.labels,
                  annotations = excluded.annotations, state = excluded.state, value = excluded.value, active_at = excluded.active_at,
                  fired_at = excluded.fired_at, resolved_at = excluded.resolved_at, last_seen_at = excluded.last_seen_at,
                  last_notified_at = excluded.last_notified_at
                """).run()
        }
    }

    /// Forgets resolved alerts resolved before `cutoff`.
    /// Forgets one alert's state (a pending alert whose condition cleared).
    package func delete(organizationID: UUID, fingerprint: String) async throws {
        try await db.raw("DELETE FROM alert_states WHERE organization_id = \(bind: organizationID) AND fingerprint = \(bind: fingerprint)").run()
    }

    package func pruneResolved(before cutoff: Date) async throws {
        try await db.raw("DELETE FROM alert_states WHERE state = 'resolved' AND resolved_at < \(bind: cutoff)").run()
    }

    static func object(_ map: [String: String]) -> JSONValue { .object(map.mapValues(JSONValue.string)) }

    private func decodeState(_ row: any SQLRow) throws -> AlertStateRecord {
        let backend = db.backend
        func strings(_ column: String) throws -> [String: String] {
            (try row.decodeJSON(column: column, backend: backend)?.objectValue ?? [:]).compactMapValues(\.stringValue)
        }
        return AlertStateRecord(
            organizationID: try row.decode(column: "organization_id", as: UUID.self), fingerprint: try row.decode(column: "fingerprint", as: String.self),
            rule: try row.decode(column: "rule", as: String.self), labels: try strings("labels"), annotations: try strings("annotations"),
            state: try row.decode(column: "state", as: String.self), value: try row.decodeOptional(column: "value", as: Double.self),
            activeAt: try row.decode(column: "active_at", as: Date.self), firedAt: try row.decodeOptional(column: "fired_at", as: Date.self),
            resolvedAt: try row.decodeOptional(column: "resolved_at", as: Date.self), lastSeenAt: try row.decode(column: "last_seen_at", as: Date.self),
            lastNotifiedAt: try row.decodeOptional(column: "last_notified_at", as: Date.self)
        )
    }

    // MARK: Silences

    package func insert(_ s: AlertSilenceRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_silences (id, organization_id, matchers, starts_at, ends_at, comment, created_by, created_at)
            VALUES (\(bind: s.id), \(bind: s.organizationID), \(bind: db.jsonBind(["matchers": s.matchers])), \(bind: s.startsAt), \(bind: s.endsAt),
                    \(bind: s.comment), \(bind: s.createdBy), \(bind: s.createdAt))
            """).run()
    }

    /// Silences of `organizationID` (all when nil) not yet ended at `now`.
    package func silences(organizationID: UUID?, activeAt now: Date) async throws -> [AlertSilenceRecord] {
        let org = organizationID.map { SQLQueryString(" AND organization_id = \(bind: $0)") } ?? SQLQueryString("")
        let backend = db.backend
        return try await db.raw("SELECT * FROM alert_silences WHERE ends_at > \(bind: now)\(org) ORDER BY created_at DESC, id").all().map { row in
            AlertSilenceRecord(
                id: try row.decode(column: "id", as: UUID.self), organizationID: try row.decode(column: "organization_id", as: UUID.self),
                matchers: try row.decodeJSON(column: "matchers", backend: backend)?.objectValue?["matchers"] ?? [], startsAt: try row.decode(column: "starts_at", as: Date.self),
                endsAt: try row.decode(column: "ends_at", as: Date.self), comment: try row.decode(column: "comment", as: String.self),
                createdBy: try row.decode(column: "created_by", as: String.self), createdAt: try row.decode(column: "created_at", as: Date.self)
            )
        }
    }

    /// Serializes silence creation per organization for the rest of the transaction (PostgreSQL: a
    /// transaction-scoped advisory lock; SQLite's single writer does it already), so a count and the insert
    /// that follows it are not raced by another request or instance.
    package func lockSilences(organizationID: UUID) async throws {
        try await AdvisoryLock.alertSilences(organizationID).take(on: db)
    }

    /// How many of the organization's silences have not ended at `now` (started or still to start).
    package func activeSilenceCount(organizationID: UUID, at now: Date) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM alert_silences WHERE organization_id = \(bind: organizationID) AND ends_at > \(bind: now)")
            .first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Ends a silence now; false when there is no such silence in the organization.
    package func expireSilence(id: UUID, organizationID: UUID, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE alert_silences SET ends_at = \(bind: now) WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) AND ends_at > \(bind: now) RETURNING id
            """).first() != nil
    }

    // MARK: Receivers

    package func insert(_ r: AlertReceiverRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_receivers (id, organization_id, name, kind, config, sealed_secrets, created_at, updated_at)
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.name), \(bind: r.kind), \(bind: db.jsonBind(r.config)),
                    \(bind: db.jsonBind(r.sealedSecrets)), \(bind: r.createdAt), \(bind: r.updatedAt))
            """).run()
    }

    /// Receivers of `organizationID`, or of every organization when nil.
    package func receivers(organizationID: UUID?) async throws -> [AlertReceiverRecord] {
        let org = organizationID.map { SQLQueryString(" WHERE organization_id = \(bind: $0)") } ?? SQLQueryString("")
        let backend = db.backend
        return try await db.raw("SELECT * FROM alert_receivers\(org) ORDER BY created_at DESC, id").all().map { row in
            AlertReceiverRecord(
                id: try row.decode(column: "id", as: UUID.self), organizationID: try row.decode(column: "organization_id", as: UUID.self),
                name: try row.decode(column: "name", as: String.self), kind: try row.decode(column: "kind", as: String.self),
                config: try row.decodeJSON(column: "config", backend: backend) ?? [:], sealedSecrets: try row.decodeJSON(column: "sealed_secrets", backend: backend) ?? [:],
                createdAt: try row.decode(column: "created_at", as: Date.self), updatedAt: try row.decode(column: "updated_at", as: Date.self)
            )
        }
    }

    package func deleteReceiver(id: UUID, organizationID: UUID) async throws -> Bool {
        try await db.raw("DELETE FROM alert_receivers WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) RETURNING id").first() != nil
    }

    // MARK: Notifications

    package func insert(_ n: AlertNotificationRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_notifications (id, organization_id, receiver_id, fingerprint, status, attempts, delivered, http_status, error, created_at)
            VALUES (\(bind: n.id), \(bind: n.organizationID), \(bind: n.receiverID), \(bind: n.fingerprint), \(bind: n.status), \(bind: n.attempts),
                    \(bind: n.delivered), \(bind: n.httpStatus), \(bind: n.error), \(bind: n.createdAt))
            """).run()
    }

    package func notifications(organizationID: UUID, limit: Int) async throws -> [AlertNotificationRecord] {
        try await db.raw("SELECT * FROM alert_notifications WHERE organization_id = \(bind: organizationID) ORDER BY created_at DESC, id LIMIT \(bind: limit)").all().map { row in
            AlertNotificationRecord(
                id: try row.decode(column: "id", as: UUID.self), organizationID: try row.decode(column: "organization_id", as: UUID.self),
                receiverID: try row.decode(column: "receiver_id", as: UUID.self), fingerprint: try row.decode(column: "fingerprint", as: String.self),
                status: try row.decode(column: "status", as: String.self), attempts: try row.decode(column: "attempts", as: Int.self),
                delivered: try row.decode(column: "delivered", as: Bool.self), httpStatus: try row.decodeOptional(column: "http_status", as: Int.self),
                error: try row.decodeOptional(column: "error", as: String.self), createdAt: try row.decode(column: "created_at", as: Date.self)
            )
        }
    }
}

/// `ledger_verifications`: the last verification of each ledger (the CLI's and the periodic one's).
package struct LedgerVerificationStore: Sendable {
    let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func save(organizationID: UUID, passed: Bool, size: Int64, message: String?, at: Date) async throws {
        try await db.raw("""
            INSERT INTO ledger_verifications (organization_id, passed, size, message, verified_at)
            VALUES (\(bind: organizationID), \(bind: passed), \(bind: size), \(bind: message), \(bind: at))
            ON CONFLICT (organization_id) DO UPDATE SET passed = excluded.passed, size = excluded.size, message = excluded.message,
              verified_at = excluded.verified_at
            """).run()
    }

    /// The last result per organization (one organization when given).
    package func latest(organizationID: UUID?) async throws -> [UUID: (passed: Bool, size: Int64, message: String?, at: Date)] {
        let org = organizationID.map { SQLQueryString(" WHERE organization_id = \(bind: $0)") } ?? SQLQueryString("")
        var out: [UUID: (passed: Bool, size: Int64, message: String?, at: Date)] = [:]
        for row in try await db.raw("SELECT * FROM ledger_verifications\(org)").all() {
            out[try row.decode(column: "organization_id", as: UUID.self)] = (
                try row.decode(column: "passed", as: Bool.self), try row.decode(column: "size", as: Int64.self),
                try row.decodeOptional(column: "message", as: String.self), try row.decode(column: "verified_at", as: Date.self)
            )
        }
        return out
    }
}
