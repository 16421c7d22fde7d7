import Foundation
import Integrations
import Ledger
import PortalCore
import PortalTestSupport
import Storage
import Sync
import Testing
import Webhooks

@Suite("Real-time sync")
struct SyncWebhookHandlerTests {
    func event(_ type: String, _ payload: JSONValue, org: UUID, integration: UUID) -> ReceivedWebhookEvent {
        ReceivedWebhookEvent(
            id: UUID(), organizationID: org, integrationID: integration, endpointID: UUID(), eventType: type, providerEventID: nil, payload: payload,
            receivedAt: Date()
        )
    }

    @Test("user.* and data.sync events go through the sync upsert path: create, update, delete, conflicts by the policy", arguments: Backend.available)
    func webhookEvents(backend: Backend) async throws {
        try await SyncEnvironment.with(backend, conflictResolution: ["strategy": "manual"]) { env, integrationID in
            let handler = SyncWebhookHandler(vault: env.vault, audit: env.sequencer)
            let org = env.admin.organizationID
            func handle(_ type: String, _ payload: JSONValue) async throws -> String? {
                try await env.db.write { tx in try await handler.handle(event(type, payload, org: org, integration: integrationID), in: tx) }
            }
            #expect(try await handle("user.created", ["data": ["object": ["id": "u-1", "email": "ada@example.test", "plan": "free"]]]) == "users: 1 created, 0 updated, 0 unchanged, 0 conflicts, 0 rejected")
            #expect(try await handle("user.updated", ["user": ["id": "u-1", "email": "ada@example.test", "plan": "pro"]])?.contains("1 updated") == true)
            #expect(try await handle("user.updated", ["user": ["id": "u-1", "email": "ada@example.test", "plan": "pro"]])?.contains("1 unchanged") == true, "a replayed version changes nothing")
            #expect(try await handle("data.sync", ["entity": "groups", "records": [["id": 7, "name": "Admins"], ["id": 8, "name": "Staff"], ["name": "no id"]]])?
                .contains("2 created, 0 updated, 0 unchanged, 0 conflicts, 1 rejected") == true)
            var users = try await env.records(integrationID, "users")
            #expect(users["u-1"]?["plan"] == "pro")
            #expect(try await env.records(integrationID, "groups").keys.sorted() == ["7", "8"])
            // A local edit, then the provider's change: manual keeps the portal's copy and files a conflict.
            _ = try await env.engine.editRecord(integrationID: integrationID, entity: "users", recordID: "u-1", patch: ["plan": "team"], by: env.admin)
            #expect(try await handle("user.updated", ["user": ["id": "u-1", "email": "ada@example.test", "plan": "enterprise"]])?.contains("1 conflicts") == true)
            users = try await env.records(integrationID, "users")
            #expect(users["u-1"]?["plan"] == "team")
            let open = try await env.engine.conflicts(integrationID: integrationID, status: "open", cursor: nil, limit: 10, by: env.admin)
            #expect(open.count == 1 && open.first?.fields == ["*"])
            // Resolving with the provider's side ends the local divergence.
            let resolved = try await env.engine.resolveConflict(integrationID: integrationID, conflictID: UUID(uuidString: open[0].id)!, body: ["choose": "source"], by: env.admin)
            #expect(resolved.status == "resolved")
            #expect(try await env.records(integrationID, "users")["u-1"]?["plan"] == "enterprise")
            await #expect(throws: PortalError.self) {
                try await env.engine.resolveConflict(integrationID: integrationID, conflictID: UUID(uuidString: open[0].id)!, body: ["choose": "source"], by: env.admin)
            }
            #expect(try await handle("user.deleted", ["data": ["id": "u-1"]]) == "deleted users/u-1")
            #expect(try await env.records(integrationID, "users")["u-1"] == nil)
            await #expect(throws: PortalError.self) { try await handle("user.created", ["data": ["email": "no-id@example.test"]]) }
            let types = try await env.ledgerTypes().map(\.type)
            #expect(types.filter { $0 == "sync.conflict" }.count == 2, "filed, then resolved")
            #expect(types.contains("record.updated"))
        }
    }
}
