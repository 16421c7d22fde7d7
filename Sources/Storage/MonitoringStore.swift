public import Foundation
public import PortalCore
import SQLKit

/// One stored rollup: an integration's activity over a minute (resolution 60) or an hour (3600), as
/// counted by one service instance.
public struct MetricRollupRow: Sendable {
    public var organizationID: UUID
    public var integrationID: UUID
    public var resolution: Int
    /// Unix seconds of the bucket's start.
    public var bucketStart: Int64
    public var instanceID: String
    /// `ActivityStats`' encoded form.
    public var stats: String

    public init(organizationID: UUID, integrationID: UUID, resolution: Int, bucketStart: Int64, instanceID: String, stats: String) {
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.resolution = resolution
        self.bucketStart = bucketStart
        self.instanceID = instanceID
        self.stats = stats
    }
}

/// `metric_rollups` and `service_leases`.
public struct MetricRollupStore: Sendable {
    let db: any SQLDatabase

    public init(_ transaction: Transaction) { db = transaction.sql }

    /// Writes rows, replacing a row of the same bucket and instance (an instance rewrites its hour as it
    /// fills).
    public func upsert(_ rows: [MetricRollupRow]) async throws {
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
    public func rows(organizationID: UUID, integrationID: UUID? = nil, resolution: Int, from: Int64, to: Int64) async throws -> [(integrationID: UUID, stats: String)] {
        let filter = integrationID.map { SQLQueryString(" AND integration_id = \(bind: $0)") } ?? SQLQueryString("")
        return try await db.raw("""
            SELECT integration_id, stats FROM metric_rollups
            WHERE organization_id = \(bind: organizationID) AND resolution = \(bind: resolution)
              AND bucket_start >= \(bind: from) AND bucket_start < \(bind: to)\(filter)
            """).all().map { (try $0.decode(column: "integration_id", as: UUID.self), try $0.decode(column: "stats", as: String.self)) }
    }

    /// Deletes rows of `resolution` that started before `cutoff`; returns how many.
    @discardableResult
    public func prune(resolution: Int, before cutoff: Int64) async throws -> Int {
        try await db.raw("DELETE FROM metric_rollups WHERE resolution = \(bind: resolution) AND bucket_start < \(bind: cutoff) RETURNING 1 AS gone").all().count
    }
}

/// `service_leases`: which instance runs a singleton loop (the alert evaluator) for now.
public struct ServiceLeaseStore: Sendable {
    let db: any SQLDatabase

    public init(_ transaction: Transaction) { db = transaction.sql }

    /// Takes or renews the lease `name` for `owner` until `until`, unless another owner holds it past `now`.
    public func claim(_ name: String, owner: String, until: Date, now: Date) async throws -> Bool {
        try await db.raw("""
            INSERT INTO service_leases (name, owner, lease_until) VALUES (\(bind: name), \(bind: owner), \(bind: until))
            ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
            WHERE service_leases.owner = excluded.owner OR service_leases.lease_until < \(bind: now)
            RETURNING owner
            """).first() != nil
    }
}

/// A row of `alert_states`: one alert instance (a rule and its labels) of an organization.
public struct AlertStateRecord: Sendable, Equatable {
    public var organizationID: UUID
    public var fingerprint: String
    public var rule: String
    public var labels: [String: String]
    public var annotations: [String: String]
    /// `pending`, `firing` or `resolved`.
    public var state: String
    public var value: Double?
    public var activeAt: Date
    public var firedAt: Date?
    public var resolvedAt: Date?
    public var lastSeenAt: Date
    public var lastNotifiedAt: Date?

    public init(
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

public struct AlertSilenceRecord: Sendable, Equatable {
    public var id: UUID
    public var organizationID: UUID
    /// `[{name, value, isRegex, isEqual}]`, as Alertmanager's (stored as `{"matchers": [...]}`: a JSON column
    /// holds an object, since PostgreSQL's encoder would bind a bare array as an SQL array).
    public var matchers: JSONValue
    public var startsAt: Date
    public var endsAt: Date
    public var comment: String
    public var createdBy: String
    public var createdAt: Date

    public init(id: UUID, organizationID: UUID, matchers: JSONValue, startsAt: Date, endsAt: Date, comment: String, createdBy: String, createdAt: Date) {
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

public struct AlertReceiverRecord: Sendable, Equatable {
    public var id: UUID
    public var organizationID: UUID
    public var name: String
    /// `webhook`, `slack`, `teams` or `sendgrid`.
    public var kind: String
    /// Settings that are not secret (recipients, title).
    public var config: JSONValue
    /// The secret settings (URL, signing secret, API key), sealed by the vault.
    public var sealedSecrets: JSONValue
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: UUID, organizationID: UUID, name: String, kind: String, config: JSONValue, sealedSecrets: JSONValue, createdAt: Date, updatedAt: Date) {
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

public struct AlertNotificationRecord: Sendable, Equatable {
    public var id: UUID
    public var organizationID: UUID
    public var receiverID: UUID
    public var fingerprint: String
    /// `firing` or `resolved`.
    public var status: String
    public var attempts: Int
    public var delivered: Bool
    public var httpStatus: Int?
    public var error: String?
    public var createdAt: Date

    public init(id: UUID, organizationID: UUID, receiverID: UUID, fingerprint: String, status: String, attempts: Int, delivered: Bool, httpStatus: Int?, error: String?, createdAt: Date) {
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
public struct AlertStore: Sendable {
    let db: any SQLDatabase

    public init(_ transaction: Transaction) { db = transaction.sql }

    // MARK: States

    /// Alert states of one organization, or of all when nil; resolved ones only when seen since `resolvedSince`.
    public func states(organizationID: UUID?, resolvedSince: Date) async throws -> [AlertStateRecord] {
        let org = organizationID.map { SQLQueryString(" AND organization_id = \(bind: $0)") } ?? SQLQueryString("")
        return try await db.raw("""
            SELECT * FROM alert_states WHERE (state <> 'resolved' OR resolved_at >= \(bind: resolvedSince))\(org)
            ORDER BY active_at DESC, fingerprint
            """).all().map(decodeState)
    }

    public func upsert(_ states: [AlertStateRecord]) async throws {
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
    public func delete(organizationID: UUID, fingerprint: String) async throws {
        try await db.raw("DELETE FROM alert_states WHERE organization_id = \(bind: organizationID) AND fingerprint = \(bind: fingerprint)").run()
    }

    public func pruneResolved(before cutoff: Date) async throws {
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

    public func insert(_ s: AlertSilenceRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_silences (id, organization_id, matchers, starts_at, ends_at, comment, created_by, created_at)
            VALUES (\(bind: s.id), \(bind: s.organizationID), \(bind: db.jsonBind(["matchers": s.matchers])), \(bind: s.startsAt), \(bind: s.endsAt),
                    \(bind: s.comment), \(bind: s.createdBy), \(bind: s.createdAt))
            """).run()
    }

    /// Silences of `organizationID` (all when nil) not yet ended at `now`.
    public func silences(organizationID: UUID?, activeAt now: Date) async throws -> [AlertSilenceRecord] {
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
    public func lockSilences(organizationID: UUID) async throws {
        try await AdvisoryLock.alertSilences(organizationID).take(on: db)
    }

    /// How many of the organization's silences have not ended at `now` (started or still to start).
    public func activeSilenceCount(organizationID: UUID, at now: Date) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM alert_silences WHERE organization_id = \(bind: organizationID) AND ends_at > \(bind: now)")
            .first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Ends a silence now; false when there is no such silence in the organization.
    public func expireSilence(id: UUID, organizationID: UUID, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE alert_silences SET ends_at = \(bind: now) WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) AND ends_at > \(bind: now) RETURNING id
            """).first() != nil
    }

    // MARK: Receivers

    public func insert(_ r: AlertReceiverRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_receivers (id, organization_id, name, kind, config, sealed_secrets, created_at, updated_at)
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.name), \(bind: r.kind), \(bind: db.jsonBind(r.config)),
                    \(bind: db.jsonBind(r.sealedSecrets)), \(bind: r.createdAt), \(bind: r.updatedAt))
            """).run()
    }

    /// Receivers of `organizationID`, or of every organization when nil.
    public func receivers(organizationID: UUID?) async throws -> [AlertReceiverRecord] {
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

    public func deleteReceiver(id: UUID, organizationID: UUID) async throws -> Bool {
        try await db.raw("DELETE FROM alert_receivers WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) RETURNING id").first() != nil
    }

    // MARK: Notifications

    public func insert(_ n: AlertNotificationRecord) async throws {
        try await db.raw("""
            INSERT INTO alert_notifications (id, organization_id, receiver_id, fingerprint, status, attempts, delivered, http_status, error, created_at)
            VALUES (\(bind: n.id), \(bind: n.organizationID), \(bind: n.receiverID), \(bind: n.fingerprint), \(bind: n.status), \(bind: n.attempts),
                    \(bind: n.delivered), \(bind: n.httpStatus), \(bind: n.error), \(bind: n.createdAt))
            """).run()
    }

    public func notifications(organizationID: UUID, limit: Int) async throws -> [AlertNotificationRecord] {
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
public struct LedgerVerificationStore: Sendable {
    let db: any SQLDatabase

    public init(_ transaction: Transaction) { db = transaction.sql }

    public func save(organizationID: UUID, passed: Bool, size: Int64, message: String?, at: Date) async throws {
        try await db.raw("""
            INSERT INTO ledger_verifications (organization_id, passed, size, message, verified_at)
            VALUES (\(bind: organizationID), \(bind: passed), \(bind: size), \(bind: message), \(bind: at))
            ON CONFLICT (organization_id) DO UPDATE SET passed = excluded.passed, size = excluded.size, message = excluded.message,
              verified_at = excluded.verified_at
            """).run()
    }

    /// The last result per organization (one organization when given).
    public func latest(organizationID: UUID?) async throws -> [UUID: (passed: Bool, size: Int64, message: String?, at: Date)] {
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
