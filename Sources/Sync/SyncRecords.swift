import Crypto
package import Foundation
import Integrations
import Ledger
package import PortalCore
import Storage

/// A synced record as the API shows it.
package struct SyncRecordView: Sendable, Encodable {
    package var recordId: String
    /// `added`, `updated` or `deleted` relative to `modified_after` (`added` when none was given).
    package var change: String
    package var data: JSONValue
    /// What wrote it last: `sync` or `webhook`.
    package var source: String
    package var createdAt: String
    package var updatedAt: String
    package var deletedAt: String?
    /// Set while the portal's copy differs from the provider's by a local edit.
    package var locallyModifiedAt: String?

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

package struct SyncRecordsPage: Sendable, Encodable {
    package var items: [SyncRecordView]
    /// Pass as `cursor` for the next page; absent on the last.
    package var nextCursor: String?
}

/// A conflict as the API shows it.
package struct SyncConflictView: Sendable, Encodable {
    package var id: String
    package var entity: String
    package var recordId: String
    package var jobId: String?
    package var status: String
    /// The provider's record, the portal's, and the provider's at the last sync.
    package var source: JSONValue
    package var destination: JSONValue
    package var base: JSONValue?
    /// The fields left for review (`*`: the whole record, under `manual`).
    package var fields: [String]
    package var resolution: JSONValue?
    package var resolvedBy: String?
    package var createdAt: String
    package var resolvedAt: String?

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
    package func records(
        integrationID: UUID, entity: String, modifiedAfter: Date?, cursor: String?, limit: Int, by principal: Principal
    ) async throws -> SyncRecordsPage {
        try principal.require(.readIntegrations)
        var after: (Date, String)? = modifiedAfter.map { ($0, "") }
        if let cursor {
            guard let decoded = Self.decodeCursor(cursor) else { throw PortalError(.validationFailed, "the cursor is not one this API returned", fieldErrors: [.init(pointer: "/cursor", message: "unknown cursor")]) }
            after = decoded
        }
        let sealing = sealing
        let rows = try await database.read { db -> [SyncedRecord] in
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil else { throw PortalError.notFound("integration") }
            var rows = try await SyncStore(db).changes(
                organizationID: principal.organizationID, integrationID: integrationID, entity: entity, after: after.map { (updatedAt: $0.0, recordID: $0.1) }, limit: limit + 1
            )
            // Records of people open with their subject's key ({"$erased": true} once it is gone).
            let lookups = Set(rows.compactMap { SubjectSealing.subject(of: $0.data) })
            if !lookups.isEmpty {
                let keys = try await sealing.keys(organizationID: principal.organizationID, lookups: lookups, create: false, in: db, at: Date())
                for i in rows.indices {
                    let aad = SubjectSealing.aad(organizationID: principal.organizationID, integrationID: integrationID, entity: entity, recordID: rows[i].recordID)
                    rows[i].data = SubjectSealing.open(rows[i].data, keys: keys, aad: aad)
                }
            }
            return rows
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
    package func editRecord(integrationID: UUID, entity: String, recordID: String, patch: JSONValue, by principal: Principal) async throws -> SyncRecordView {
        try principal.require(.manageIntegrations)
        guard case .object(let members) = patch, !members.isEmpty else {
            throw PortalError(.validationFailed, "the body is a JSON merge patch of the record: an object with the fields to change")
        }
        let now = clock.now()
        let sealing = sealing
        let record = try await database.write { db -> SyncedRecord in
            let store = SyncStore(db)
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil,
                  let current = try await store.record(integrationID: integrationID, entity: entity, recordID: recordID), current.deletedAt == nil
            else { throw PortalError.notFound("record") }
            let aad = SubjectSealing.aad(organizationID: principal.organizationID, integrationID: integrationID, entity: entity, recordID: recordID)
            let lookup = SubjectSealing.subject(of: current.data)
            var keys: [String: SymmetricKey] = [:]
            if let lookup { keys = try await sealing.keys(organizationID: principal.organizationID, lookups: [lookup], create: false, in: db, at: now) }
            let plain = SubjectSealing.open(current.data, keys: keys, aad: aad)
            guard plain.objectValue?["$erased"] == nil else { throw PortalError(.conflict, "the record's subject was erased; it cannot be edited") }
            let data = plain.merging(patch: patch)
            guard case .object = data else { throw PortalError(.validationFailed, "a record stays an object") }
            let stored = try lookup.flatMap { l in try keys[l].map { try SubjectSealing.seal(data, lookup: l, key: $0, aad: aad) } } ?? data
            _ = try await store.editLocal(integrationID: integrationID, organizationID: principal.organizationID, entity: entity, recordID: recordID, data: stored, at: now)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .recordUpdated, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: [
                    "entity": .string(entity), "recordIdDigest": .string(Hex.encode(SHA256.hash(data: Array(recordID.utf8)))),
                    "fields": .array(members.keys.sorted().map(JSONValue.string)),
                ],
                time: now
            ), in: db)
            var updated = try await store.record(integrationID: integrationID, entity: entity, recordID: recordID) ?? current
            updated.data = data
            return updated
        }
        audit.wake()
        return SyncRecordView(record, since: nil)
    }

    package func conflicts(integrationID: UUID, status: String?, cursor: UUID?, limit: Int, by principal: Principal) async throws -> [SyncConflictView] {
        try principal.require(.readIntegrations)
        if let status, !["open", "resolved"].contains(status) {
            throw PortalError(.validationFailed, "status is open or resolved", fieldErrors: [.init(pointer: "/status", message: "must be open or resolved")])
        }
        let sealing = sealing
        return try await database.read { db in
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil else { throw PortalError.notFound("integration") }
            var conflicts = try await SyncStore(db).conflicts(organizationID: principal.organizationID, integrationID: integrationID, status: status, before: cursor, limit: limit)
            let lookups = Set(conflicts.compactMap { SubjectSealing.subject(of: $0.source) })
            if !lookups.isEmpty {
                let keys = try await sealing.keys(organizationID: principal.organizationID, lookups: lookups, create: false, in: db, at: Date())
                for i in conflicts.indices { conflicts[i] = Self.opened(conflicts[i], keys: keys) }
            }
            return conflicts.map(SyncConflictView.init)
        }
    }

    /// A conflict with its sides opened (records of people are stored sealed).
    static func opened(_ conflict: SyncConflictRecord, keys: [String: SymmetricKey]) -> SyncConflictRecord {
        var c = conflict
        let aad = SubjectSealing.aad(organizationID: c.organizationID, integrationID: c.integrationID, entity: c.entity, recordID: c.recordID)
        c.source = SubjectSealing.open(c.source, keys: keys, aad: aad)
        c.destination = SubjectSealing.open(c.destination, keys: keys, aad: aad)
        c.base = c.base.map { SubjectSealing.open($0, keys: keys, aad: aad) }
        if let resolution = c.resolution, case .object(var m) = resolution, let value = m["value"] {
            m["value"] = SubjectSealing.open(value, keys: keys, aad: aad)
            c.resolution = .object(m)
        }
        return c
    }

    /// `POST .../sync/conflicts/{cid}/resolve` with `{"choose": "source" | "destination"}` or `{"value": {...}}`:
    /// the record takes that value (locally modified unless the source's side was chosen) and the conflict
    /// closes; appends `sync.conflict` with the resolution.
    package func resolveConflict(integrationID: UUID, conflictID: UUID, body: JSONValue, by principal: Principal) async throws -> SyncConflictView {
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
        let sealing = sealing
        let resolved = try await database.write { db -> SyncConflictRecord in
            let store = SyncStore(db)
            guard let stored = try await store.conflict(id: conflictID, organizationID: principal.organizationID), stored.integrationID == integrationID else {
                throw PortalError.notFound("conflict")
            }
            guard stored.status == "open" else { throw PortalError(.conflict, "the conflict is already resolved") }
            let lookup = SubjectSealing.subject(of: stored.source)
            var keys: [String: SymmetricKey] = [:]
            if let lookup { keys = try await sealing.keys(organizationID: principal.organizationID, lookups: [lookup], create: false, in: db, at: now) }
            let conflict = Self.opened(stored, keys: keys)
            guard conflict.source.objectValue?["$erased"] == nil else { throw PortalError(.conflict, "the record's subject was erased") }
            let data: JSONValue = switch choice {
            case "source"?: conflict.source
            case "destination"?: conflict.destination
            default: value ?? conflict.destination
            }
            let aad = SubjectSealing.aad(organizationID: principal.organizationID, integrationID: integrationID, entity: conflict.entity, recordID: conflict.recordID)
            let sealedData = try lookup.flatMap { l in try keys[l].map { try SubjectSealing.seal(data, lookup: l, key: $0, aad: aad) } } ?? data
            let resolution: JSONValue = choice.map { ["choose": .string($0)] } ?? ["value": sealedData]
            _ = try await store.resolveConflict(id: conflictID, organizationID: principal.organizationID, resolution: resolution, by: actor, at: now)
            try await store.setResolved(
                integrationID: integrationID, entity: conflict.entity, recordID: conflict.recordID, data: sealedData, locallyModified: choice == "source" ? nil : now, at: now
            )
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .syncConflict, actor: actor, integrationID: integrationID,
                data: [
                    "conflictId": .string(conflictID.uuidString.lowercased()), "entity": .string(conflict.entity),
                    "recordIdDigest": .string(Hex.encode(SHA256.hash(data: Array(conflict.recordID.utf8)))), "resolution": .string(choice ?? "value"),
                ],
                time: now
            ), in: db)
            return Self.opened(try await store.conflict(id: conflictID, organizationID: principal.organizationID) ?? conflict, keys: keys)
        }
        audit.wake()
        return SyncConflictView(resolved)
    }
}
