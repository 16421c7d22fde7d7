import Crypto
import Foundation
import Integrations
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing
import Webhooks

/// Counts how often each event reached the handler.
final class CountingHandler: WebhookEventHandler {
    let seen = Mutex<[UUID: Int]>([:])
    var eventTypes: [String] { ["user.created"] }

    func handle(_ event: ReceivedWebhookEvent, in db: any SQLDatabase) async throws -> String? {
        seen.withLock { $0[event.id, default: 0] += 1 }
        return "counted"
    }
}

@Suite("Webhook queue")
struct WebhookQueueTests {
    @Test("two workers with their own connection pools drain one queue on PostgreSQL and never process an event twice", arguments: Backend.available.filter { $0 == .postgres })
    func twoWorkers(backend: Backend) async throws {
        try await TestDatabase.with(backend) { test, db in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: MasterKeyRing.generateBase64(), keyFile: nil))
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer)
            let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
            let service = WebhookService(database: db, vault: vault, audit: sequencer, registry: registry, logger: quietLogger, publicURL: "https://portal.example.test")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sequencer.run() }
                let integration = try await registry.register(try IntegrationInput.parse([
                    "name": "CRM", "type": "enterprise", "baseUrl": "https://api.example.com", "authMethod": "api_key", "credentials": ["apiKey": "k-0123456789"],
                ]), by: admin)
                let endpoint = try await service.register(
                    integrationID: try #require(UUID(uuidString: integration.id)),
                    input: try WebhookEndpointInput.parse(["endpoint": "/webhooks/crm", "secret": "queue-secret-123", "eventIdHeader": "X-Event-Id"], partial: false),
                    by: admin
                )
                #expect(endpoint.path == "/webhooks/acme/crm")
                let count = 200
                try await withThrowingTaskGroup(of: Int.self) { senders in
                    for i in 0..<count {
                        senders.addTask {
                            let body = Array(#"{"type":"user.created","data":{"id":"u-\#(i)"}}"#.utf8)
                            let signature = "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array("queue-secret-123".utf8))))
                            let answer = try await service.receive(slug: "acme", name: "crm", InboundWebhook(
                                method: "POST", url: endpoint.url, headers: [("X-Webhook-Signature", signature), ("X-Event-Id", "e-\(i)")], body: body
                            ))
                            return answer.status
                        }
                    }
                    for try await status in senders { #expect(status == 200) }
                }
                // Two workers, each with its own pool, as two processes would have.
                let handler = CountingHandler()
                try await Database.withDatabase(url: test.url, logger: quietLogger) { second in
                    let otherSequencer = LedgerSequencer(database: second, logger: quietLogger)
                    let otherService = WebhookService(
                        database: second, vault: vault, audit: otherSequencer, registry: IntegrationRegistry(database: second, vault: vault, audit: otherSequencer),
                        logger: quietLogger, publicURL: "https://portal.example.test"
                    )
                    let small = WebhookWorkers.Configuration(batchSize: 4)
                    let workers = [WebhookWorkers(service: service, handlers: [handler], configuration: small), WebhookWorkers(service: otherService, handlers: [handler], configuration: small)]
                    #expect(workers[0].owner != workers[1].owner)
                    let taken = try await withThrowingTaskGroup(of: Int.self) { drains in
                        for worker in workers {
                            drains.addTask {
                                var total = 0
                                while true {
                                    let n = try await worker.drain()
                                    if n == 0 { return total }
                                    total += n
                                }
                            }
                        }
                        return try await drains.reduce(into: [Int]()) { $0.append($1) }
                    }
                    #expect(taken.reduce(0, +) == count)
                    #expect(taken.allSatisfy { $0 > 0 }, "both workers took a share: \(taken)")
                    try await otherSequencer.drainAll()
                }
                let seen = handler.seen.withLock { $0 }
                #expect(seen.count == count && seen.values.allSatisfy { $0 == 1 })
                try await sequencer.drainAll()
                let processed = try await db.read { tx in
                    try await LedgerStore(tx).entries(org.id, from: 0, limit: 10_000).map { try LedgerEntry(canonical: $0.bytes) }
                }.filter { $0.type == "webhook.processed" }
                #expect(processed.count == count)
                #expect(Set(processed.compactMap { $0.data.objectValue?["eventId"]?.stringValue }).count == count)
                group.cancelAll()
            }
        }
    }
}
