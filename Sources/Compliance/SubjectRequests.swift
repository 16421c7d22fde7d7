import Foundation
package import Integrations
package import Ledger
package import Logging
package import PortalCore
package import Storage

/// Data-subject requests (GDPR Art. 15, 17, 19, 20): what the portal holds about a person, exported; and
/// erasure, which deletes it, destroys the subject's salt and key, asks the recipients that declare a
/// deletion endpoint to delete too, and ledgers each step without personal data.
///
/// A subject is named by its id as the integrations know it (an email, a user id); it is found by its
/// lookup (a keyed hash) and appears in the ledger only as its commitment, HMAC-SHA256 under its random salt.
package struct SubjectRequests: Sendable {
    let database: Database
    let vault: CredentialVault
    let sealing: SubjectSealing
    let gateway: any OutboundTransport
    let audit: any AuditTrail
    let clock: any WallClock
    let logger: Logger

    package init(database: Database, vault: CredentialVault, gateway: any OutboundTransport, audit: any AuditTrail, clock: any WallClock, logger: Logger) {
        self.database = database
        self.vault = vault
        sealing = SubjectSealing(vault: vault)
        self.gateway = gateway
        self.audit = audit
        self.clock = clock
        self.logger = logger
    }

    static func checked(_ subjectID: String) throws(PortalError) -> String {
        let trimmed = subjectID.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...320).contains(trimmed.count) else {
            throw PortalError(.validationFailed, "the subject id must be 1 to 320 characters", fieldErrors: [.init(pointer: "subjectId", message: "1 to 320 characters")])
        }
        return trimmed
    }

    /// The subject's commitment, when its salt exists (nil once erased or never seen).
    func commitment(organizationID: UUID, subjectID: String, lookup: String) async throws -> String? {
        let row = try await database.read { db in try await SubjectKeyStore(db).find(organizationID: organizationID, lookups: [lookup])[lookup] }
        return row.map { SubjectSealing.commitment(salt: $0.salt, subjectID: subjectID) }
    }

    // MARK: Export (Art. 15 and 20)

    /// Everything held about the subject, in JSON: its synced records (opened), and the dated disclosures to
    /// third parties the ledger records under its commitment. Appends `subject.request_received` and
    /// `subject.exported`.
    package func export(subjectID raw: String, by principal: Principal, actor given: String? = nil) async throws -> JSONValue {
        try principal.require(.manageReports)
        let subjectID = try Self.checked(raw)
        let org = principal.organizationID
        let lookup = try await database.write { [sealing] db in try await sealing.lookup(organizationID: org, subjectID: subjectID, in: db) }
        let commitment = try await commitment(organizationID: org, subjectID: subjectID, lookup: lookup)
        let erased = try await database.read { db in try await SubjectKeyStore(db).erased(organizationID: org, lookups: [lookup]).contains(lookup) }
        let actor = given ?? principal.tokenID.uuidString.lowercased()
        try await audit.append([AuditEvent(
            organizationID: org, type: .subjectRequestReceived, actor: actor,
            data: ["kind": "access", "commitment": .string(commitment ?? ""), "known": commitment != nil ? 1 : 0], time: clock.now()
        )])
        let (records, names) = try await database.read { db in
            let rows = try await SubjectDataStore(db).records(organizationID: org, lookup: lookup)
            let keys = try await sealing.keys(organizationID: org, lookups: [lookup], create: false, in: db, at: clock.now())
            let opened = rows.map { row -> JSONValue in
                let aad = SubjectSealing.aad(organizationID: org, integrationID: row.integrationID, entity: row.entity, recordID: row.recordID)
                var m: [String: JSONValue] = [
                    "integrationId": .string(row.integrationID.uuidString.lowercased()), "entity": .string(row.entity), "recordId": .string(row.recordID),
                    "data": SubjectSealing.open(row.data, keys: keys, aad: aad), "updatedAt": .string(Timestamp.rfc3339(row.updatedAt)),
                ]
                if let deleted = row.deletedAt { m["deletedAt"] = .string(Timestamp.rfc3339(deleted)) }
                return .object(m)
            }
            let names = try await IntegrationStore(db).all(organizationID: org, includeDeleted: true).map { ($0.id.uuidString.lowercased(), $0.name) }
            return (opened, Dictionary(names, uniquingKeysWith: { a, _ in a }))
        }
        var disclosures: [JSONValue] = []
        if let commitment { disclosures = try await self.disclosures(organizationID: org, commitment: commitment, names: names) }
        var recipients: [String: Int] = [:]
        for d in disclosures { if let name = d.objectValue?["recipient"]?.stringValue { recipients[name, default: 0] += 1 } }
        let now = clock.now()
        try await audit.append([AuditEvent(
            organizationID: org, type: .subjectExported, actor: actor,
            data: ["commitment": .string(commitment ?? ""), "records": .int(Int64(records.count)), "disclosures": .int(Int64(disclosures.count))], time: now
        )])
        return [
            "subject": ["id": .string(subjectID), "commitment": commitment.map(JSONValue.string) ?? .null, "erased": .bool(erased)],
            "organization": .string(principal.organizationSlug), "generatedAt": .string(Timestamp.rfc3339(now)),
            "records": .array(records), "disclosures": .array(disclosures),
            "recipients": .array(recipients.keys.sorted().map { ["recipient": .string($0), "disclosures": .int(Int64(recipients[$0]!))] }),
        ]
    }

    /// Ledger entries of the organization naming `commitment` in `data.subjects`: the calls that disclosed
    /// the subject's data, oldest first.
    func disclosures(organizationID: UUID, commitment: String, names: [String: String]) async throws -> [JSONValue] {
        var out: [JSONValue] = []
        let needle = Array(commitment.utf8)
        for try await page in LedgerReader(database: database, cachedTiles: 0).pages(organizationID) {
            for row in page where row.bytes.count >= needle.count && Self.contains(row.bytes, needle) {
                guard let entry = try? LedgerEntry(canonical: row.bytes), entry.data.objectValue?["subjects"]?.arrayValue?.contains(.string(commitment)) == true else { continue }
                let data = entry.data.objectValue ?? [:]
                out.append([
                    "seq": .int(entry.seq), "time": .string(entry.time), "type": .string(entry.type),
                    "integrationId": entry.integration.map(JSONValue.string) ?? .null,
                    "recipient": .string(entry.integration.flatMap { names[$0] } ?? "unknown"),
                    "host": data["host"] ?? .null, "endpoint": data["endpoint"] ?? .null, "method": data["method"] ?? .null, "outcome": data["outcome"] ?? .null,
                ])
            }
        }
        return out
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var i = 0
        let end = haystack.count - needle.count
        while i <= end {
            if haystack[i] == first, haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }

    // MARK: Erasure (Art. 17 and 19)

    /// What an erasure did.
    package struct Erasure: Sendable, Encodable {
        package var commitment: String?
        package var recordsDeleted: Int
        package var conflictsDeleted: Int
        package var requestBodiesCleared: Int
        package var webhookPayloadsErased: Int
        package var keyDestroyed: Bool
        package var recipients: [Recipient]
        package var erasedAt: String

        /// One recipient asked to delete (Art. 17(2)), and what it answered.
        package struct Recipient: Sendable, Encodable {
            package var integrationId: String
            package var name: String
            /// `deleted` (2xx), `not_found` (404: nothing held), `failed`, or `refused` (by the portal).
            package var outcome: String
            package var status: Int?
            package var detail: String?
        }
    }

    /// Erases the subject: synced records and conflicts deleted, stored request bodies and webhook payloads
    /// that mention it cleared, its salt and key destroyed (what remains sealed for it is unreadable and its
    /// ledger commitments unlinkable), and each integration with a `subjectDeletion` endpoint asked to delete.
    /// Appends `subject.request_received` and `subject.erased`, neither with personal data.
    package func erase(subjectID raw: String, by principal: Principal, actor given: String? = nil) async throws -> Erasure {
        try principal.require(.manageReports)
        let subjectID = try Self.checked(raw)
        let org = principal.organizationID
        let actor = given ?? principal.tokenID.uuidString.lowercased()
        let lookup = try await database.write { [sealing] db in try await sealing.lookup(organizationID: org, subjectID: subjectID, in: db) }
        let commitment = try await commitment(organizationID: org, subjectID: subjectID, lookup: lookup)
        try await audit.append([AuditEvent(
            organizationID: org, type: .subjectRequestReceived, actor: actor,
            data: ["kind": "erasure", "commitment": .string(commitment ?? ""), "known": commitment != nil ? 1 : 0], time: clock.now()
        )])

        // The recipients first (while the records still say which integrations hold the subject).
        let recipients = try await askRecipients(subjectID: subjectID, principal: principal)

        let webhookErased = try await erasePayloads(organizationID: org, subjectID: subjectID)
        let now = clock.now()
        let (deleted, cleared, destroyed) = try await database.write { db in
            let store = SubjectDataStore(db)
            let deleted = try await store.deleteRecords(organizationID: org, lookup: lookup)
            let cleared = try await store.clearRequestBodies(organizationID: org, mentioning: subjectID)
            let destroyed = try await SubjectKeyStore(db).erase(organizationID: org, lookup: lookup, at: now)
            return (deleted, cleared, destroyed)
        }
        let erasure = Erasure(
            commitment: commitment, recordsDeleted: deleted.records, conflictsDeleted: deleted.conflicts, requestBodiesCleared: cleared,
            webhookPayloadsErased: webhookErased, keyDestroyed: destroyed, recipients: recipients, erasedAt: Timestamp.rfc3339(now)
        )
        try await audit.append([AuditEvent(
            organizationID: org, type: .subjectErased, actor: actor,
            data: [
                "commitment": .string(commitment ?? ""), "recordsDeleted": .int(Int64(deleted.records)), "conflictsDeleted": .int(Int64(deleted.conflicts)),
                "requestBodiesCleared": .int(Int64(cleared)), "webhookPayloadsErased": .int(Int64(webhookErased)), "keyDestroyed": destroyed ? 1 : 0,
                "recipients": .array(recipients.map { ["integration": .string($0.integrationId), "outcome": .string($0.outcome), "status": .int(Int64($0.status ?? 0))] }),
            ],
            time: now
        )])
        return erasure
    }

    /// Asks every active integration of the organization that declares `config.subjectDeletion`
    /// (`{"method": "DELETE", "endpoint": "/users/{subjectId}"}`) to delete the subject, through the gateway.
    func askRecipients(subjectID: String, principal: Principal) async throws -> [Erasure.Recipient] {
        let targets = try await database.read { db in
            try await IntegrationStore(db).all(organizationID: principal.organizationID, includeDeleted: false).compactMap { integration -> (UUID, String, String, String)? in
                guard let deletion = IntegrationConfiguration.stored(integration.config).subjectDeletion else { return nil }
                return (integration.id, integration.name, deletion.method, deletion.endpoint)
            }
        }
        var out: [Erasure.Recipient] = []
        let encoded = subjectID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~@"))) ?? subjectID
        // The portal itself asks, with the caller's authority, as an operator would.
        let asking = Principal(tokenID: principal.tokenID, organizationID: principal.organizationID, organizationSlug: principal.organizationSlug, role: .admin, owner: principal.owner)
        for (id, name, method, endpoint) in targets {
            let call = GatewayCall(method: method.uppercased(), endpoint: endpoint.replacingOccurrences(of: "{subjectId}", with: encoded), headers: [], body: [], dataSubjects: [])
            var recipient = Erasure.Recipient(integrationId: id.uuidString.lowercased(), name: name, outcome: "failed", status: nil, detail: nil)
            do {
                let result = try await gateway.perform(call, integrationID: id, by: asking)
                recipient.status = result.status
                recipient.outcome = (200..<300).contains(result.status) ? "deleted" : result.status == 404 ? "not_found" : "failed"
            } catch let error as PortalError {
                recipient.outcome = error.code == .refused || error.code == .throttled ? "refused" : "failed"
                recipient.detail = String(error.message.prefix(300))
            }
            out.append(recipient)
        }
        return out
    }

    /// Replaces the stored bodies of the organization's webhook events that mention the subject.
    func erasePayloads(organizationID: UUID, subjectID: String) async throws -> Int {
        let needle = subjectID.lowercased()
        var after: UUID?
        var erased = 0
        while true {
            let page = try await database.read { db in try await SubjectDataStore(db).webhookPayloads(organizationID: organizationID, after: after, limit: 500) }
            var hits: [UUID] = []
            try await database.read { db in
                for (id, payload) in page where payload.objectValue?["$erased"] == nil {
                    guard let body = try? await vault.open(payload, organizationID: organizationID, context: VaultContext.webhookEvent(id), in: db) else { continue }
                    if String(decoding: body, as: UTF8.self).lowercased().contains(needle) { hits.append(id) }
                }
            }
            if !hits.isEmpty {
                try await database.write { db in try await SubjectDataStore(db).erasePayloads(organizationID: organizationID, ids: hits) }
                erased += hits.count
            }
            guard page.count == 500, let last = page.last else { break }
            after = last.id
        }
        return erased
    }
}
