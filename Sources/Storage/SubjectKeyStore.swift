public import Foundation
public import PortalCore
public import SQLKit

/// A data subject's row of `subject_keys`: the salt of its ledger commitments and its sealed encryption key.
public struct SubjectKeyRecord: Sendable, Equatable {
    public var organizationID: UUID
    /// The keyed hash of the subject id that finds the row (hex).
    public var lookup: String
    public var salt: [UInt8]
    /// The subject's key, sealed by the vault.
    public var sealedKey: JSONValue
    public var createdAt: Date

    public init(organizationID: UUID, lookup: String, salt: [UInt8], sealedKey: JSONValue, createdAt: Date) {
        self.organizationID = organizationID
        self.lookup = lookup
        self.salt = salt
        self.sealedKey = sealedKey
        self.createdAt = createdAt
    }
}

/// The `subject_keys` and `erased_subjects` tables.
public struct SubjectKeyStore {
    private let db: any SQLDatabase

    public init(_ db: any SQLDatabase) { self.db = db }

    /// The rows of the given lookups that exist.
    public func find(organizationID: UUID, lookups: [String]) async throws -> [String: SubjectKeyRecord] {
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
    public func insert(_ records: [SubjectKeyRecord]) async throws {
        for start in stride(from: 0, to: records.count, by: 200) {
            let values = records[start..<min(start + 200, records.count)].map { r -> SQLQueryString in
                "(\(bind: r.organizationID), \(bind: r.lookup), \(bind: Data(r.salt)), \(bind: db.jsonBind(r.sealedKey)), \(bind: r.createdAt))"
            }
            try await db.raw("INSERT INTO subject_keys (organization_id, lookup, salt, sealed_key, created_at) VALUES "
                + values.joined(separator: ", ") + " ON CONFLICT (organization_id, lookup) DO NOTHING").run()
        }
    }

    /// Of the given lookups, those of erased subjects.
    public func erased(organizationID: UUID, lookups: [String]) async throws -> Set<String> {
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
    public func erase(organizationID: UUID, lookup: String, at now: Date) async throws -> Bool {
        let existed = try await db.raw("DELETE FROM subject_keys WHERE organization_id = \(bind: organizationID) AND lookup = \(bind: lookup) RETURNING lookup").first() != nil
        try await db.raw("""
            INSERT INTO erased_subjects (organization_id, lookup, erased_at) VALUES (\(bind: organizationID), \(bind: lookup), \(bind: now))
            ON CONFLICT (organization_id, lookup) DO NOTHING
            """).run()
        return existed
    }
}
