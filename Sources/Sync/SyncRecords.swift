import Crypto
public import Foundation
import Ledger
public import PortalCore
import SQLKit
import Storage

/// A synced record as the API shows it.
public struct SyncRecordView: Sendable, Encodable {
    public var recordId: String
    /// `added`, `updated` or `deleted` relative to `modified_after` (`added` when none was given).
    public var change: String
    public var data: JSONValue
    /// What wrote it last: `sync` or `webhook`.
    public var source: String
    public var createdAt: String
    public var updatedAt: String
    public var deletedAt: String?
    /// Set while the portal's copy differs from the provider's by a local edit.
    public var locallyModifiedAt: String?

    init(_ r: SyncedRecord, since: Date?) {
        recordId = r.recordID
        change = r.deletedAt != nil ? "deleted" : (since.map { r.createdAt > $0 } ?? true) ? "added" : "updated"
        data = r.data
        source = r.source
        createdAt = Timestamp.rfc3339(r.createdAt)
        updatedAt = Timestamp.rfc3339(r.updatedAt)
        deletedAt = r.deletedAt.map(Timestamp.rfc3339)
        locallyModifiedAt = r.localModifiedAt.map(Timestamp.rfc3339)
    }
}

public struct SyncRecordsPage: Sendable, Encodable {
    public var items: [SyncRecordView]
    /// Pass as `cursor` for the next page; absent on the last.
    public var nextCursor: String?
}

/// A conflict as the API shows it.
public struct SyncConflictView: Sendable, Encodable {
    public var id: String
    public var entity: String
    public var recordId: String
    public var jobId: String?
    public var status: String
    /// The provider's record, the portal's, and the provider's at the last sync.
    public var source: JSONValue
    public var destination: JSONValue
    public var base: JSONValue?
    /// The fields left for review (`*`: the whole record, under `manual`).
    public var fields: [String]
    public var resolution: JSONValue?
    public var resolvedBy: String?
    public var createdAt: String
    public var resolvedAt: String?

    init(_ c: SyncConflictRecord) {
        id = c.id.uuidString.lowercased()
        entity = c.entity
        recordId = c.recordID
        jobId = c.jobID?.uuidString.lowercased()
        status = c.status
        source = c.source
        destination = c.destination
        base = c.base
        fields = c.flagged
        resolution = c.resolution
        resolvedBy = c.resolvedBy
        createdAt = Timestamp.rfc3339(c.createdAt)
        resolvedAt = c.resolvedAt.map(Timestamp.rfc3339)
    }
}

extension SyncEngine {
    /// `GET /portal/integrations/{id}/records/{entity}`: the entity's records in the order they changed,
    /// deleted ones included, from `modifiedAfter` or a cursor.
    public func records(
        integrationID: UUID, entity: String, modifiedAfter: Date?, cursor: String?, limit: Int, by principal: Principal
    ) async throws -> SyncRecordsPage {
        try principal.require(.readIntegrations)
        var after: (Date, String)? = modifiedAfter.map { ($0, "") }
        if let cursor {
            guard let decoded = Self.decodeCursor(cursor) else { throw PortalError(.validationFailed, "the cursor is not one this API returned", fieldErrors: [.init(pointer: "/cursor", message: "unknown cursor")]) }
            after = decoded
        }
        let rows = try await database.read { db -> [SyncedRecord] in
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil else { throw PortalError.notFound("integration") }
            return try await SyncStore(db).changes(
                organizationID: principal.organizationID, integrationID: integrationID, entity: entity, after: after.map { (updatedAt: $0.0, recordID: $0.1) }, limit: limit + 1
            )
        }
        let page = Array(rows.prefix(limit))
        let next = rows.count > limit ? page.last.map { Self.encodeCursor($0.updatedAt, $0.recordID) } : nil
        return SyncRecordsPage(items: page.map { SyncRecordView($0, since: modifiedAfter) }, nextCursor: next)
    }

    static func encodeCursor(_ date: Date, _ id: String) -> String {
        Data("\(Timestamp.rfc3339(date))|\(id)".utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    static func decodeCursor(_ text: String) -> (Date, String)? {
        var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard text.count <= 2_000, let data = Data(base64Encoded: b64), let decoded = String(data: data, encoding: .utf8),
              let bar = decoded.firstIndex(of: "|"), let date = Timestamp.parse(String(decoded[..<bar]))
        else { return nil }
        return (date, String(decoded[decoded.index(after: bar)...]))
    }

    /// `PATCH .../records/{entity}/{recordId}`: a JSON merge patch (RFC 7396) of the record's data, applied on
    /// the portal's side and marked locally modified (the next sync compares it with the provider's).
    /// Appends `record.updated` with the changed field names and a digest of the record id.
    public func editRecord(integrationID: UUID, entity: String, recordID: String, patch: JSONValue, by principal: Principal) async throws -> SyncRecordView {
        try principal.require(.manageIntegrations)
        guard case .object(let members) = patch, !members.isEmpty else {
            throw PortalError(.validationFailed, "the body is a JSON merge patch of the record: an object with the fields to change")
        }
        let now = clock.now()
        let record = try await database.write { db -> SyncedRecord in
            let store = SyncStore(db)
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil,
                  let current = try await store.record(integrationID: integrationID, entity: entity, recordID: recordID), current.deletedAt == nil
            else { throw PortalError.notFound("record") }
            let data = current.data.merging(patch: patch)
            guard case .object = data else { throw PortalError(.validationFailed, "a record stays an object") }
            _ = try await store.editLocal(integrationID: integrationID, organizationID: principal.organizationID, entity: entity, recordID: recordID, data: data, at: now)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: "record.updated", actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: [
                    "entity": .string(entity), "recordIdDigest": .string(Hex.encode(SHA256.hash(data: Array(recordID.utf8)))),
                    "fields": .array(members.keys.sorted().map(JSONValue.string)),
                ],
                time: now
            ), in: db)
            return try await store.record(integrationID: integrationID, entity: entity, recordID: recordID) ?? current
        }
        audit.wake()
        return SyncRecordView(record, since: nil)
    }

    public func conflicts(integrationID: UUID, status: String?, cursor: UUID?, limit: Int, by principal: Principal) async throws -> [SyncConflictView] {
        try principal.require(.readIntegrations)
        if let status, !["open", "resolved"].contains(status) {
            throw PortalError(.validationFailed, "status is open or resolved", fieldErrors: [.init(pointer: "/status", message: "must be open or resolved")])
        }
        return try await database.read { db in
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil else { throw PortalError.notFound("integration") }
            return try await SyncStore(db).conflicts(organizationID: principal.organizationID, integrationID: integrationID, status: status, before: cursor, limit: limit)
                .map(SyncConflictView.init)
        }
    }

    /// `POST .../sync/conflicts/{cid}/resolve` with `{"choose": "source" | "destination"}` or `{"value": {...}}`:
    /// the record takes that value (locally modified unless the source's side was chosen) and the conflict
    /// closes; appends `sync.conflict` with the resolution.
    public func resolveConflict(integrationID: UUID, conflictID: UUID, body: JSONValue, by principal: Principal) async throws -> SyncConflictView {
        try principal.require(.manageIntegrations)
        let errors = ValidationErrors()
        var r = JSONObjectReader(body, errors: errors)
        let choice = r.string("choose")
        let value = r.value("value")
        r.finish()
        if let choice, !["source", "destination"].contains(choice) { r.reject("choose", "must be source or destination") }
        if (choice == nil) == (value == nil) { errors.add("", "give either choose (source or destination) or value (the merged record)") }
        if let value, value.objectValue == nil { r.reject("value", "must be an object (the record)") }
        try errors.throwIfAny()
        let now = clock.now()
        let actor = principal.tokenID.uuidString.lowercased()
        let resolved = try await database.write { db -> SyncConflictRecord in
            let store = SyncStore(db)
            guard let conflict = try await store.conflict(id: conflictID, organizationID: principal.organizationID), conflict.integrationID == integrationID else {
                throw PortalError.notFound("conflict")
            }
            guard conflict.status == "open" else { throw PortalError(.conflict, "the conflict is already resolved") }
            let data: JSONValue = switch choice {
            case "source"?: conflict.source
            case "destination"?: conflict.destination
            default: value ?? conflict.destination
            }
            let resolution: JSONValue = choice.map { ["choose": .string($0)] } ?? ["value": data]
            _ = try await store.resolveConflict(id: conflictID, organizationID: principal.organizationID, resolution: resolution, by: actor, at: now)
            try await store.setResolved(
                integrationID: integrationID, entity: conflict.entity, recordID: conflict.recordID, data: data, locallyModified: choice == "source" ? nil : now, at: now
            )
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: "sync.conflict", actor: actor, integrationID: integrationID,
                data: [
                    "conflictId": .string(conflictID.uuidString.lowercased()), "entity": .string(conflict.entity),
                    "recordIdDigest": .string(Hex.encode(SHA256.hash(data: Array(conflict.recordID.utf8)))), "resolution": .string(choice ?? "value"),
                ],
                time: now
            ), in: db)
            return try await store.conflict(id: conflictID, organizationID: principal.organizationID) ?? conflict
        }
        audit.wake()
        return SyncConflictView(resolved)
    }
}
