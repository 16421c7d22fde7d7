package import Foundation
package import PortalCore
import SQLKit

/// How much a sync job fetches: everything (and marks what disappeared), or what changed since the last mark.
package enum SyncType: String, Sendable, CaseIterable, Codable {
    case full, incremental
}

/// A sync job's state: `running` until it ends `completed`, `failed` or `cancelled`.
package enum SyncJobStatus: String, Sendable, CaseIterable, Codable {
    case running, completed, failed, cancelled
}

/// A sync job: a row of `sync_jobs` (the seed's columns, plus entity, counts, checkpoint and lease).
package struct SyncJobRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var entity: String
    package var syncType: SyncType
    package var status: SyncJobStatus
    package var recordsProcessed: Int
    package var recordsTotal: Int?
    package var errorMessage: String?
    package var counts: JSONValue
    /// Where a resumed job starts: the next page, the high-water mark so far, the digest of record ids.
    package var checkpoint: JSONValue
    package var cancelRequested: Bool
    package var requestedBy: String?
    /// The high-water mark an incremental job started from.
    package var sinceMark: String?
    package var startedAt: Date
    package var completedAt: Date?

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, entity: String, syncType: SyncType, status: SyncJobStatus = .running, recordsProcessed: Int = 0,
        recordsTotal: Int? = nil, errorMessage: String? = nil, counts: JSONValue = [:], checkpoint: JSONValue = [:], cancelRequested: Bool = false,
        requestedBy: String?, sinceMark: String?, startedAt: Date, completedAt: Date? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.entity = entity
        self.syncType = syncType
        self.status = status
        self.recordsProcessed = recordsProcessed
        self.recordsTotal = recordsTotal
        self.errorMessage = errorMessage
        self.counts = counts
        self.checkpoint = checkpoint
        self.cancelRequested = cancelRequested
        self.requestedBy = requestedBy
        self.sinceMark = sinceMark
        self.startedAt = startedAt
        self.completedAt = completedAt
    }
}

/// A synced record as the engine compares it: the portal's data, the provider's version at the last sync,
/// and whether the portal changed it since.
package struct SyncedRecord: Sendable, Equatable {
    package var recordID: String
    package var data: JSONValue
    package var sourceData: JSONValue?
    package var localModifiedAt: Date?
    package var deletedAt: Date?
    package var updatedAt: Date
    package var createdAt: Date
    package var source: String
}

/// A conflict filed for review: a row of `sync_conflicts`.
package struct SyncConflictRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var entity: String
    package var recordID: String
    package var jobID: UUID?
    package var source: JSONValue
    package var destination: JSONValue
    package var base: JSONValue?
    package var flagged: [String]
    package var status: String
    package var resolution: JSONValue?
    package var resolvedBy: String?
    package var createdAt: Date
    package var resolvedAt: Date?

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, entity: String, recordID: String, jobID: UUID?, source: JSONValue, destination: JSONValue,
        base: JSONValue?, flagged: [String], status: String = "open", resolution: JSONValue? = nil, resolvedBy: String? = nil, createdAt: Date,
        resolvedAt: Date? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.entity = entity
        self.recordID = recordID
        self.jobID = jobID
        self.source = source
        self.destination = destination
        self.base = base
        self.flagged = flagged
        self.status = status
        self.resolution = resolution
        self.resolvedBy = resolvedBy
        self.createdAt = createdAt
        self.resolvedAt = resolvedAt
    }
}

/// The sync tables: `sync_jobs`, `sync_records` (as the engine writes them), `sync_conflicts`,
/// `sync_cursors` and `sync_schedules`.
package struct SyncStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    static let jobColumns = """
        id, organization_id, integration_id, entity, sync_type, status, records_processed, records_total, error_message, counts, checkpoint, \
        cancel_requested, requested_by, since_mark, started_at, completed_at
        """

    // MARK: Jobs

    /// Ends the leases of running jobs not owned by `owner` (a single-process SQLite deployment at start:
    /// they are a stopped predecessor's, resumed now rather than when their leases run out).
    package func expireLeases(notOwnedBy owner: String) async throws {
        try await db.raw("UPDATE sync_jobs SET lease_until = NULL WHERE status = 'running' AND lease_owner <> \(bind: owner)").run()
    }

    /// The running job of an integration's entity, if any.
    package func runningJob(integrationID: UUID, entity: String) async throws -> SyncJobRecord? {
        try await db.raw("""
            SELECT \(unsafeRaw: Self.jobColumns) FROM sync_jobs WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND status = 'running'
            """).first().map(decodeJob)
    }

    package func insertJob(_ j: SyncJobRecord, leaseOwner: String, leaseUntil: Date) async throws {
        try await db.raw("""
            INSERT INTO sync_jobs (\(unsafeRaw: Self.jobColumns), lease_owner, lease_until)
            VALUES (\(bind: j.id), \(bind: j.organizationID), \(bind: j.integrationID), \(bind: j.entity), \(bind: j.syncType.rawValue), \(bind: j.status.rawValue),
                    \(bind: j.recordsProcessed), \(bind: j.recordsTotal), \(bind: j.errorMessage), \(bind: db.jsonBind(j.counts)), \(bind: db.jsonBind(j.checkpoint)),
                    \(bind: j.cancelRequested), \(bind: j.requestedBy), \(bind: j.sinceMark), \(bind: j.startedAt), \(bind: j.completedAt),
                    \(bind: leaseOwner), \(bind: leaseUntil))
            """).run()
    }

    package func job(id: UUID, organizationID: UUID) async throws -> SyncJobRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.jobColumns) FROM sync_jobs WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)")
            .first().map(decodeJob)
    }

    /// The integration's jobs, newest first, before `cursor`.
    package func jobs(organizationID: UUID, integrationID: UUID, before cursor: UUID?, limit: Int) async throws -> [SyncJobRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.jobColumns) FROM sync_jobs WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID)")
        if let cursor { query.appendInterpolation(" AND id < \(bind: cursor)" as SQLQueryString) }
        query.appendInterpolation(" ORDER BY id DESC LIMIT \(bind: limit)" as SQLQueryString)
        return try await db.raw(query).all().map(decodeJob)
    }

    /// Records a committed page: progress, counts and where to resume; renews the lease. False if `owner`
    /// no longer holds the job (its lease expired and another instance took it).
    package func saveProgress(
        jobID: UUID, owner: String, processed: Int, total: Int?, counts: JSONValue, checkpoint: JSONValue, leaseUntil: Date
    ) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_jobs SET records_processed = \(bind: processed), records_total = \(bind: total), counts = \(bind: db.jsonBind(counts)),
              checkpoint = \(bind: db.jsonBind(checkpoint)), lease_until = \(bind: leaseUntil)
            WHERE id = \(bind: jobID) AND lease_owner = \(bind: owner) AND status = 'running'
            RETURNING id
            """).first() != nil
    }

    /// Extends the lease of a running job this owner holds; false if it no longer holds it.
    package func renewLease(jobID: UUID, owner: String, until: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_jobs SET lease_until = \(bind: until)
            WHERE id = \(bind: jobID) AND lease_owner = \(bind: owner) AND status = 'running'
            RETURNING id
            """).first() != nil
    }

    /// Ends a job this owner holds.
    package func finishJob(
        jobID: UUID, owner: String, status: SyncJobStatus, error: String?, processed: Int, total: Int?, counts: JSONValue, at now: Date
    ) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_jobs SET status = \(bind: status.rawValue), error_message = \(bind: error.map { String($0.prefix(2000)) }), records_processed = \(bind: processed),
              records_total = \(bind: total), counts = \(bind: db.jsonBind(counts)), completed_at = \(bind: now), lease_owner = NULL, lease_until = NULL
            WHERE id = \(bind: jobID) AND lease_owner = \(bind: owner) AND status = 'running'
            RETURNING id
            """).first() != nil
    }

    /// Asks a running job to stop after its current page; false if it is not running.
    package func requestCancel(jobID: UUID, organizationID: UUID) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_jobs SET cancel_requested = \(bind: true)
            WHERE id = \(bind: jobID) AND organization_id = \(bind: organizationID) AND status = 'running'
            RETURNING id
            """).first() != nil
    }

    package func cancelRequested(jobID: UUID) async throws -> Bool {
        try await db.raw("SELECT cancel_requested FROM sync_jobs WHERE id = \(bind: jobID)").first()?.decode(column: "cancel_requested", as: Bool.self) ?? false
    }

    /// Takes over running jobs whose lease expired (a crashed instance's), for `owner` until `until`.
    package func takeAbandoned(owner: String, now: Date, until: Date, limit: Int) async throws -> [SyncJobRecord] {
        let skipLocked = db.backend == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try await db.raw("""
            UPDATE sync_jobs SET lease_owner = \(bind: owner), lease_until = \(bind: until)
            WHERE id IN (
              SELECT id FROM sync_jobs WHERE status = 'running' AND (lease_until IS NULL OR lease_until < \(bind: now))
              ORDER BY id LIMIT \(bind: limit)\(unsafeRaw: skipLocked)
            )
            RETURNING \(unsafeRaw: Self.jobColumns)
            """).all().map(decodeJob)
    }

    private func decodeJob(_ row: any SQLRow) throws -> SyncJobRecord {
        let backend = db.backend
        return SyncJobRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            entity: try row.decode(column: "entity", as: String.self),
            syncType: try row.decodeCase(column: "sync_type", as: SyncType.self),
            status: try row.decodeCase(column: "status", as: SyncJobStatus.self),
            recordsProcessed: try row.decode(column: "records_processed", as: Int.self),
            recordsTotal: try row.decodeOptional(column: "records_total", as: Int.self),
            errorMessage: try row.decodeOptional(column: "error_message", as: String.self),
            counts: try row.decodeJSON(column: "counts", backend: backend) ?? [:],
            checkpoint: try row.decodeJSON(column: "checkpoint", backend: backend) ?? [:],
            cancelRequested: try row.decode(column: "cancel_requested", as: Bool.self),
            requestedBy: try row.decodeOptional(column: "requested_by", as: String.self),
            sinceMark: try row.decodeOptional(column: "since_mark", as: String.self),
            startedAt: try row.decode(column: "started_at", as: Date.self),
            completedAt: try row.decodeOptional(column: "completed_at", as: Date.self)
        )
    }

    // MARK: Records

    static let recordColumns = "record_id, data, source_data, local_modified_at, deleted_at, updated_at, created_at, source"

    /// The stored records among `ids` (deleted ones included).
    package func records(integrationID: UUID, entity: String, ids: [String]) async throws -> [String: SyncedRecord] {
        var found: [String: SyncedRecord] = [:]
        for start in stride(from: 0, to: ids.count, by: 500) {
            let list = ids[start..<min(start + 500, ids.count)].map { id -> SQLQueryString in "\(bind: id)" }.joined(separator: ", ")
            for row in try await db.raw("""
                SELECT \(unsafeRaw: Self.recordColumns) FROM sync_records WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND record_id IN (
                """ + list + ")").all() {
                let record = try decodeRecord(row)
                found[record.recordID] = record
            }
        }
        return found
    }

    package func record(integrationID: UUID, entity: String, recordID: String) async throws -> SyncedRecord? {
        try await records(integrationID: integrationID, entity: entity, ids: [recordID])[recordID]
    }

    /// Writes records from a sync page: data, the provider's version, cleared local edits (unless `keepLocal`),
    /// undeleted, seen by `jobID`.
    package func upsertSynced(
        organizationID: UUID, integrationID: UUID, entity: String, jobID: UUID?, source: String = "sync", sourceEventID: String? = nil,
        _ rows: [(recordID: String, data: JSONValue, sourceData: JSONValue, keepLocal: Bool)], at now: Date
    ) async throws {
        for start in stride(from: 0, to: rows.count, by: 200) {
            let values = rows[start..<min(start + 200, rows.count)].map { row -> SQLQueryString in
                """
                (\(bind: organizationID), \(bind: integrationID), \(bind: entity), \(bind: row.recordID), \(bind: db.jsonBind(row.data)), \(bind: source), \(bind: sourceEventID), \
                \(bind: now), \(bind: now), NULL, \(bind: db.jsonBind(row.sourceData)), \(bind: row.keepLocal ? now : nil), \(bind: jobID))
                """
            }
            try await db.raw("""
                INSERT INTO sync_records (organization_id, integration_id, entity, record_id, data, source, source_event_id, created_at, updated_at, deleted_at,
                  source_data, local_modified_at, last_job_id)
                VALUES
                """ + values.joined(separator: ", ") + """
                 ON CONFLICT (integration_id, entity, record_id) DO UPDATE SET
                  data = excluded.data, source = excluded.source, source_event_id = excluded.source_event_id, updated_at = excluded.updated_at, deleted_at = NULL,
                  source_data = excluded.source_data, local_modified_at = excluded.local_modified_at, last_job_id = COALESCE(excluded.last_job_id, sync_records.last_job_id)
                """).run()
        }
    }

    /// Soft-deletes one record (a provider's deletion event); false if it was not live.
    package func delete(integrationID: UUID, entity: String, recordID: String, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_records SET deleted_at = \(bind: now), updated_at = \(bind: now)
            WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND record_id = \(bind: recordID) AND deleted_at IS NULL
            RETURNING record_id
            """).first() != nil
    }

    /// Marks records as seen by `jobID` without changing them (unchanged records of a full sync).
    package func markSeen(integrationID: UUID, entity: String, jobID: UUID, ids: [String]) async throws {
        for start in stride(from: 0, to: ids.count, by: 500) {
            let list = ids[start..<min(start + 500, ids.count)].map { id -> SQLQueryString in "\(bind: id)" }.joined(separator: ", ")
            try await db.raw("""
                UPDATE sync_records SET last_job_id = \(bind: jobID) WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND record_id IN (
                """ + list + ")").run()
        }
    }

    /// Soft-deletes the entity's records a full sync did not see; returns how many.
    package func deleteUnseen(integrationID: UUID, entity: String, jobID: UUID, at now: Date) async throws -> Int {
        try await db.raw("""
            UPDATE sync_records SET deleted_at = \(bind: now), updated_at = \(bind: now)
            WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND deleted_at IS NULL
              AND (last_job_id IS NULL OR last_job_id <> \(bind: jobID))
            RETURNING record_id
            """).all().count
    }

    /// A portal-side edit: the new data, marked locally modified.
    package func editLocal(integrationID: UUID, organizationID: UUID, entity: String, recordID: String, data: JSONValue, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_records SET data = \(bind: db.jsonBind(data)), local_modified_at = \(bind: now), updated_at = \(bind: now)
            WHERE integration_id = \(bind: integrationID) AND organization_id = \(bind: organizationID) AND entity = \(bind: entity)
              AND record_id = \(bind: recordID) AND deleted_at IS NULL
            RETURNING record_id
            """).first() != nil
    }

    /// Sets a record's data after a conflict was resolved: locally modified unless the source's side was chosen.
    package func setResolved(integrationID: UUID, entity: String, recordID: String, data: JSONValue, locallyModified: Date?, at now: Date) async throws {
        try await db.raw("""
            UPDATE sync_records SET data = \(bind: db.jsonBind(data)), local_modified_at = \(bind: locallyModified), updated_at = \(bind: now)
            WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity) AND record_id = \(bind: recordID)
            """).run()
    }

    /// The entity's records changed after (`updatedAt`, `recordID`) — deleted ones included — in that order.
    package func changes(
        organizationID: UUID, integrationID: UUID, entity: String, after: (updatedAt: Date, recordID: String)?, limit: Int
    ) async throws -> [SyncedRecord] {
        var query = SQLQueryString("""
            SELECT \(unsafeRaw: Self.recordColumns) FROM sync_records
            WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID) AND entity = \(bind: entity)
            """)
        if let after {
            // The cursor's instant must equal the stored one exactly: PostgreSQL gets it as RFC 3339 text (a
            // bound Date may land a microsecond off, and the page would repeat forever); SQLite stores the
            // same microsecond-rounded seconds the cursor decodes to.
            let instant: SQLQueryString = db.backend == .postgres
                ? "CAST(\(bind: Timestamp.rfc3339(after.updatedAt)) AS timestamptz)" : "\(bind: after.updatedAt)"
            query.appendInterpolation(" AND (updated_at > " as SQLQueryString)
            query.appendInterpolation(instant)
            query.appendInterpolation(" OR (updated_at = " as SQLQueryString)
            query.appendInterpolation(instant)
            query.appendInterpolation(" AND record_id > \(bind: after.recordID)))" as SQLQueryString)
        }
        query.appendInterpolation(" ORDER BY updated_at, record_id LIMIT \(bind: limit)" as SQLQueryString)
        return try await db.raw(query).all().map(decodeRecord)
    }

    private func decodeRecord(_ row: any SQLRow) throws -> SyncedRecord {
        let backend = db.backend
        return SyncedRecord(
            recordID: try row.decode(column: "record_id", as: String.self),
            data: try row.decodeJSON(column: "data", backend: backend) ?? .null,
            sourceData: try row.decodeJSON(column: "source_data", backend: backend),
            localModifiedAt: try row.decodeOptional(column: "local_modified_at", as: Date.self),
            deletedAt: try row.decodeOptional(column: "deleted_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            source: try row.decode(column: "source", as: String.self)
        )
    }

    // MARK: High-water marks

    package func highWater(integrationID: UUID, entity: String) async throws -> String? {
        try await db.raw("SELECT high_water FROM sync_cursors WHERE integration_id = \(bind: integrationID) AND entity = \(bind: entity)")
            .first()?.decodeOptional(column: "high_water", as: String.self)
    }

    package func setHighWater(integrationID: UUID, entity: String, mark: String?, at now: Date) async throws {
        try await db.raw("""
            INSERT INTO sync_cursors (integration_id, entity, high_water, updated_at) VALUES (\(bind: integrationID), \(bind: entity), \(bind: mark), \(bind: now))
            ON CONFLICT (integration_id, entity) DO UPDATE SET high_water = excluded.high_water, updated_at = excluded.updated_at
            """).run()
    }

    // MARK: Schedules

    /// Integrations with a sync configuration (the scheduler checks their schedules).
    package func configuredIntegrations() async throws -> [(id: UUID, organizationID: UUID, config: JSONValue)] {
        let backend = db.backend
        return try await db.raw("""
            SELECT id, organization_id, sync_config FROM integrations WHERE deleted_at IS NULL AND status = 'active' AND sync_config IS NOT NULL
            """).all().compactMap { row in
            guard let config = try row.decodeJSON(column: "sync_config", backend: backend) else { return nil }
            return (try row.decode(column: "id", as: UUID.self), try row.decode(column: "organization_id", as: UUID.self), config)
        }
    }

    /// The schedule state of an integration: paused, and when it runs next.
    package func schedule(integrationID: UUID) async throws -> (paused: Bool, nextRunAt: Date?)? {
        guard let row = try await db.raw("SELECT paused, next_run_at FROM sync_schedules WHERE integration_id = \(bind: integrationID)").first() else { return nil }
        return (try row.decode(column: "paused", as: Bool.self), try row.decodeOptional(column: "next_run_at", as: Date.self))
    }

    package func setPaused(integrationID: UUID, organizationID: UUID, paused: Bool, at now: Date) async throws {
        try await db.raw("""
            INSERT INTO sync_schedules (integration_id, organization_id, paused, next_run_at, updated_at)
            VALUES (\(bind: integrationID), \(bind: organizationID), \(bind: paused), NULL, \(bind: now))
            ON CONFLICT (integration_id) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
            """).run()
    }

    /// Claims a due run of an integration's schedule (one instance wins): true when it was due and not
    /// paused; the next run is then `next`.
    package func claimDue(integrationID: UUID, organizationID: UUID, now: Date, next: Date) async throws -> Bool {
        try await db.raw("""
            INSERT INTO sync_schedules (integration_id, organization_id, paused, next_run_at, updated_at)
            VALUES (\(bind: integrationID), \(bind: organizationID), \(bind: false), NULL, \(bind: now))
            ON CONFLICT (integration_id) DO NOTHING
            """).run()
        return try await db.raw("""
            UPDATE sync_schedules SET next_run_at = \(bind: next), updated_at = \(bind: now)
            WHERE integration_id = \(bind: integrationID) AND paused = \(bind: false) AND (next_run_at IS NULL OR next_run_at <= \(bind: now))
            RETURNING integration_id
            """).first() != nil
    }

    // MARK: Conflicts

    package func insertConflict(_ c: SyncConflictRecord) async throws {
        try await db.raw("""
            INSERT INTO sync_conflicts (id, organization_id, integration_id, entity, record_id, job_id, source, destination, base, flagged, status, created_at)
            VALUES (\(bind: c.id), \(bind: c.organizationID), \(bind: c.integrationID), \(bind: c.entity), \(bind: c.recordID), \(bind: c.jobID),
                    \(bind: db.jsonBind(c.source)), \(bind: db.jsonBind(c.destination)), \(bind: db.jsonBind(c.base)),
                    \(bind: db.jsonBind(["fields": .array(c.flagged.map(JSONValue.string))])), \(bind: c.status), \(bind: c.createdAt))
            """).run()
    }

    static let conflictColumns = """
        id, organization_id, integration_id, entity, record_id, job_id, source, destination, base, flagged, status, resolution, resolved_by, created_at, resolved_at
        """

    package func conflicts(organizationID: UUID, integrationID: UUID, status: String?, before cursor: UUID?, limit: Int) async throws -> [SyncConflictRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.conflictColumns) FROM sync_conflicts WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID)")
        if let status { query.appendInterpolation(" AND status = \(bind: status)" as SQLQueryString) }
        if let cursor { query.appendInterpolation(" AND id < \(bind: cursor)" as SQLQueryString) }
        query.appendInterpolation(" ORDER BY id DESC LIMIT \(bind: limit)" as SQLQueryString)
        return try await db.raw(query).all().map(decodeConflict)
    }

    package func conflict(id: UUID, organizationID: UUID) async throws -> SyncConflictRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.conflictColumns) FROM sync_conflicts WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)")
            .first().map(decodeConflict)
    }

    /// Closes an open conflict; false if it was not open.
    package func resolveConflict(id: UUID, organizationID: UUID, resolution: JSONValue, by actor: String, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE sync_conflicts SET status = 'resolved', resolution = \(bind: db.jsonBind(resolution)), resolved_by = \(bind: actor), resolved_at = \(bind: now)
            WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) AND status = 'open'
            RETURNING id
            """).first() != nil
    }

    private func decodeConflict(_ row: any SQLRow) throws -> SyncConflictRecord {
        let backend = db.backend
        return SyncConflictRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            entity: try row.decode(column: "entity", as: String.self),
            recordID: try row.decode(column: "record_id", as: String.self),
            jobID: try row.decodeOptional(column: "job_id", as: UUID.self),
            source: try row.decodeJSON(column: "source", backend: backend) ?? .null,
            destination: try row.decodeJSON(column: "destination", backend: backend) ?? .null,
            base: try row.decodeJSON(column: "base", backend: backend),
            flagged: (try row.decodeJSON(column: "flagged", backend: backend)?.objectValue?["fields"]?.arrayValue ?? []).compactMap(\.stringValue),
            status: try row.decode(column: "status", as: String.self),
            resolution: try row.decodeJSON(column: "resolution", backend: backend),
            resolvedBy: try row.decodeOptional(column: "resolved_by", as: String.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            resolvedAt: try row.decodeOptional(column: "resolved_at", as: Date.self)
        )
    }
}
