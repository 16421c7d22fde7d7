package import Foundation
package import PortalCore
import SQLKit

/// A registered webhook receiver: a row of `webhook_endpoints`. Served at `/webhooks/{org slug}/{name}`.
package struct WebhookEndpointRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var name: String
    package var scheme: String
    package var events: [String]
    /// The seed's WebhookConfig without its secret: signatureHeader, signatureMethod, retryPolicy, and the
    /// scheme's options.
    package var config: JSONValue
    /// The vault envelope of the secret (and, during a rotation's overlap, the previous one).
    package var sealedSecret: JSONValue
    package var createdBy: UUID?
    package var createdAt: Date
    package var updatedAt: Date
    package var deletedAt: Date?

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, name: String, scheme: String, events: [String], config: JSONValue,
        sealedSecret: JSONValue, createdBy: UUID?, createdAt: Date, updatedAt: Date, deletedAt: Date? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.name = name
        self.scheme = scheme
        self.events = events
        self.config = config
        self.sealedSecret = sealedSecret
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.deletedAt = deletedAt
    }
}

/// The `webhook_endpoints` table.
package struct WebhookEndpointStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    static let columns = "id, organization_id, integration_id, name, scheme, events, config, sealed_secret, created_by, created_at, updated_at, deleted_at"

    package func insert(_ r: WebhookEndpointRecord) async throws {
        try await db.raw("""
            INSERT INTO webhook_endpoints (\(unsafeRaw: Self.columns))
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.name), \(bind: r.scheme),
                    \(bind: db.jsonBind(Self.eventsDocument(r.events))), \(bind: db.jsonBind(r.config)), \(bind: db.jsonBind(r.sealedSecret)),
                    \(bind: r.createdBy), \(bind: r.createdAt), \(bind: r.updatedAt), \(bind: r.deletedAt))
            """).run()
    }

    /// JSON columns hold objects (docs/decisions.md): the event types are `{"types": [...]}`.
    static func eventsDocument(_ events: [String]) -> JSONValue { ["types": .array(events.map(JSONValue.string))] }

    package func update(_ r: WebhookEndpointRecord) async throws {
        try await db.raw("""
            UPDATE webhook_endpoints SET name = \(bind: r.name), scheme = \(bind: r.scheme), events = \(bind: db.jsonBind(Self.eventsDocument(r.events))),
              config = \(bind: db.jsonBind(r.config)), sealed_secret = \(bind: db.jsonBind(r.sealedSecret)), updated_at = \(bind: r.updatedAt),
              deleted_at = \(bind: r.deletedAt)
            WHERE id = \(bind: r.id) AND organization_id = \(bind: r.organizationID)
            """).run()
    }

    package func find(id: UUID, organizationID: UUID) async throws -> WebhookEndpointRecord? {
        try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM webhook_endpoints
            WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) AND deleted_at IS NULL
            """).first().map(decode)
    }

    /// The live endpoint named `name` in the organization `slug` (the receive path).
    package func find(slug: String, name: String) async throws -> WebhookEndpointRecord? {
        try await db.raw("""
            SELECT \(unsafeRaw: Self.columns.split(separator: ",").map { "e." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))
            FROM webhook_endpoints e JOIN organizations o ON o.id = e.organization_id
            WHERE o.slug = \(bind: slug) AND e.name = \(bind: name) AND e.deleted_at IS NULL
            """).first().map(decode)
    }

    package func list(organizationID: UUID, integrationID: UUID) async throws -> [WebhookEndpointRecord] {
        try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM webhook_endpoints
            WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID) AND deleted_at IS NULL ORDER BY id
            """).all().map(decode)
    }

    /// Every live receive path, `slug/name`: the receiver's in-memory index.
    package func livePaths() async throws -> Set<String> {
        Set(try await db.raw("""
            SELECT o.slug AS slug, e.name AS name FROM webhook_endpoints e JOIN organizations o ON o.id = e.organization_id
            WHERE e.deleted_at IS NULL
            """).all().map { "\(try $0.decode(column: "slug", as: String.self))/\(try $0.decode(column: "name", as: String.self))" })
    }

    private func decode(_ row: any SQLRow) throws -> WebhookEndpointRecord {
        let backend = db.backend
        return WebhookEndpointRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            name: try row.decode(column: "name", as: String.self),
            scheme: try row.decode(column: "scheme", as: String.self),
            events: (try row.decodeJSON(column: "events", backend: backend)?.objectValue?["types"]?.arrayValue ?? []).compactMap(\.stringValue),
            config: try row.decodeJSON(column: "config", backend: backend) ?? [:],
            sealedSecret: try row.decodeJSON(column: "sealed_secret", backend: backend) ?? [:],
            createdBy: try row.decodeOptional(column: "created_by", as: UUID.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self),
            deletedAt: try row.decodeOptional(column: "deleted_at", as: Date.self)
        )
    }
}

/// A received event's place in the queue: `pending` until a worker takes it, `retrying` after a failed
/// attempt with attempts left, then `processed`, or `failed` (the dead letter, retried only by hand).
package enum WebhookEventStatus: String, Sendable, CaseIterable, Codable {
    case pending, retrying, processed, failed
}

/// One received webhook: a row of `webhook_events` (the seed's columns, plus dedup and queue columns).
package struct WebhookEventRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var endpointID: UUID
    package var eventType: String
    /// The raw body, sealed by the vault.
    package var payload: JSONValue
    package var signature: String?
    package var status: WebhookEventStatus
    package var retryCount: Int
    package var attempts: Int
    package var errorMessage: String?
    package var note: String?
    package var processedAt: Date?
    package var createdAt: Date
    package var providerEventID: String?
    package var dedupKey: String
    /// The headers a re-verification needs.
    package var headers: JSONValue
    package var bodyDigest: String
    package var availableAt: Date
    package var leaseOwner: String?
    package var leaseUntil: Date?
    /// The body's SHA-256 (hex) when the endpoint's scheme signs no timestamp: unique per endpoint, so a
    /// captured delivery sent again (with any new unsigned id) is declined as a replay. Nil otherwise.
    package var replayDigest: String?

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, endpointID: UUID, eventType: String, payload: JSONValue, signature: String?,
        status: WebhookEventStatus = .pending, retryCount: Int = 0, attempts: Int = 0, errorMessage: String? = nil, note: String? = nil,
        processedAt: Date? = nil, createdAt: Date, providerEventID: String?, dedupKey: String, headers: JSONValue, bodyDigest: String,
        availableAt: Date, leaseOwner: String? = nil, leaseUntil: Date? = nil, replayDigest: String? = nil
    ) {
        self.replayDigest = replayDigest
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.endpointID = endpointID
        self.eventType = eventType
        self.payload = payload
        self.signature = signature
        self.status = status
        self.retryCount = retryCount
        self.attempts = attempts
        self.errorMessage = errorMessage
        self.note = note
        self.processedAt = processedAt
        self.createdAt = createdAt
        self.providerEventID = providerEventID
        self.dedupKey = dedupKey
        self.headers = headers
        self.bodyDigest = bodyDigest
        self.availableAt = availableAt
        self.leaseOwner = leaseOwner
        self.leaseUntil = leaseUntil
    }
}

/// The `webhook_events` table: the received events and the durable queue over them.
package struct WebhookEventStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    static let columns = """
        id, organization_id, integration_id, endpoint_id, event_type, payload, signature, status, retry_count, attempts, error_message, note, \
        processed_at, created_at, provider_event_id, dedup_key, headers, body_digest, available_at, lease_owner, lease_until, replay_digest
        """

    /// Releases every event's lease (a single-process SQLite deployment at start: leases left are a
    /// crashed predecessor's).
    package func releaseAllLeases() async throws {
        try await db.raw("UPDATE webhook_events SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL").run()
    }

    /// Whether the endpoint stored a delivery with this body digest since `since` (a replay of a body
    /// without an event id).
    package func hasBody(endpointID: UUID, digest: String, since: Date) async throws -> Bool {
        try await db.raw("""
            SELECT 1 AS found FROM webhook_events WHERE endpoint_id = \(bind: endpointID) AND body_digest = \(bind: digest) AND created_at >= \(bind: since)
            """).first() != nil
    }

    /// Inserts events; one whose (endpoint, dedup key) or (endpoint, replay digest) is already stored is
    /// skipped (a replay). Returns the ids of the events inserted.
    @discardableResult
    package func insert(_ records: [WebhookEventRecord]) async throws -> Set<UUID> {
        var inserted = Set<UUID>()
        for start in stride(from: 0, to: records.count, by: 64) {
            let values = records[start..<min(start + 64, records.count)].map { r -> SQLQueryString in
                """
                (\(bind: r.id), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.endpointID), \(bind: String(r.eventType.prefix(100))), \
                \(bind: db.jsonBind(r.payload)), \(bind: r.signature.map { String($0.prefix(255)) }), \(bind: r.status.rawValue), \(bind: r.retryCount), \
                \(bind: r.attempts), \(bind: r.errorMessage), \(bind: r.note), \(bind: r.processedAt), \(bind: r.createdAt), \(bind: r.providerEventID), \
                \(bind: r.dedupKey), \(bind: db.jsonBind(r.headers)), \(bind: r.bodyDigest), \(bind: r.availableAt), \(bind: r.leaseOwner), \(bind: r.leaseUntil), \
                \(bind: r.replayDigest))
                """
            }
            for row in try await db.raw("INSERT INTO webhook_events (\(unsafeRaw: Self.columns)) VALUES "
                + values.joined(separator: ", ") + " ON CONFLICT DO NOTHING RETURNING id").all() {
                inserted.insert(try row.decode(column: "id", as: UUID.self))
            }
        }
        return inserted
    }

    package func find(id: UUID, organizationID: UUID) async throws -> WebhookEventRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM webhook_events WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)")
            .first().map(decode)
    }

    /// Leases up to `limit` due events to `owner` until `until`: pending or retrying, available, and not
    /// leased or with an expired lease (a crashed worker's). PostgreSQL skips rows other workers hold
    /// (`FOR UPDATE SKIP LOCKED`); SQLite's single writer makes the update atomic by itself.
    package func lease(owner: String, now: Date, until: Date, limit: Int) async throws -> [WebhookEventRecord] {
        let skipLocked = db.backend == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try await db.raw("""
            UPDATE webhook_events SET lease_owner = \(bind: owner), lease_until = \(bind: until), attempts = attempts + 1
            WHERE id IN (
              SELECT id FROM webhook_events
              WHERE status IN ('pending', 'retrying') AND available_at <= \(bind: now) AND (lease_until IS NULL OR lease_until < \(bind: now))
              ORDER BY available_at, id LIMIT \(bind: limit)\(unsafeRaw: skipLocked)
            )
            RETURNING \(unsafeRaw: Self.columns)
            """).all().map(decode)
    }

    /// Of `ids`, those whose lease `owner` still holds, locked for the caller's transaction on PostgreSQL
    /// (so the lease cannot pass to another worker before the outcome commits).
    package func held(ids: [UUID], owner: String) async throws -> Set<UUID> {
        guard !ids.isEmpty else { return [] }
        let list = ids.map { id -> SQLQueryString in "\(bind: id)" }.joined(separator: ", ")
        let lock = db.backend == .postgres ? " FOR UPDATE" : ""
        return Set(try await db.raw("SELECT id FROM webhook_events WHERE lease_owner = \(bind: owner) AND id IN (" + list + ")\(unsafeRaw: lock)")
            .all().map { try $0.decode(column: "id", as: UUID.self) })
    }

    /// Marks events this worker holds processed, with one note for all of them.
    package func finishProcessed(ids: [UUID], owner: String, note: String, at now: Date) async throws {
        guard !ids.isEmpty else { return }
        let list = ids.map { id -> SQLQueryString in "\(bind: id)" }.joined(separator: ", ")
        try await db.raw("""
            UPDATE webhook_events SET status = 'processed', error_message = NULL, note = \(bind: note), processed_at = \(bind: now),
              lease_owner = NULL, lease_until = NULL
            WHERE lease_owner = \(bind: owner) AND id IN (
            """ + list + ")").run()
    }

    /// Records a processing outcome for an event this worker holds; false if the lease was lost.
    package func finish(
        id: UUID, owner: String, status: WebhookEventStatus, error: String?, note: String?, retryCount: Int, availableAt: Date, processedAt: Date?
    ) async throws -> Bool {
        try await db.raw("""
            UPDATE webhook_events SET status = \(bind: status.rawValue), error_message = \(bind: error.map { String($0.prefix(2000)) }), note = \(bind: note),
              retry_count = \(bind: retryCount), available_at = \(bind: availableAt), processed_at = \(bind: processedAt),
              lease_owner = NULL, lease_until = NULL
            WHERE id = \(bind: id) AND lease_owner = \(bind: owner)
            RETURNING id
            """).first() != nil
    }

    /// Puts failed (dead-lettered) events back in the queue; returns the ids requeued.
    package func requeue(ids: [UUID], organizationID: UUID, at now: Date) async throws -> [UUID] {
        guard !ids.isEmpty else { return [] }
        let list = ids.map { id -> SQLQueryString in "\(bind: id)" }.joined(separator: ", ")
        return try await db.raw("""
            UPDATE webhook_events SET status = 'retrying', available_at = \(bind: now), error_message = NULL, lease_owner = NULL, lease_until = NULL
            WHERE organization_id = \(bind: organizationID) AND status = 'failed' AND id IN (
            """ + list + ") RETURNING id").all().map { try $0.decode(column: "id", as: UUID.self) }
    }

    /// The integration's events, newest first, optionally of one status, before `cursor`.
    package func list(organizationID: UUID, integrationID: UUID, status: WebhookEventStatus?, before cursor: UUID?, limit: Int) async throws -> [WebhookEventRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.columns) FROM webhook_events WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID)")
        if let status { query.appendInterpolation(" AND status = \(bind: status.rawValue)" as SQLQueryString) }
        if let cursor { query.appendInterpolation(" AND id < \(bind: cursor)" as SQLQueryString) }
        query.appendInterpolation(" ORDER BY id DESC LIMIT \(bind: limit)" as SQLQueryString)
        return try await db.raw(query).all().map(decode)
    }

    /// Ids of the organization's failed events matching a filter (bulk retry).
    package func failedIDs(organizationID: UUID, integrationID: UUID?, eventType: String?, limit: Int) async throws -> [UUID] {
        var query = SQLQueryString("SELECT id FROM webhook_events WHERE organization_id = \(bind: organizationID) AND status = 'failed'")
        if let integrationID { query.appendInterpolation(" AND integration_id = \(bind: integrationID)" as SQLQueryString) }
        if let eventType { query.appendInterpolation(" AND event_type = \(bind: eventType)" as SQLQueryString) }
        query.appendInterpolation(" ORDER BY id LIMIT \(bind: limit)" as SQLQueryString)
        return try await db.raw(query).all().map { try $0.decode(column: "id", as: UUID.self) }
    }

    private func decode(_ row: any SQLRow) throws -> WebhookEventRecord {
        let backend = db.backend
        return WebhookEventRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            endpointID: try row.decode(column: "endpoint_id", as: UUID.self),
            eventType: try row.decode(column: "event_type", as: String.self),
            payload: try row.decodeJSON(column: "payload", backend: backend) ?? [:],
            signature: try row.decodeOptional(column: "signature", as: String.self),
            status: try row.decodeCase(column: "status", as: WebhookEventStatus.self),
            retryCount: try row.decode(column: "retry_count", as: Int.self),
            attempts: try row.decode(column: "attempts", as: Int.self),
            errorMessage: try row.decodeOptional(column: "error_message", as: String.self),
            note: try row.decodeOptional(column: "note", as: String.self),
            processedAt: try row.decodeOptional(column: "processed_at", as: Date.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            providerEventID: try row.decodeOptional(column: "provider_event_id", as: String.self),
            dedupKey: try row.decode(column: "dedup_key", as: String.self),
            headers: try row.decodeJSON(column: "headers", backend: backend) ?? [:],
            bodyDigest: try row.decode(column: "body_digest", as: String.self),
            availableAt: try row.decode(column: "available_at", as: Date.self),
            leaseOwner: try row.decodeOptional(column: "lease_owner", as: String.self),
            leaseUntil: try row.decodeOptional(column: "lease_until", as: Date.self),
            replayDigest: try row.decodeOptional(column: "replay_digest", as: String.self)
        )
    }

    /// The stored event of `endpointID` with this replay digest (the body's SHA-256), if any: its id and
    /// dedup key (a different key than the new delivery's means a replay under a new id).
    /// The stored event a delivery with `dedupKey` duplicates, if any.
    package func duplicated(endpointID: UUID, dedupKey: String) async throws -> UUID? {
        try await db.raw("""
            SELECT id FROM webhook_events WHERE endpoint_id = \(bind: endpointID) AND dedup_key = \(bind: dedupKey)
            """).first()?.decode(column: "id", as: UUID.self)
    }

    package func replayed(endpointID: UUID, replayDigest: String) async throws -> (id: UUID, dedupKey: String)? {
        guard let row = try await db.raw("""
            SELECT id, dedup_key FROM webhook_events WHERE endpoint_id = \(bind: endpointID) AND replay_digest = \(bind: replayDigest)
            """).first() else { return nil }
        return (try row.decode(column: "id", as: UUID.self), try row.decode(column: "dedup_key", as: String.self))
    }
}

/// A record of the integration's records store (`sync_records`): what `user.*` webhooks and syncs upsert.
package struct SyncRecordStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Inserts or replaces the record's data; `source` says what wrote it (`webhook`, `sync`).
    package func upsert(
        organizationID: UUID, integrationID: UUID, entity: String, recordID: String, data: JSONValue, source: String, sourceEventID: String?, at now: Date
    ) async throws {
        try await db.raw("""
            INSERT INTO sync_records (organization_id, integration_id, entity, record_id, data, source, source_event_id, created_at, updated_at, deleted_at)
            VALUES (\(bind: organizationID), \(bind: integrationID), \(bind: entity), \(bind: recordID), \(bind: db.jsonBind(data)), \(bind: source),
                    \(bind: sourceEventID), \(bind: now), \(bind: now), NULL)
            ON CONFLICT (integration_id, entity, record_id) DO UPDATE SET
              data = excluded.data, source = excluded.source, source_event_id = excluded.source_event_id, updated_at = excluded.updated_at, deleted_at = NULL
            """).run()
    }

    package func find(integrationID: UUID, entity: String, recordID: String) async throws -> (data: JSONValue, sourceEventID: String?)? {
        guard let row = try await db.raw("""
            SELECT data, source_event_id FROM sync_records WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND record_id = \(bind: recordID)
            """).first() else { return nil }
        return (try row.decodeJSON(column: "data", backend: db.backend) ?? .null, try row.decodeOptional(column: "source_event_id", as: String.self))
    }

    package func count(integrationID: UUID, entity: String) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM sync_records WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND deleted_at IS NULL")
            .first()?.decode(column: "n", as: Int.self) ?? 0
    }
}
