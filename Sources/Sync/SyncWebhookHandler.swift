import Crypto
import Foundation
package import Integrations
package import Ledger
package import PortalCore
package import Storage

/// Real-time sync: webhook events feed the same upsert path as a sync job, inside the worker's
/// transaction (so each event's writes happen once, with its `webhook.processed` entry).
///
/// - `user.created` / `user.updated`: the user (`data.object`, `data`, `user`, or the body) into entity
///   `users`; `user.deleted` soft-deletes it.
/// - `data.sync`: `{"entity": "...", "records": [...]}` (or the same under `data`), each record read with the
///   entity's configuration (id field, mapping) when the integration's syncConfig has it, else by its `id`.
///
/// A record changed in the portal since the last sync goes through the integration's conflict policy, as
/// in a sync job. Idempotent by event id: a record that already holds this event's version is left alone.
package struct SyncWebhookHandler: WebhookEventHandler {
    let ids: IdentifierGenerator
    let audit: any AuditTrail
    let sealing: SubjectSealing

    package init(vault: CredentialVault, audit: any AuditTrail, ids: IdentifierGenerator = .shared) {
        self.audit = audit
        self.ids = ids
        sealing = SubjectSealing(vault: vault)
    }

    package var eventTypes: [String] { ["user.created", "user.updated", "user.deleted", "data.sync"] }

    package func handle(_ event: ReceivedWebhookEvent, in db: Transaction) async throws -> String? {
        let body = event.payload.objectValue ?? [:]
        let configuration = try await IntegrationStore(db).find(id: event.integrationID, organizationID: event.organizationID)?.syncConfig
            .flatMap { try? SyncConfiguration.parse($0) }
        let policy = configuration?.conflicts ?? ConflictPolicy(strategy: .sourceWins)
        let now = event.receivedAt
        let target = SyncEngine.UpsertTarget(
            organizationID: event.organizationID, integrationID: event.integrationID, entity: "users", jobID: nil, source: "webhook",
            sourceEventID: event.id.uuidString.lowercased()
        )
        // The subject of a person's record, when the entity names its field; nil otherwise.
        func subject(_ item: JSONValue, _ entity: SyncEntity?) throws -> String? {
            guard let field = entity?.subjectIdField else { return nil }
            switch SyncEntity.lookup(field, in: item) {
            case .string(let s)? where !s.trimmingCharacters(in: .whitespaces).isEmpty: return s
            case .int(let n)?: return String(n)
            default: throw PortalError(.validationFailed, "the record names no subject in \(field)")
            }
        }
        if event.eventType.hasPrefix("user.") {
            let candidates = [body["data"]?.objectValue?["object"], body["data"], body["user"], event.payload]
            let entity = configuration?.entities["users"]
            guard let user = candidates.compactMap({ $0 }).first(where: { item in (entity?.recordID(of: item) ?? Self.id(of: item)) != nil }),
                  let id = entity?.recordID(of: user) ?? Self.id(of: user)
            else {
                throw PortalError(.validationFailed, "the \(event.eventType) event names no user id")
            }
            if event.eventType == "user.deleted" {
                let deleted = try await SyncStore(db).delete(integrationID: event.integrationID, entity: "users", recordID: id, at: now)
                return deleted ? "deleted users/\(id)" : "users/\(id) was not live"
            }
            let record = try entity?.mapping?.apply(to: user) ?? user
            var counts = Counts()
            var userTarget = target
            if entity?.subjectIdField != nil { userTarget.sealing = sealing }
            _ = try await SyncEngine.upsert(
                [(id, record, try subject(user, entity))], target: userTarget, policy: policy, counts: &counts, ids: ids, audit: audit, in: db, at: now
            )
            return Self.note(counts, entity: "users")
        }
        // data.sync
        let container = body["entity"] != nil ? body : (body["data"]?.objectValue ?? body)
        guard let name = container["entity"]?.stringValue, !name.isEmpty, name.count <= 100 else {
            throw PortalError(.validationFailed, "a data.sync event names its entity")
        }
        let items = container["records"]?.arrayValue ?? container["record"].map { [$0] } ?? []
        guard !items.isEmpty, items.count <= 10_000 else { throw PortalError(.validationFailed, "a data.sync event carries 1 to 10000 records") }
        let entity = configuration?.entities[name]
        var rows: [(id: String, record: JSONValue, subject: String?)] = []
        var counts = Counts()
        for item in items {
            guard case .object = item, let id = entity?.recordID(of: item) ?? Self.id(of: item) else {
                counts.rejected += 1
                continue
            }
            do {
                rows.append((id, try entity?.mapping?.apply(to: item) ?? item, try subject(item, entity)))
            } catch {
                counts.rejected += 1
            }
        }
        var entityTarget = target
        entityTarget.entity = name
        if entity?.subjectIdField != nil { entityTarget.sealing = sealing }
        _ = try await SyncEngine.upsert(rows, target: entityTarget, policy: policy, counts: &counts, ids: ids, audit: audit, in: db, at: now)
        return Self.note(counts, entity: name)
    }

    static func id(of item: JSONValue) -> String? {
        for key in ["id", "userId", "user_id"] {
            switch item.objectValue?[key] {
            case .string(let s)? where !s.isEmpty && s.count <= 255: return s
            case .int(let n)?: return String(n)
            default: continue
            }
        }
        return nil
    }

    static func note(_ c: Counts, entity: String) -> String {
        "\(entity): \(c.created) created, \(c.updated) updated, \(c.unchanged) unchanged, \(c.conflicts) conflicts, \(c.rejected) rejected"
            + (c.suppressed > 0 ? ", \(c.suppressed) suppressed (erased subjects)" : "")
    }
}
