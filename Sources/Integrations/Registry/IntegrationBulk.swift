package import Foundation
import Ledger
package import PortalCore
package import Storage
import Yams

/// Bulk operations on integrations (issue 21, the seed's Phase 3): export and import of definitions as YAML
/// or JSON without secrets, and enable, disable or delete by filter. Each is one job whose per-item results
/// are kept (`bulk_jobs`, the latest 100 per organization) and ledgered as `bulk.completed`; every change
/// it makes is also the integration's own entry (`integration.created`, `updated`, `deleted`).
package struct IntegrationBulk: Sendable {
    package enum Action: String, Sendable, CaseIterable {
        case export, `import`, enable, disable, delete
    }

    /// Which integrations an action touches: all of them but deleted ones, narrowed by type, status or ids.
    package struct Filter: Sendable, Equatable {
        package var type: IntegrationType?
        package var status: IntegrationStatus?
        package var ids: [UUID]?

        package var json: JSONValue {
            var m: [String: JSONValue] = [:]
            if let type { m["type"] = .string(type.rawValue) }
            if let status { m["status"] = .string(status.rawValue) }
            if let ids { m["ids"] = .array(ids.map { .string($0.uuidString.lowercased()) }) }
            return .object(m)
        }

        func matches(_ r: IntegrationRecord) -> Bool {
            (type.map { $0 == r.type } ?? true) && (status.map { $0 == r.status } ?? true) && (ids.map { $0.contains(r.id) } ?? true)
        }
    }

    let registry: IntegrationRegistry
    /// Run before an integration is deleted (the gateway revokes its OAuth tokens at the provider).
    let beforeDelete: @Sendable (UUID, Principal) async throws -> Void
    /// The most definitions an import takes.
    package static let maxDefinitions = 500

    package init(registry: IntegrationRegistry, beforeDelete: @escaping @Sendable (UUID, Principal) async throws -> Void = { _, _ in }) {
        self.registry = registry
        self.beforeDelete = beforeDelete
    }

    /// A request body: `action`, `filter` (`type`, `status`, `ids`), `format` (export: `json` or `yaml`) and
    /// `document` (import: the exported document, as JSON or as a YAML or JSON text).
    package func run(_ body: JSONValue, by principal: Principal) async throws -> JSONValue {
        guard case .object(let m) = body else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in m.keys.sorted() where !["action", "filter", "format", "document"].contains(key) {
            errors.append(.init(pointer: "/\(jsonPointerEscape(key))", message: "unknown field"))
        }
        let action = m["action"]?.stringValue.flatMap(Action.init(rawValue:))
        if action == nil { errors.append(.init(pointer: "/action", message: "must be one of \(Action.allCases.map(\.rawValue).joined(separator: ", "))")) }
        var filter = Filter()
        if let f = m["filter"] {
            if case .object(let fm) = f {
                for key in fm.keys.sorted() where !["type", "status", "ids"].contains(key) {
                    errors.append(.init(pointer: "/filter/\(jsonPointerEscape(key))", message: "unknown field (type, status, ids)"))
                }
                if let t = fm["type"] {
                    if let type = t.stringValue.flatMap(IntegrationType.init(rawValue:)) { filter.type = type } else { errors.append(.init(pointer: "/filter/type", message: "is not an integration type")) }
                }
                if let s = fm["status"] {
                    if let status = s.stringValue.flatMap(IntegrationStatus.init(rawValue:)) { filter.status = status } else { errors.append(.init(pointer: "/filter/status", message: "is not a status")) }
                }
                if let i = fm["ids"] {
                    let ids = i.arrayValue?.compactMap { $0.stringValue.flatMap(UUID.init(uuidString:)) }
                    if let ids, ids.count == i.arrayValue?.count, ids.count <= 1_000 { filter.ids = ids } else {
                        errors.append(.init(pointer: "/filter/ids", message: "must be a list of at most 1000 integration ids"))
                    }
                }
            } else {
                errors.append(.init(pointer: "/filter", message: "must be an object"))
            }
        }
        let format = m["format"].map { $0.stringValue ?? "" } ?? "json"
        if !["json", "yaml"].contains(format) { errors.append(.init(pointer: "/format", message: "must be json or yaml")) }
        if action == .import, m["document"] == nil { errors.append(.init(pointer: "/document", message: "is required: the exported document")) }
        if let document = m["document"], document.objectValue == nil, document.stringValue == nil {
            errors.append(.init(pointer: "/document", message: "must be an export (an object) or its YAML or JSON text"))
        }
        guard errors.isEmpty, let action else { throw PortalError.validation(errors) }
        switch action {
        case .export: try principal.require(.readIntegrations)
        default: try principal.require(.manageIntegrations)
        }
        let started = registry.clock.now()
        var items: [JSONValue] = []
        var document: JSONValue?
        switch action {
        case .export:
            let records = try await registry.database.read { db in try await IntegrationStore(db).all(organizationID: principal.organizationID, includeDeleted: false) }
                .filter(filter.matches)
            var definitions: [JSONValue] = []
            for record in records {
                definitions.append(try await definition(record))
                items.append(["integrationId": .string(record.id.uuidString.lowercased()), "name": .string(record.name), "result": "exported"])
            }
            let exported: JSONValue = [
                "version": 1, "organization": .string(principal.organizationSlug), "exportedAt": .string(Timestamp.rfc3339(started)),
                "integrations": .array(definitions),
            ]
            document = format == "yaml" ? .string(try Self.yaml(exported)) : exported
        case .import:
            let definitions = try Self.definitions(m["document"] ?? .null)
            for (i, definition) in definitions.enumerated() {
                let name = definition.objectValue?["name"]?.stringValue ?? "#\(i)"
                do {
                    var body = definition.objectValue ?? [:]
                    let skipped = body.removeValue(forKey: "webhookConfig") != nil
                    body.removeValue(forKey: "status")
                    let input = try IntegrationInput.parse(.object(body), definition: true)
                    let view = try await registry.register(input, by: principal, imported: true)
                    var item: [String: JSONValue] = [
                        "integrationId": .string(view.id), "name": .string(name), "result": "imported",
                        "needs": .array((input.authMethod.requiredCredentials.all + input.authMethod.requiredCredentials.anyOf).map(JSONValue.string)),
                    ]
                    if skipped { item["note"] = "its webhook endpoint was not imported: register it with its secret" }
                    items.append(.object(item))
                } catch let error as PortalError {
                    items.append([
                        "name": .string(name), "result": "failed", "error": .string(error.message),
                        "errors": .array(error.fieldErrors.map { ["pointer": .string("/document/integrations/\(i)" + $0.pointer), "message": .string($0.message)] }),
                    ])
                }
            }
        case .enable, .disable, .delete:
            let records = try await registry.database.read { db in try await IntegrationStore(db).all(organizationID: principal.organizationID, includeDeleted: false) }
                .filter(filter.matches)
            for record in records {
                let id = record.id.uuidString.lowercased()
                do {
                    switch action {
                    case .delete:
                        try await beforeDelete(record.id, principal)
                        try await registry.delete(id: record.id, by: principal)
                        items.append(["integrationId": .string(id), "name": .string(record.name), "result": "deleted"])
                    default:
                        let wanted: IntegrationStatus = action == .enable ? .active : .inactive
                        guard record.status != wanted else {
                            items.append(["integrationId": .string(id), "name": .string(record.name), "result": "unchanged"])
                            continue
                        }
                        var patch = IntegrationPatch.empty
                        patch.status = wanted
                        _ = try await registry.update(id: record.id, patch: patch, by: principal)
                        items.append(["integrationId": .string(id), "name": .string(record.name), "result": action == .enable ? "enabled" : "disabled"])
                    }
                } catch let error as PortalError {
                    items.append(["integrationId": .string(id), "name": .string(record.name), "result": "failed", "error": .string(error.message)])
                }
            }
        }
        var counts: [String: Int64] = [:]
        for item in items { counts[item.objectValue?["result"]?.stringValue ?? "failed", default: 0] += 1 }
        let job = BulkJobRecord(
            id: registry.ids.next(), organizationID: principal.organizationID, action: action.rawValue, filter: filter.json,
            counts: .object(counts.mapValues(JSONValue.int)), items: .array(items), requestedBy: principal.owner, createdAt: started, completedAt: registry.clock.now()
        )
        try await registry.database.write { db in
            try await BulkJobStore(db).insert(job)
            try await registry.audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .bulkCompleted, actor: IntegrationRegistry.actor(principal),
                data: [
                    "jobId": .string(job.id.uuidString.lowercased()), "action": .string(action.rawValue), "filter": filter.json, "counts": job.counts,
                    "itemsDigest": .string(CanonicalJSON.digest(job.items)),
                ], time: job.completedAt
            ), in: db)
        }
        registry.audit.wake()
        var view = Self.view(job)
        if let document, case .object(var fields) = view {
            fields["document"] = document
            view = .object(fields)
        }
        return view
    }

    /// A job as the API shows it.
    package static func view(_ job: BulkJobRecord) -> JSONValue {
        [
            "id": .string(job.id.uuidString.lowercased()), "action": .string(job.action), "filter": job.filter, "counts": job.counts, "items": job.items,
            "requestedBy": .string(job.requestedBy), "createdAt": .string(Timestamp.rfc3339(job.createdAt)), "completedAt": .string(Timestamp.rfc3339(job.completedAt)),
        ]
    }

    package func job(id: UUID, organizationID: UUID) async throws -> JSONValue {
        guard let job = try await registry.database.read({ db in try await BulkJobStore(db).find(id: id, organizationID: organizationID) }) else {
            throw PortalError.notFound("bulk job")
        }
        return Self.view(job)
    }

    package func jobs(organizationID: UUID) async throws -> JSONValue {
        let jobs = try await registry.database.read { db in try await BulkJobStore(db).list(organizationID: organizationID, limit: BulkJobStore.kept) }
        return ["items": .array(jobs.map { job in
            ["id": .string(job.id.uuidString.lowercased()), "action": .string(job.action), "counts": job.counts, "requestedBy": .string(job.requestedBy),
             "completedAt": .string(Timestamp.rfc3339(job.completedAt))]
        })]
    }

    /// An integration's definition: everything but secrets (their field names only) and the webhook secret.
    func definition(_ record: IntegrationRecord) async throws -> JSONValue {
        let fields = try await registry.database.read { db in try await registry.open(record, in: db).credentials.keys.sorted() }
        var m: [String: JSONValue] = [
            "name": .string(record.name), "type": .string(record.type.rawValue), "baseUrl": record.baseURL.map(JSONValue.string) ?? .null,
            "authMethod": .string(record.authMethod.rawValue), "credentialFields": .array(fields.map(JSONValue.string)), "config": record.config,
            "status": .string(record.status.rawValue),
        ]
        if let limits = record.rateLimits { m["rateLimits"] = limits }
        if let sync = record.syncConfig { m["syncConfig"] = sync }
        if let processing = record.processing { m["processing"] = processing }
        if case .object(var webhook)? = record.webhookConfig {
            webhook.removeValue(forKey: "secret")
            m["webhookConfig"] = .object(webhook)
        }
        return .object(m)
    }

    /// The definitions of an import document: the exported object, or its YAML or JSON text.
    static func definitions(_ document: JSONValue) throws(PortalError) -> [JSONValue] {
        var root = document
        if let text = document.stringValue {
            guard text.utf8.count <= 8 << 20 else { throw PortalError.validation([.init(pointer: "/document", message: "is larger than 8 MiB")]) }
            do {
                root = try YAMLDocument.parse(text, source: "the document")
            } catch {
                throw PortalError.validation([.init(pointer: "/document", message: "is neither JSON nor YAML: \(error.message)")])
            }
        }
        guard let top = root.objectValue, top["version"] == .int(1), let list = top["integrations"]?.arrayValue else {
            throw PortalError.validation([.init(pointer: "/document", message: "must be an export: version 1 and a list of integrations")])
        }
        guard list.count <= maxDefinitions else {
            throw PortalError.validation([.init(pointer: "/document/integrations", message: "has \(list.count) definitions; at most \(maxDefinitions)")])
        }
        return list
    }

    /// `document` as YAML (keys sorted, so two exports of the same state are equal).
    static func yaml(_ document: JSONValue) throws -> String {
        func node(_ value: JSONValue) -> Node {
            switch value {
            case .null: return Node("null", Tag(.null))
            case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
            case .int(let i): return Node(String(i), Tag(.int))
            case .double(let d): return Node(String(d), Tag(.float))
            case .string(let s): return Node(s, Tag(.str), .doubleQuoted)
            case .array(let items): return Node(items.map(node))
            case .object(let members): return Node(members.sorted { $0.key < $1.key }.map { (Node($0.key), node($0.value)) })
            }
        }
        return try Yams.serialize(node: node(document))
    }
}
