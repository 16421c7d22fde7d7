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

    func handle(_ event: ReceivedWebhookEvent, in db: Transaction) async throws -> String? {
        seen.withLock { $0[event.id, default: 0] += 1 }
        return "counted"
    }
}

/// Writes a record for every event, then fails the events whose body says `"fail": true`.
struct WritesThenFailsHandler: WebhookEventHandler {
    var eventTypes: [String] { ["user.created"] }

    func handle(_ event: ReceivedWebhookEvent, in db: Transaction) async throws -> String? {
        let user = event.payload.objectValue?["data"] ?? [:]
        let id = user.objectValue?["id"]?.stringValue ?? "?"
        try await SyncRecordStore(db).upsert(
            organizationID: event.organizationID, integrationID: event.integrationID, entity: "users", recordID: id, data: user, source: "webhook",
            sourceEventID: event.id.uuidString.lowercased(), at: event.receivedAt
        )
        if event.payload.objectValue?["fail"] == true { throw PortalError(.upstreamFailed, "the handler failed for \(id)") }
        return "wrote \(id)"
    }
}

/// Signs `body` for the generic `hmac` scheme with the tests' secret.
func signedDelivery(_ body: String, eventID: String, url: String) -> InboundWebhook {
    let bytes = Array(body.utf8)
    let signature = "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: Array("queue-secret-123".utf8))))
    return InboundWebhook(method: "POST", url: url, headers: [("X-Webhook-Signature", signature), ("X-Event-Id", eventID)], body: bytes)
}

/// An organization with an integration and a registered `hmac` endpoint (`/webhooks/acme/crm`, event ids in
/// `X-Event-Id`), its webhook service and a running sequencer.
struct QueueFixture: Sendable {
    let test: TestDatabase
    let db: Database
    let org: Organization
    let vault: CredentialVault
    let sequencer: LedgerSequencer
    let service: WebhookService
    let integrationID: UUID
    let endpoint: WebhookEndpointView

    static func with(_ backend: Backend, endpoint extra: [String: JSONValue] = [:], _ body: @Sendable (QueueFixture) async throws -> Void) async throws {
        try await TestDatabase.with(backend) { test, db in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: MasterKeyRing.generateBase64(), keyFile: nil))
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
            let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
            let service = WebhookService(database: db, vault: vault, audit: sequencer, registry: registry, logger: quietLogger, publicURL: "https://portal.example.test")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sequencer.run() }
                let integration = try await registry.register(try IntegrationInput.parse([
                    "name": "CRM", "type": "enterprise", "baseUrl": "https://api.example.com", "authMethod": "api_key", "credentials": ["apiKey": "k-0123456789"],
                ]), by: admin)
                let integrationID = try #require(UUID(uuidString: integration.id))
                var input: [String: JSONValue] = ["endpoint": "/webhooks/crm", "secret": "queue-secret-123", "eventIdHeader": "X-Event-Id"]
                input.merge(extra) { $1 }
                let endpoint = try await service.register(integrationID: integrationID, input: try WebhookEndpointInput.parse(.object(input), partial: false), by: admin)
                #expect(endpoint.path == "/webhooks/acme/crm")
                try await body(QueueFixture(
                    test: test, db: db, org: org, vault: vault, sequencer: sequencer, service: service, integrationID: integrationID, endpoint: endpoint
                ))
                group.cancelAll()
            }
        }
    }

    /// Every entry of the organization's ledger, once the sequencer has chained what is queued.
    func entries() async throws -> [LedgerEntry] {
        try await sequencer.chainedEntries(of: org.id, in: db)
    }
}

@Suite("Webhook queue")
struct WebhookQueueTests {
    @Test("concurrent deliveries of one event store and chain it once; the rest are acknowledged as replays", arguments: Backend.available)
    func concurrentReplays(backend: Backend) async throws {
        try await QueueFixture.with(backend) { f in
            // 20 copies of each of 5 events arrive at once: most share a batch with their original.
            let answers = try await withThrowingTaskGroup(of: (String, JSONValue).self) { senders in
                for i in 0..<100 {
                    senders.addTask {
                        let answer = try await f.service.receive(
                            slug: "acme", name: "crm", signedDelivery(#"{"type":"user.created","data":{"id":"u-\#(i % 5)"}}"#, eventID: "e-\(i % 5)", url: f.endpoint.url)
                        )
                        #expect(answer.status == 200)
                        return ("e-\(i % 5)", try JSONValue.parse(Data(answer.body)))
                    }
                }
                return try await senders.reduce(into: [(String, JSONValue)]()) { $0.append($1) }
            }
            for event in 0..<5 {
                let mine = answers.filter { $0.0 == "e-\(event)" }.map(\.1)
                #expect(mine.filter { $0.objectValue?["duplicate"] == nil }.count == 1, "e-\(event): exactly one delivery is stored")
                #expect(mine.filter { $0.objectValue?["duplicate"] == true }.count == 19)
                // Every acknowledgement, the duplicates' too, names the one stored event.
                let named = Set(mine.compactMap { $0.objectValue?["id"]?.stringValue })
                #expect(named.count == 1 && mine.allSatisfy { $0.objectValue?["id"] != nil }, "e-\(event): \(named)")
            }
            let stored = try await f.db.read { tx in
                try await tx.raw("SELECT COUNT(*) AS n FROM webhook_events").first()?.decode(column: "n", as: Int.self)
            }
            #expect(stored == 5)
            let received = try await f.entries().filter { $0.type == "webhook.received" }
            #expect(received.count == 5)
            #expect(Set(received.compactMap { $0.data.objectValue?["providerEventId"]?.stringValue }) == Set((0..<5).map { "e-\($0)" }))
        }
    }

    @Test("a handler failing in a shared batch rolls back only its own event's writes; the others are processed", arguments: Backend.available)
    func failureInBatch(backend: Backend) async throws {
        try await QueueFixture.with(backend, endpoint: ["retryPolicy": ["maxRetries": 2, "baseDelay": 3_600_000, "maxDelay": 3_600_000]]) { f in
            for i in 0..<10 {
                let body = #"{"type":"user.created","fail":\#(i % 3 == 0),"data":{"id":"u-\#(i)"}}"#
                let answer = try await f.service.receive(slug: "acme", name: "crm", signedDelivery(body, eventID: "e-\(i)", url: f.endpoint.url))
                #expect(answer.status == 200)
            }
            let worker = WebhookWorkers(service: f.service, handlers: [WritesThenFailsHandler()])
            #expect(try await worker.drain() == 10, "one batch takes all ten")
            #expect(try await worker.drain() == 0, "the failed ones wait for their retry (an hour: a busy machine took over a minute between the drains)")
            let rows = try await f.db.read { tx in
                try await tx.raw("SELECT provider_event_id, status, retry_count, error_message FROM webhook_events ORDER BY provider_event_id").all().map {
                    (try $0.decode(column: "provider_event_id", as: String.self), try $0.decode(column: "status", as: String.self),
                     try $0.decode(column: "retry_count", as: Int.self), try $0.decodeOptional(column: "error_message", as: String.self))
                }
            }
            for (id, status, retries, error) in rows {
                let failing = Int(id.dropFirst(2))! % 3 == 0
                #expect(status == (failing ? "retrying" : "processed"), "\(id)")
                #expect(retries == (failing ? 1 : 0))
                #expect((error?.contains("the handler failed") ?? false) == failing)
            }
            let records = try await f.db.read { tx in
                try await tx.raw("SELECT record_id FROM sync_records WHERE integration_id = \(bind: f.integrationID) ORDER BY record_id").all()
                    .map { try $0.decode(column: "record_id", as: String.self) }
            }
            #expect(Set(records) == Set((0..<10).filter { $0 % 3 != 0 }.map { "u-\($0)" }), "the failing events' writes were rolled back")
            let types = try await f.entries().map(\.type)
            #expect(types.filter { $0 == "webhook.processed" }.count == 6)
            #expect(types.filter { $0 == "webhook.failed" }.count == 4)
        }
    }

    @Test("two workers with their own connection pools drain one queue on PostgreSQL and never process an event twice", arguments: Backend.available.filter { $0 == .postgres })
    func twoWorkers(backend: Backend) async throws {
        try await QueueFixture.with(backend) { f in
            let count = 200
            try await withThrowingTaskGroup(of: Int.self) { senders in
                for i in 0..<count {
                    senders.addTask {
                        try await f.service.receive(
                            slug: "acme", name: "crm", signedDelivery(#"{"type":"user.created","data":{"id":"u-\#(i)"}}"#, eventID: "e-\(i)", url: f.endpoint.url)
                        ).status
                    }
                }
                for try await status in senders { #expect(status == 200) }
            }
            // Two workers, each with its own pool, as two processes would have.
            let handler = CountingHandler()
            try await Database.withDatabase(url: f.test.url, logger: quietLogger) { second in
                let otherSequencer = LedgerSequencer(database: second, logger: quietLogger)
                let otherService = WebhookService(
                    database: second, vault: f.vault, audit: otherSequencer, registry: IntegrationRegistry(database: second, vault: f.vault, audit: otherSequencer, defaultPolicy: OrganizationPolicy(approvals: .off)),
                    logger: quietLogger, publicURL: "https://portal.example.test"
                )
                let small = WebhookWorkers.Configuration(batchSize: 4)
                let workers = [WebhookWorkers(service: f.service, handlers: [handler], configuration: small), WebhookWorkers(service: otherService, handlers: [handler], configuration: small)]
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
            let processed = try await f.entries().filter { $0.type == "webhook.processed" }
            #expect(processed.count == count)
            #expect(Set(processed.compactMap { $0.data.objectValue?["eventId"]?.stringValue }).count == count)
        }
    }
}
