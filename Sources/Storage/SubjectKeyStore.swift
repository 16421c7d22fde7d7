package import Foundation
package import PortalCore
import SQLKit

/// A data subject's row of `subject_keys`: the salt of its ledger commitments and its sealed encryption key.
package struct SubjectKeyRecord: Sendable, Equatable {
    package var organizationID: UUID
    /// The keyed hash of the subject id that finds the row (hex).
    package var lookup: String
    package var salt: [UInt8]
    /// The subject's key, sealed by the vault.
    package var sealedKey: JSONValue
    package var createdAt: Date

    package init(organizationID: UUID, lookup: String, salt: [UInt8], sealedKey: JSONValue, createdAt: Date) {
        self.organizationID = organizationID
        self.lookup = lookup
        self.salt = salt
        self.sealedKey = sealedKey
        self.createdAt = createdAt
    }
}

/// The `subject_keys` and `erased_subjects` tables.
package struct SubjectKeyStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// The rows of the given lookups that exist.
    package func find(organizationID: UUID, lookups: [String]) async throws -> [String: SubjectKeyRecord] {
        var found: [String: SubjectKeyRecord] = [:]
        let backend = db.backend
        for start in stride(from: 0, to: lookups.count, by: 500) {
            let list = lookups[start..<min(start + 500, lookups.count)].map { l -> SQLQueryString in "\(bind: l)" }.joined(separator: ", ")
            for row in try await db.raw("""
                SELECT lookup, salt, sealed_key, created_at FROM subject_keys WHERE organization_id = \(bind: organizationID) AND lookup IN (
                """ + list + ")").all() {
                let record = SubjectKeyRecord(
                    organizationID: organizationID, lookup: try row.decode(column: "lookup", as: String.self),
                    salt: Array(try row.decode(column: "salt", as: Data.self)), sealedKey: try row.decodeJSON(column: "sealed_key", backend: backend) ?? [:],
                    createdAt: try row.decode(column: "created_at", as: Date.self)
                )
                found[record.lookup] = record
            }
        }
        return found
    }

    /// Inserts new subjects' rows; one created meanwhile by another transaction is kept (theirs wins).
    package func insert(_ records: [SubjectKeyRecord]) async throws {
        for start in stride(from: 0, to: records.count, by: 200) {
            let values = records[start..<min(start + 200, records.count)].map { r -> SQLQueryString in
                "(\(bind: r.organizationID), \(bind: r.lookup), \(bind: Data(r.salt)), \(bind: db.jsonBind(r.sealedKey)), \(bind: r.createdAt))"
            }
            try await db.raw("INSERT INTO subject_keys (organization_id, lookup, salt, sealed_key, created_at) VALUES "
                + values.joined(separator: ", ") + " ON CONFLICT (organization_id, lookup) DO NOTHING").run()
        }
    }

    /// Of the given lookups, those of erased subjects.
    package func erased(organizationID: UUID, lookups: [String]) async throws -> Set<String> {
        var found = Set<String>()
        for start in stride(from: 0, to: lookups.count, by: 500) {
            let list = lookups[start..<min(start + 500, lookups.count)].map { l -> SQLQueryString in "\(bind: l)" }.joined(separator: ", ")
            for row in try await db.raw("SELECT lookup FROM erased_subjects WHERE organization_id = \(bind: organizationID) AND lookup IN (" + list + ")").all() {
                found.insert(try row.decode(column: "lookup", as: String.self))
            }
        }
        return found
    }

    /// Erases a subject: its key and salt are deleted (its sealed records become unreadable, its commitments
    /// unlinkable) and its lookup is kept to suppress it. Returns whether a key existed.
    package func erase(organizationID: UUID, lookup: String, at now: Date) async throws -> Bool {
        let existed = try await db.raw("DELETE FROM subject_keys WHERE organization_id = \(bind: organizationID) AND lookup = \(bind: lookup) RETURNING lookup").first() != nil
        try await db.raw("""
            INSERT INTO erased_subjects (organization_id, lookup, erased_at) VALUES (\(bind: organizationID), \(bind: lookup), \(bind: now))
            ON CONFLICT (organization_id, lookup) DO NOTHING
            """).run()
        return existed
    }
}

/// What the portal holds about one data subject outside `subject_keys`: synced records and conflicts sealed
/// for it (found by their `$subject` lookup), and stored bodies that mention its id.
package struct SubjectDataStore: Sendable {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// `column ->> '$subject'` on either dialect.
    private func subjectOf(_ column: String) -> SQLQueryString {
        switch db.backend {
        case .postgres: SQLQueryString("\(unsafeRaw: column)->>'$subject'")
        case .sqlite: SQLQueryString("json_extract(\(unsafeRaw: column), '$.\"$subject\"')")
        }
    }

    /// A synced record sealed for the subject.
    package struct Record: Sendable {
        package var integrationID: UUID
        package var entity: String
        package var recordID: String
        package var data: JSONValue
        package var updatedAt: Date
        package var deletedAt: Date?
    }

    /// The organization's synced records sealed for `lookup` (deleted ones included).
    package func records(organizationID: UUID, lookup: String) async throws -> [Record] {
        let backend = db.backend
        return try await db.raw("""
            SELECT integration_id, entity, record_id, data, updated_at, deleted_at FROM sync_records
            WHERE organization_id = \(bind: organizationID) AND \(subjectOf("data")) = \(bind: lookup)
            ORDER BY integration_id, entity, record_id
            """).all().map { row in
            Record(
                integrationID: try row.decode(column: "integration_id", as: UUID.self), entity: try row.decode(column: "entity", as: String.self),
                recordID: try row.decode(column: "record_id", as: String.self), data: try row.decodeJSON(column: "data", backend: backend) ?? .null,
                updatedAt: try row.decode(column: "updated_at", as: Date.self), deletedAt: try row.decodeOptional(column: "deleted_at", as: Date.self)
            )
        }
    }

    /// Deletes the subject's synced records and the conflicts filed about them; returns both counts.
    package func deleteRecords(organizationID: UUID, lookup: String) async throws -> (records: Int, conflicts: Int) {
        let conflicts = try await db.raw("""
            DELETE FROM sync_conflicts WHERE organization_id = \(bind: organizationID) AND \(subjectOf("source")) = \(bind: lookup) RETURNING id
            """).all().count
        let records = try await db.raw("""
            DELETE FROM sync_records WHERE organization_id = \(bind: organizationID) AND \(subjectOf("data")) = \(bind: lookup) RETURNING record_id
            """).all().count
        return (records, conflicts)
    }

    /// Clears stored request and response bodies (`integration_requests`) of the organization that mention
    /// `needle` (case-insensitive); returns how many rows.
    package func clearRequestBodies(organizationID: UUID, mentioning needle: String) async throws -> Int {
        let pattern = "%" + needle.lowercased().replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"
        return try await db.raw("""
            UPDATE integration_requests SET request_body = NULL, response_body = NULL
            WHERE organization_id = \(bind: organizationID)
              AND (LOWER(CAST(request_body AS TEXT)) LIKE \(bind: pattern) ESCAPE '\\' OR LOWER(CAST(response_body AS TEXT)) LIKE \(bind: pattern) ESCAPE '\\')
            RETURNING id
            """).all().count
    }
}

extension SubjectDataStore {
    /// A page of the organization's stored webhook bodies (sealed), after `after` in id order.
    package func webhookPayloads(organizationID: UUID, after: UUID?, limit: Int) async throws -> [(id: UUID, payload: JSONValue)] {
        let backend = db.backend
        let from = after.map { SQLQueryString(" AND id > \(bind: $0)") } ?? SQLQueryString("")
        return try await db.raw("""
            SELECT id, payload FROM webhook_events WHERE organization_id = \(bind: organizationID)\(from) ORDER BY id LIMIT \(bind: limit)
            """).all().map { (try $0.decode(column: "id", as: UUID.self), try $0.decodeJSON(column: "payload", backend: backend) ?? [:]) }
    }

    /// Replaces the stored bodies of these webhook events with `{"$erased": true}`.
    package func erasePayloads(organizationID: UUID, ids: [UUID]) async throws {
        for id in ids {
            try await db.raw("""
                UPDATE webhook_events SET payload = \(bind: db.jsonBind(["$erased": true])) WHERE organization_id = \(bind: organizationID) AND id = \(bind: id)
                """).run()
        }
    }
}
