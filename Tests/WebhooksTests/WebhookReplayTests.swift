import Crypto
import Foundation
import Integrations
import Ledger
import Logging
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing
@testable import Webhooks

/// An organization with an integration, a webhook service logging into a capture, and a running sequencer;
/// endpoints are registered by each test.
struct ReplayFixture: Sendable {
    let db: Database
    let org: Organization
    let sequencer: LedgerSequencer
    let service: WebhookService
    let registry: IntegrationRegistry
    let admin: Principal
    let integrationID: UUID
    let logs: LogCapture
    let vault: CredentialVault

    static func with(_ backend: Backend, _ body: @Sendable (ReplayFixture) async throws -> Void) async throws {
        try await TestDatabase.with(backend) { _, db in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: MasterKeyRing.generateBase64(), keyFile: nil))
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
            let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
            let logs = LogCapture()
            let service = WebhookService(
                database: db, vault: vault, audit: sequencer, registry: registry, logger: logs.logger(label: "portal.webhooks"), publicURL: "https://portal.example.test"
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sequencer.run() }
                let integration = try await registry.register(try IntegrationInput.parse([
                    "name": "Provider", "type": "enterprise", "baseUrl": "https://api.example.com", "authMethod": "api_key", "credentials": ["apiKey": "k-0123456789"],
                ]), by: admin)
                try await body(ReplayFixture(
                    db: db, org: org, sequencer: sequencer, service: service, registry: registry, admin: admin,
                    integrationID: try #require(UUID(uuidString: integration.id)), logs: logs, vault: vault
                ))
                group.cancelAll()
            }
        }
    }

    /// Registers an endpoint named `name` with the given scheme, secret and options.
    func register(_ name: String, scheme: WebhookScheme, secret: String, extra: [String: JSONValue] = [:]) async throws -> WebhookEndpointView {
        var input: [String: JSONValue] = ["endpoint": .string("/webhooks/\(name)"), "scheme": .string(scheme.rawValue), "secret": .string(secret)]
        input.merge(extra) { $1 }
        return try await service.register(integrationID: integrationID, input: try WebhookEndpointInput.parse(.object(input), partial: false), by: admin)
    }

    /// Signs `body` as the provider would (at `now`), replaces or drops headers (nil drops), and delivers it.
    func deliver(
        _ endpoint: WebhookEndpointView, _ body: String, secret: String, options: SchemeOptions = SchemeOptions(), eventID: String, now: Date = Date(),
        headers overrides: [String: String?] = [:]
    ) async throws -> (status: Int, json: [String: JSONValue]) {
        let scheme = try #require(WebhookScheme(rawValue: endpoint.scheme))
        let bytes = Array(body.utf8)
        var headers = try #require(WebhookSigner.headers(
            scheme: scheme, secret: secret, options: options, method: "POST", url: endpoint.url, body: bytes, eventID: eventID, now: now
        ))
        for (name, value) in overrides {
            headers.removeAll { $0.name.lowercased() == name.lowercased() }
            if let value { headers.append((name, value)) }
        }
        let name = String(endpoint.path.split(separator: "/").last ?? "")
        let answer = try await service.receive(
            slug: "acme", name: name, InboundWebhook(method: "POST", url: endpoint.url, headers: headers + [("Content-Type", "application/json")], body: bytes)
        )
        return (answer.status, (try JSONValue.parse(Data(answer.body))).objectValue ?? [:])
    }

    /// The stored events of an endpoint: (event type, replay digest), oldest first.
    func stored(_ endpoint: WebhookEndpointView) async throws -> [(type: String, replayDigest: String?)] {
        let id = try #require(UUID(uuidString: endpoint.id))
        return try await db.read { tx in
            try await tx.raw("SELECT event_type, replay_digest FROM webhook_events WHERE endpoint_id = \(bind: id) ORDER BY created_at, id").all().map {
                (try $0.decode(column: "event_type", as: String.self), try $0.decodeOptional(column: "replay_digest", as: String.self))
            }
        }
    }

    /// The `webhook.received` entries' data for an endpoint, in order.
    func received(_ endpoint: WebhookEndpointView) async throws -> [[String: JSONValue]] {
        let name = String(endpoint.path.split(separator: "/").last ?? "")
        return try await sequencer.chainedEntries(of: org.id, in: db).filter { $0.type == "webhook.received" }.compactMap(\.data.objectValue)
            .filter { $0["endpoint"]?.stringValue == name }
    }

    /// Captured log lines containing `text`.
    func logLines(_ text: String) -> [String] { logs.text.split(separator: "\n").map(String.init).filter { $0.contains(text) } }
}

/// Issue 16 item 12: deliveries of schemes whose signature covers no timestamp (github, shopify, twilio,
/// hmac, shared-secret) are deduplicated on endpoint + SHA-256 of the body, whatever new unsigned id they
/// carry; ids and types from unsigned headers are logged and recorded as unsigned; timestamp-signed schemes
/// keep their behaviour.
@Suite("Webhook replays")
struct WebhookReplayTests {
    static let replayLog = "webhook replay acknowledged"

    @Test("a GitHub delivery replayed with a new X-GitHub-Delivery, none, or another X-GitHub-Event is acknowledged, counted and logged as a replay, and stored once", arguments: Backend.available)
    func githubReplay(backend: Backend) async throws {
        try await ReplayFixture.with(backend) { f in
            let secret = "github-webhook-secret-1"
            let endpoint = try await f.register("gh", scheme: .github, secret: secret)
            let body = #"{"action":"opened","issue":{"number":7,"title":"Broken"}}"#
            let first = try await f.deliver(endpoint, body, secret: secret, eventID: "d-1", headers: ["X-GitHub-Event": "issues"])
            #expect(first.status == 200 && first.json["duplicate"] == nil && first.json["id"] != nil, "\(first)")

            for (id, event) in [("d-2", "issues"), ("d-3", "push"), ("", "issues")] as [(String, String)] {
                var headers: [String: String?] = ["X-GitHub-Event": event]
                if id.isEmpty { headers["X-GitHub-Delivery"] = .some(nil) }
                let replay = try await f.deliver(endpoint, body, secret: secret, eventID: id.isEmpty ? "unused" : id, headers: headers)
                #expect(replay.status == 200 && replay.json["duplicate"] == true, "\(id) \(event): \(replay)")
            }
            // The provider's own retry (same delivery id) is a duplicate, not a replay.
            let retry = try await f.deliver(endpoint, body, secret: secret, eventID: "d-1", headers: ["X-GitHub-Event": "issues"])
            #expect(retry.status == 200 && retry.json["duplicate"] == true)
            // Another body is another event.
            let other = try await f.deliver(endpoint, #"{"action":"closed","issue":{"number":7}}"#, secret: secret, eventID: "d-4", headers: ["X-GitHub-Event": "issues"])
            #expect(other.status == 200 && other.json["duplicate"] == nil)

            let stored = try await f.stored(endpoint)
            #expect(stored.map(\.type) == ["issues", "issues"], "the replay's unsigned push type was not stored: \(stored)")
            #expect(stored.first?.replayDigest == Hex.encode(SHA256.hash(data: Array(body.utf8))))
            let counts = f.service.counts
            #expect(counts.received == 2 && counts.duplicates == 4 && counts.replays == 3, "\(counts)")
            #expect(f.logLines(Self.replayLog).count == 3)
            #expect(f.logLines(Self.replayLog).allSatisfy { $0.contains("portal.body_digest") && $0.contains("portal.original_event") })

            // The stored entries say the id and type came from headers the signature does not cover.
            let entries = try await f.received(endpoint)
            #expect(entries.count == 2)
            #expect(entries.allSatisfy { $0["typeSigned"] == 0 && $0["eventIdSigned"] == 0 && $0["bodyDigest"] != nil && $0["eventType"] == "issues" })
            #expect(entries.first?["providerEventId"] == "d-1")
            let unsigned = f.logLines("portal.unsigned")
            #expect(unsigned.count == 2 && unsigned.allSatisfy { $0.contains("eventId,eventType") }, "\(unsigned)")
        }
    }

    static let unsignedSchemes: [WebhookScheme] = [.shopify, .hmac, .sharedSecret]

    @Test("shopify, hmac and shared-secret: the same body under a new webhook id is acknowledged and stored once", arguments: Backend.available, unsignedSchemes)
    func unsignedSchemeReplays(backend: Backend, scheme: WebhookScheme) async throws {
        try await ReplayFixture.with(backend) { f in
            let secret = "\(scheme.rawValue)-webhook-secret-1"
            let options = scheme == .shopify ? SchemeOptions() : SchemeOptions(eventIDHeader: "X-Event-Id")
            let endpoint = try await f.register("hook", scheme: scheme, secret: secret, extra: scheme == .shopify ? [:] : ["eventIdHeader": "X-Event-Id"])
            let topic: [String: String?] = scheme == .shopify ? ["X-Shopify-Topic": "orders/create"] : [:]
            let body = #"{"type":"orders.create","id":820982911946154508,"email":"jon@example.com"}"#
            let first = try await f.deliver(endpoint, body, secret: secret, options: options, eventID: "w-1", headers: topic)
            #expect(first.status == 200 && first.json["duplicate"] == nil, "\(first)")
            let replay = try await f.deliver(endpoint, body, secret: secret, options: options, eventID: "w-2", headers: topic)
            #expect(replay.status == 200 && replay.json["duplicate"] == true, "\(replay)")
            #expect(try await f.stored(endpoint).count == 1)
            #expect(f.service.counts.replays == 1 && f.service.counts.received == 1)
            #expect(f.logLines(Self.replayLog).count == 1)

            let entries = try await f.received(endpoint)
            #expect(entries.count == 1)
            #expect(entries.first?["eventIdSigned"] == 0, "the id came from a header")
            // Shopify's type is its unsigned X-Shopify-Topic; hmac's comes from the signed body; a shared
            // secret signs nothing.
            #expect(entries.first?["typeSigned"] == .int(scheme == .hmac ? 1 : 0))
            #expect(entries.first?["eventType"] == .string(scheme == .shopify ? "orders/create" : "orders.create"))
        }
    }

    @Test("an hmac event id read from the signed body is recorded as signed", arguments: Backend.available)
    func signedBodyID(backend: Backend) async throws {
        try await ReplayFixture.with(backend) { f in
            let secret = "hmac-webhook-secret-1"
            let endpoint = try await f.register("pointer", scheme: .hmac, secret: secret, extra: ["eventIdPointer": "/id"])
            let stored = try await f.deliver(endpoint, #"{"type":"user.created","id":"evt-9"}"#, secret: secret, eventID: "ignored")
            #expect(stored.status == 200 && stored.json["duplicate"] == nil)
            let entry = try #require(try await f.received(endpoint).first)
            #expect(entry["providerEventId"] == "evt-9" && entry["eventIdSigned"] == 1 && entry["typeSigned"] == 1)
            #expect(f.logLines("portal.unsigned").isEmpty)
        }
    }

    @Test("timestamp-signed schemes keep their behaviour: standard-webhooks stores the same body under a new signed id; Stripe's event re-signed later is a duplicate by its id", arguments: Backend.available)
    func timestampSignedSchemes(backend: Backend) async throws {
        try await ReplayFixture.with(backend) { f in
            let whsec = "whsec_" + Data("standard-webhooks-key-0123456789".utf8).base64EncodedString()
            let standard = try await f.register("std", scheme: .standardWebhooks, secret: whsec)
            let body = #"{"type":"user.created","data":{"id":"u-1"}}"#
            #expect(try await f.deliver(standard, body, secret: whsec, eventID: "msg-1").json["duplicate"] == nil)
            let again = try await f.deliver(standard, body, secret: whsec, eventID: "msg-2")
            #expect(again.status == 200 && again.json["duplicate"] == nil, "a new signed id is a new event: \(again)")
            let retry = try await f.deliver(standard, body, secret: whsec, eventID: "msg-1")
            #expect(retry.status == 200 && retry.json["duplicate"] == true)
            let stored = try await f.stored(standard)
            #expect(stored.count == 2 && stored.allSatisfy { $0.replayDigest == nil })
            #expect(try await f.received(standard).allSatisfy { $0["typeSigned"] == 1 && $0["eventIdSigned"] == 1 })

            let stripeSecret = "whsec_stripe_signing_secret_1"
            let stripe = try await f.register("stripe", scheme: .stripe, secret: stripeSecret)
            let event = #"{"id":"evt_1","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#
            #expect(try await f.deliver(stripe, event, secret: stripeSecret, eventID: "n/a").json["duplicate"] == nil)
            let resigned = try await f.deliver(stripe, event, secret: stripeSecret, eventID: "n/a", now: Date().addingTimeInterval(60))
            #expect(resigned.status == 200 && resigned.json["duplicate"] == true)
            let next = try await f.deliver(stripe, #"{"id":"evt_2","type":"customer.updated"}"#, secret: stripeSecret, eventID: "n/a")
            #expect(next.status == 200 && next.json["duplicate"] == nil)
            #expect(try await f.stored(stripe).count == 2)
            #expect(try await f.received(stripe).allSatisfy { $0["typeSigned"] == 1 && $0["eventIdSigned"] == 1 })

            #expect(f.service.counts.replays == 0 && f.service.counts.duplicates == 2)
            #expect(f.logLines(Self.replayLog).isEmpty && f.logLines("portal.unsigned").isEmpty)
        }
    }
}

/// Two instances on one database: an endpoint registered through one receives through the other at once,
/// not after the other's next refresh of its paths (the soak found 404s for the first seconds).
@Suite("Webhook paths across instances")
struct WebhookPathTests {
    @Test("an endpoint registered on one instance is received by another before its next path refresh", arguments: Backend.available)
    func registeredElsewhere(backend: Backend) async throws {
        try await ReplayFixture.with(backend) { f in
            // The second instance reads its paths now, before the endpoint exists (as at its start).
            let other = WebhookService(database: f.db, vault: f.vault, audit: f.sequencer, registry: f.registry, logger: quietLogger, publicURL: "https://portal.example.test")
            try await other.refreshPaths()
            #expect(!other.knows(slug: "acme", name: "late"))
            let endpoint = try await f.register("late", scheme: .github, secret: "github-late-secret-0123")
            let body = Array(#"{"action":"opened","id":1}"#.utf8)
            let headers = try #require(WebhookSigner.headers(
                scheme: .github, secret: "github-late-secret-0123", options: SchemeOptions(), method: "POST", url: endpoint.url, body: body, eventID: "d-late-1", now: Date()
            ))
            let answer = try await other.receive(
                slug: "acme", name: "late", InboundWebhook(method: "POST", url: endpoint.url, headers: headers + [("Content-Type", "application/json")], body: body)
            )
            #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
            #expect(other.knows(slug: "acme", name: "late"))
            // Concurrent first deliveries to a path another instance registered are all resolved (the soak
            // under stress got a 404 for the delivery beside the one whose lookup was running).
            let third = WebhookService(database: f.db, vault: f.vault, audit: f.sequencer, registry: f.registry, logger: quietLogger, publicURL: "https://portal.example.test")
            let concurrent = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 { group.addTask { try await third.resolves(slug: "acme", name: "late") } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(concurrent == Array(repeating: true, count: 8))
            // A made-up path is still a 404.
            await #expect(throws: PortalError.self) {
                _ = try await other.receive(slug: "acme", name: "made-up", InboundWebhook(method: "POST", url: endpoint.url, headers: headers, body: body))
            }
        }
    }

    @Test("unknown paths are looked up at most once a second each, and at most 20 a second in all")
    func lookupBudget() {
        var index = PathIndex()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var answers: [Bool] = []
        answers.append(index.shouldAsk("acme/a", now: start))
        // A second delivery while the first lookup runs asks too; once it found nothing, not for a second.
        answers.append(index.shouldAsk("acme/a", now: start + 0.1))
        index.notFound("acme/a", now: start + 0.2)
        answers.append(index.shouldAsk("acme/a", now: start + 0.5))
        answers.append(index.shouldAsk("acme/a", now: start + 1.2))
        #expect(answers == [true, true, false, true])
        // 19 more in that second are allowed (20 in all), the 21st is not.
        var allowed = 0
        for n in 0..<19 where index.shouldAsk("acme/x\(n)", now: start + 1.3) { allowed += 1 }
        #expect(allowed == 19)
        let over = index.shouldAsk("acme/y", now: start + 1.9)
        #expect(!over)
        // The next second has a budget of its own.
        let next = index.shouldAsk("acme/y", now: start + 2.0)
        #expect(next)
    }
}
