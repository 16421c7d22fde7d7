import Compliance
import Foundation
import Integrations
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Sync
import Testing

@Suite("Records of people")
struct SubjectSealingTests {
    /// An integration syncing `people` (records of people, keyed by email) from the fake provider.
    static func people(_ env: SyncEnvironment, pageSize: Int) async throws -> UUID {
        let integration = try await env.registry.register(try IntegrationInput.parse([
            "name": "People", "type": "identity_provider", "baseUrl": .string(env.provider.baseURL), "authMethod": "api_key",
            "credentials": ["apiKey": "k-0123456789"],
            "syncConfig": ["entities": ["people": [
                "endpoint": "/cursor/users", "itemsPath": "/data", "subjectIdField": "email",
                "pagination": ["style": "cursor", "cursorParam": "after", "nextCursorPath": "/meta/next", "pageSizeParam": "limit", "pageSize": .int(Int64(pageSize))],
            ]]],
        ]), by: env.admin)
        return try #require(UUID(uuidString: integration.id))
    }

    @Test("after a master-key rotation (the old key retired) a subject is still found: export returns its records, erasure destroys its key", arguments: Backend.available)
    func acrossRotation(backend: Backend) async throws {
        try await SyncEnvironment.with(backend) { env, _ in
            env.provider.seed(12)
            let id = try await Self.people(env, pageSize: 5)
            #expect(try await env.sync(id, .full, ["people"]).first?.status == .completed)
            let org = env.admin.organizationID
            let before = try await env.engine.subjectLookup(organizationID: org, subjectID: "user3@example.test")

            // `portal keys rotate-master`, then the old key retired: every data key re-wrapped under the new one only.
            let old = try MasterKeyRing.Key(base64: env.masterKey)
            let new = try MasterKeyRing.Key(base64: MasterKeyRing.generateBase64())
            let both = CredentialVault(ring: try MasterKeyRing(keys: [new, old]))
            #expect(try await env.db.write { try await both.rewrapAll(under: new, in: $0) } > 0)
            _ = try await env.db.write { try await both.retire(masterKeyID: old.id, in: $0) }
            let rotated = CredentialVault(ring: try MasterKeyRing(keys: [new]))

            let after = try await env.db.write { try await SubjectSealing(vault: rotated).lookup(organizationID: org, subjectID: " User3@Example.test ", in: $0) }
            #expect(after == before, "the lookup does not depend on the master key")
            let requests = SubjectRequests(database: env.db, vault: rotated, gateway: env.gateway, audit: env.sequencer, clock: SystemWallClock(), logger: quietLogger)
            let exported = try await requests.export(subjectID: "user3@example.test", by: env.admin)
            let records = exported.objectValue?["records"]?.arrayValue ?? []
            #expect(records.count == 1, "\(exported)")
            #expect("\(records)".contains("user3@example.test"), "the record opens under the rotated key")
            let erasure = try await requests.erase(subjectID: "user3@example.test", by: env.admin)
            #expect(erasure.keyDestroyed && erasure.recordsDeleted == 1, "\(erasure)")
            let keys = try await env.db.read { try await SubjectKeyStore($0).find(organizationID: org, lookups: [before]) }
            #expect(keys.isEmpty, "the subject's key row is gone")
        }
    }

    @Test("records naming a subject are stored under its key; erasing it leaves them unreadable and keeps it out of later syncs", arguments: Backend.available)
    func sealedRecords(backend: Backend) async throws {
        try await SyncEnvironment.with(backend) { env, _ in
            env.provider.seed(20)
            let id = try await Self.people(env, pageSize: 8)
            let first = try #require(try await env.sync(id, .full, ["people"]).first)
            #expect(first.status == .completed && env.count(first.counts, "created") == 20, "\(first.counts)")
            // At rest: sealed, no email in the clear, in the records and their provider versions.
            let raw = try await env.db.read { tx in
                try await tx.raw("SELECT data, source_data FROM sync_records WHERE integration_id = \(bind: id)").all().map {
                    "\(try $0.decode(column: "data", as: String.self)) \(try $0.decode(column: "source_data", as: String.self))"
                }
            }
            #expect(raw.count == 20 && raw.allSatisfy { $0.contains("$sealed") && !$0.contains("@example.test") })
            // Through the API: readable.
            let page = try await env.engine.records(integrationID: id, entity: "people", modifiedAfter: nil, cursor: nil, limit: 100, by: env.admin)
            #expect(Set(page.items.compactMap { $0.data.objectValue?["email"]?.stringValue }) == Set((1...20).map { "user\($0)@example.test" }))

            // Erasing user 3: the key goes, the record no longer opens.
            let lookup = try await env.engine.subjectLookup(organizationID: env.admin.organizationID, subjectID: " User3@Example.test ")
            #expect(try await env.db.write { try await SubjectKeyStore($0).erase(organizationID: env.admin.organizationID, lookup: lookup, at: Date()) })
            let after = try await env.engine.records(integrationID: id, entity: "people", modifiedAfter: nil, cursor: nil, limit: 100, by: env.admin)
            #expect(after.items.first { $0.recordId == "u-000003" }?.data == ["$erased": true])
            await #expect(throws: PortalError.self) {
                try await env.engine.editRecord(integrationID: id, entity: "people", recordID: "u-000003", patch: ["plan": "x"], by: env.admin)
            }
            // The provider still has the user, and changes it: the next syncs do not bring it back.
            env.provider.update("u-000003", plan: "pro")
            let second = try #require(try await env.sync(id, .full, ["people"]).first)
            #expect(env.count(second.counts, "suppressed") == 1 && env.count(second.counts, "created") == 0, "\(second.counts)")
            let live = try await env.records(id, "people")
            #expect(live.count == 19 && live["u-000003"] == nil)
            let keys = try await env.db.read { tx in
                try await tx.raw("SELECT COUNT(*) AS n FROM subject_keys").first()?.decode(column: "n", as: Int.self)
            }
            #expect(keys == 19, "no new key for the erased subject")
        }
    }
}
