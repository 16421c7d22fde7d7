import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Issue 6 over HTTP: registration, the receiver at /webhooks/{slug}/{name}, replays, rejections, the
/// queue's processing into the records store, logs, retries and secret rotation.
@Suite("Webhooks over HTTP")
struct WebhookRouteTests {
    static func sign(_ body: String, _ secret: String) -> String {
        "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array(secret.utf8))))
    }

    func deliver(_ portal: Portal, _ path: String, _ body: String, secret: String, eventID: String?) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json", HTTPField.Name("X-CRM-Signature")!: Self.sign(body, secret)]
        if let eventID { headers[HTTPField.Name("X-Event-Id")!] = eventID }
        return try await portal.client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    /// Polls the logs until `condition` holds for the event.
    func waitFor(_ portal: Portal, integration: String, event: String, _ condition: ([String: JSONValue]) -> Bool) async throws -> [String: JSONValue] {
        var last: [String: JSONValue] = [:]
        let reached = try await eventually {
            let logs = try await portal.call(.get, "/portal/integrations/\(integration)/webhooks/logs", token: portal.token("acme.auditor"))
            last = (logs.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).first { $0["id"]?.stringValue == event } ?? [:]
            return condition(last)
        }
        if !reached { Issue.record("the event never reached the expected state: \(last)") }
        return last
    }

    func ledgerTypes(_ portal: Portal) async throws -> [String] {
        try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
            try await db.read { tx in
                try await LedgerStore(tx).entries(portal.acme.id, from: 0, limit: 10_000).map { try LedgerEntry(canonical: $0.bytes).type }
            }
        }
    }

    @Test("register, receive a signed event once, reject forgeries, process it into the records store, log, retry and rotate", arguments: Backend.available)
    func lifecycle(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let integration = try await portal.createIntegration(name: "CRM")
            let operatorToken = portal.token("acme.operator")
            let created = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: operatorToken, json: """
                {"endpoint":"/webhooks/crm","events":["user.*"],"secret":"crm-webhook-secret-1","signatureHeader":"X-CRM-Signature",
                 "signatureMethod":"hmac-sha256","eventIdHeader":"X-Event-Id","retryPolicy":{"maxRetries":1,"baseDelay":0,"maxDelay":0}}
                """)
            #expect(created.status == .created, "\(created.body.string)")
            let endpoint = created.json.objectValue ?? [:]
            #expect(endpoint["path"] == "/webhooks/acme/crm" && endpoint["scheme"] == "hmac" && endpoint["url"]?.stringValue?.hasSuffix("/webhooks/acme/crm") == true)
            #expect(!created.body.string.contains("crm-webhook-secret-1"))
            let endpointID = try #require(endpoint["id"]?.stringValue)
            let duplicate = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: operatorToken, json: #"{"endpoint":"/webhooks/crm","secret":"another-secret-1"}"#)
            expectProblem(duplicate, .conflict)
            // Auditors read but do not register.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: portal.token("acme.auditor"), json: #"{"endpoint":"/webhooks/x","secret":"secret-1234"}"#), .forbidden)

            let body = #"{"type":"user.created","data":{"id":"u-1","email":"ada@acme.test"}}"#
            let first = try await deliver(portal, "/webhooks/acme/crm", body, secret: "crm-webhook-secret-1", eventID: "evt-1")
            #expect(first.status == .ok, "\(first.body.string)")
            let eventID = try #require(first.json.objectValue?["id"]?.stringValue)
            let replay = try await deliver(portal, "/webhooks/acme/crm", body, secret: "crm-webhook-secret-1", eventID: "evt-1")
            #expect(replay.status == .ok && replay.json.objectValue?["duplicate"] == true)

            #expect(try await deliver(portal, "/webhooks/acme/crm", body, secret: "wrong-secret", eventID: "evt-2").status == .unauthorized)
            let altered = try await portal.client.execute(uri: "/webhooks/acme/crm", method: .post, headers: [
                .contentType: "application/json", HTTPField.Name("X-CRM-Signature")!: Self.sign(body, "crm-webhook-secret-1"),
            ], body: ByteBuffer(string: body.replacingOccurrences(of: "u-1", with: "u-9")))
            expectProblem(altered, .unauthorized)
            let filtered = try await deliver(portal, "/webhooks/acme/crm", #"{"type":"invoice.paid"}"#, secret: "crm-webhook-secret-1", eventID: "evt-3")
            expectProblem(filtered, .badRequest)
            expectProblem(try await deliver(portal, "/webhooks/acme/nope", body, secret: "crm-webhook-secret-1", eventID: "evt-4"), .notFound)
            expectProblem(try await deliver(portal, "/webhooks/globex/crm", body, secret: "crm-webhook-secret-1", eventID: "evt-5"), .notFound)

            let processed = try await waitFor(portal, integration: integration, event: eventID) { $0["status"] == "processed" }
            #expect(processed["providerEventId"] == "evt-1" && processed["eventType"] == "user.created" && processed["note"] == "users: 1 created, 0 updated, 0 unchanged, 0 conflicts, 0 rejected")
            let stored = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                try await db.read { tx in try await SyncRecordStore(tx).find(integrationID: UUID(uuidString: integration)!, entity: "users", recordID: "u-1") }
            }
            #expect(stored?.data.objectValue?["email"] == "ada@acme.test")
            // The raw body is sealed at rest: the row holds no plaintext.
            let rawRow = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                try await db.read { tx in try await tx.raw("SELECT payload FROM webhook_events").all().map { "\(try $0.decode(column: "payload", as: String.self))" } }
            }
            #expect(rawRow.count == 1 && !rawRow[0].contains("ada@acme.test"))

            // A user event without an id fails, is retried once (maxRetries 1), then dead-lettered.
            let broken = try await deliver(portal, "/webhooks/acme/crm", #"{"type":"user.updated","data":{"email":"x@acme.test"}}"#, secret: "crm-webhook-secret-1", eventID: "evt-6")
            let brokenID = try #require(broken.json.objectValue?["id"]?.stringValue)
            let failed = try await waitFor(portal, integration: integration, event: brokenID) { $0["status"] == "failed" }
            #expect(failed["attempts"] == 2 && failed["error"]?.stringValue?.contains("no user id") == true)
            let onlyFailed = try await portal.call(.get, "/portal/integrations/\(integration)/webhooks/logs?status=failed", token: operatorToken)
            #expect(onlyFailed.json.objectValue?["items"]?.arrayValue?.count == 1)
            expectProblem(try await portal.call(.get, "/portal/integrations/\(integration)/webhooks/logs?status=lost", token: operatorToken), .unprocessableContent)
            let retried = try await portal.call(.post, "/portal/webhooks/events/\(brokenID)/retry", token: operatorToken)
            #expect(retried.status == .ok && retried.json.objectValue?["status"] == "retrying", "\(retried.body.string)")
            _ = try await waitFor(portal, integration: integration, event: brokenID) { $0["status"] == "failed" && $0["attempts"] == 3 }
            expectProblem(try await portal.call(.post, "/portal/webhooks/events/\(eventID)/retry", token: operatorToken), .conflict)
            let bulk = try await portal.call(.post, "/portal/webhooks/events/retry", token: operatorToken, json: #"{"integrationId":"\#(integration)","eventType":"user.updated"}"#)
            #expect(bulk.json.objectValue?["requeued"] == 1 && bulk.json.objectValue?["results"]?.arrayValue?.first?.objectValue?["result"] == "requeued", "\(bulk.body.string)")

            // Rotation with an overlap: both secrets verify until it ends.
            let rotated = try await portal.call(.patch, "/portal/integrations/\(integration)/webhooks/\(endpointID)", token: operatorToken, json: #"{"secret":"crm-webhook-secret-2","overlapSeconds":600}"#)
            #expect(rotated.status == .ok && rotated.json.objectValue?["secretRotation"] != nil, "\(rotated.body.string)")
            #expect(try await deliver(portal, "/webhooks/acme/crm", #"{"type":"user.created","data":{"id":"u-2"}}"#, secret: "crm-webhook-secret-2", eventID: "evt-7").status == .ok)
            #expect(try await deliver(portal, "/webhooks/acme/crm", #"{"type":"user.created","data":{"id":"u-3"}}"#, secret: "crm-webhook-secret-1", eventID: "evt-8").status == .ok)
            let replaced = try await portal.call(.patch, "/portal/integrations/\(integration)/webhooks/\(endpointID)", token: operatorToken, json: #"{"secret":"crm-webhook-secret-3"}"#)
            #expect(replaced.status == .ok)
            #expect(try await deliver(portal, "/webhooks/acme/crm", #"{"type":"user.created","data":{"id":"u-4"}}"#, secret: "crm-webhook-secret-2", eventID: "evt-9").status == .unauthorized)

            // The test route runs a signed sample through the same path.
            let tested = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks/\(endpointID)/test", token: operatorToken)
            #expect(tested.json.objectValue?["success"] == true, "\(tested.body.string)")

            // Rejections are counted per endpoint, reason and minute (issue 16 item 9): after a flush their
            // counts add up to the four refused deliveries.
            try await portal.services.authFailures.flush(force: true)
            let types = try await ledgerTypes(portal)
            #expect(types.filter { $0 == "webhook.received" }.count == 5)
            let rejected = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                try await db.read { tx in
                    try await LedgerStore(tx).entries(portal.acme.id, from: 0, limit: 10_000).map { try LedgerEntry(canonical: $0.bytes) }.filter { $0.type == "webhook.rejected" }
                }
            }
            #expect(rejected.reduce(Int64(0)) { total, entry in if case .int(let n)? = entry.data.objectValue?["count"] { total + n } else { total } } == 4)
            #expect((2...4).contains(rejected.count))
            #expect(types.contains("webhook.registered") && types.contains("webhook.processed") && types.contains("webhook.failed") && types.contains("webhook.retried"))

            // Deleting the endpoint makes its path unknown at once.
            #expect(try await portal.call(.delete, "/portal/integrations/\(integration)/webhooks/\(endpointID)", token: operatorToken).status == .noContent)
            expectProblem(try await deliver(portal, "/webhooks/acme/crm", body, secret: "crm-webhook-secret-3", eventID: "evt-10"), .notFound)
        }
    }

    @Test("Okta's verification challenge and Microsoft Graph's validationToken are answered for shared-secret endpoints; Slack's url_verification after its signature")
    func handshakes() async throws {
        try await withPortal(.sqlite) { portal in
            let integration = try await portal.createIntegration(name: "IdP")
            let admin = portal.token("acme.admin")
            for json in [
                #"{"endpoint":"/webhooks/okta","scheme":"shared-secret","secret":"okta-secret-123"}"#,
                #"{"endpoint":"/webhooks/graph","scheme":"shared-secret","secretField":"clientState","secret":"graph-state-123"}"#,
                #"{"endpoint":"/webhooks/slack","scheme":"slack","secret":"slack-signing-secret"}"#,
            ] {
                #expect(try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: admin, json: json).status == .created)
            }
            let okta = try await portal.client.execute(uri: "/webhooks/acme/okta", method: .get, headers: [HTTPField.Name("X-Okta-Verification-Challenge")!: "abc123"])
            #expect(okta.json == ["verification": "abc123"])
            let graph = try await portal.client.execute(uri: "/webhooks/acme/graph?validationToken=Validation%3A%20token", method: .post, headers: [:])
            #expect(graph.status == .ok && graph.body.string == "Validation: token" && graph.headers[.contentType]?.hasPrefix("text/plain") == true)
            let challenge = #"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#
            let stamp = String(Int(Date().timeIntervalSince1970))
            let mac = Hex.encode(HMAC<SHA256>.authenticationCode(for: Array("v0:\(stamp):\(challenge)".utf8), using: SymmetricKey(data: Array("slack-signing-secret".utf8))))
            let slack = try await portal.client.execute(uri: "/webhooks/acme/slack", method: .post, headers: [
                .contentType: "application/json", HTTPField.Name("X-Slack-Request-Timestamp")!: stamp, HTTPField.Name("X-Slack-Signature")!: "v0=" + mac,
            ], body: ByteBuffer(string: challenge))
            #expect(slack.json.objectValue?["challenge"] == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
            let unsigned = try await portal.client.execute(uri: "/webhooks/acme/slack", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: challenge))
            expectProblem(unsigned, .unauthorized)
        }
    }
}
