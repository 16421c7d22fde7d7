import CryptoExtras
import Crypto
import Foundation
import Gateway
import Integrations
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing

/// A gateway over a fresh database with a running sequencer, an admin principal and a real upstream.
struct GatewayEnvironment {
    let db: Database
    let registry: IntegrationRegistry
    let gateway: Gateway
    let admin: Principal
    let upstream: TestUpstream
    let delays: DelayLog
    let sequencer: LedgerSequencer
    let vault: CredentialVault
    let clock: any WallClock
    /// The database's URL, for a second instance.
    let url: String

    /// Registers an integration pointing at the upstream; returns its id.
    func integration(_ authMethod: String, credentials: JSONValue, config: JSONValue = [:], rateLimits: JSONValue? = nil, baseURL: String? = nil) async throws -> UUID {
        var body: [String: JSONValue] = [
            "name": .string("Upstream \(UUID().uuidString.prefix(8))"), "type": "analytics", "baseUrl": .string(baseURL ?? upstream.baseURL),
            "authMethod": .string(authMethod), "credentials": credentials, "config": config,
        ]
        if let rateLimits { body["rateLimits"] = rateLimits }
        let view = try await registry.register(try IntegrationInput.parse(.object(body)), by: admin)
        return try #require(UUID(uuidString: view.id))
    }

    func call(_ id: UUID, _ endpoint: String, method: String = "GET", headers: [String: String] = [:], body: JSONValue? = nil, timeoutMs: Int? = nil) async throws -> APIResponse {
        try await gateway.execute(APIRequest(method: method, endpoint: endpoint, headers: headers, body: body, timeoutMs: timeoutMs), integrationID: id, by: admin)
    }

    /// What the upstream echoed back: the request it received.
    static func echoed(_ response: APIResponse) -> [String: JSONValue] { response.body.objectValue ?? [:] }

    func rows(_ id: UUID) async throws -> [IntegrationRequestRecord] {
        try await db.read { try await IntegrationRequestStore($0).list(organizationID: admin.organizationID, integrationID: id, limit: 100) }
    }

    /// The ledger entries of the organization of type `request.*`, decoded.
    func requestEntries() async throws -> [LedgerEntry] {
        try await db.read { tx in
            try await LedgerStore(tx).entries(admin.organizationID, from: 0, limit: 10_000).map { try LedgerEntry(canonical: $0.bytes) }
        }.filter { $0.type.hasPrefix("request.") }
    }

    /// Every stored byte where a secret could leak: request rows and ledger entries.
    func storedText() async throws -> String {
        try await db.read { tx in
            let entries = try await LedgerStore(tx).entries(admin.organizationID, from: 0, limit: 10_000).map { String(decoding: $0.bytes, as: UTF8.self) }
            let rows = try await tx.raw("SELECT endpoint, request_body, response_body, error_message FROM integration_requests").all().map { row in
                [try row.decode(column: "endpoint", as: String.self), (try? row.decode(column: "error_message", as: String.self)) ?? ""].joined(separator: " ")
            }
            return (entries + rows).joined(separator: "\n")
        }
    }

    static func with(
        _ backend: Backend, maxResponseBytes: Int = 1 << 20, clock: any WallClock = SystemWallClock(), _ body: @Sendable (GatewayEnvironment) async throws -> Void
    ) async throws {
        try await TestUpstream.with { upstream in
            try await TestDatabase.with(backend) { test, db in
                let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
                try await db.write { try await OrganizationStore($0).insert(org) }
                let sequencer = LedgerSequencer(database: db, logger: quietLogger)
                let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: MasterKeyRing.generateBase64(), keyFile: nil))
                let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
                let delays = DelayLog()
                let gateway = Gateway(
                    database: db, vault: vault, registry: registry, audit: sequencer, clock: clock, logger: quietLogger,
                    configuration: .init(policy: try OutboundPolicy(allowList: "127.0.0.1"), maxResponseBytes: maxResponseBytes),
                    sleep: { delays.add($0) }
                )
                let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
                let environment = GatewayEnvironment(
                    db: db, registry: registry, gateway: gateway, admin: admin, upstream: upstream, delays: delays, sequencer: sequencer,
                    vault: vault, clock: clock, url: test.url
                )
                try await running(sequencer, gateway) { try await body(environment) }
            }
        }
    }

    /// Runs `body` while `sequencer` runs, then stops it and shuts `gateway`'s HTTP client down.
    static func running(_ sequencer: LedgerSequencer, _ gateway: Gateway, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sequencer.run() }
            do {
                try await body()
            } catch {
                group.cancelAll()
                try? await gateway.shutdown()
                throw error
            }
            group.cancelAll()
            try await gateway.shutdown()
        }
    }
}

extension GatewayEnvironment {
    /// Runs `body` with a second service instance on the same database: its own connection pool,
    /// sequencer, registry and gateway, sharing only the master key and the clock.
    func secondInstance(_ body: @Sendable (Gateway) async throws -> Void) async throws {
        try await Database.withDatabase(url: url, logger: quietLogger) { db in
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
            let gateway = Gateway(
                database: db, vault: vault, registry: registry, audit: sequencer, clock: clock, logger: quietLogger,
                configuration: .init(policy: try OutboundPolicy(allowList: "127.0.0.1")), sleep: { _ in }
            )
            try await GatewayEnvironment.running(sequencer, gateway) { try await body(gateway) }
        }
    }
}

/// The backoff delays the gateway asked for (tests do not sleep).
final class DelayLog: Sendable {
    private let delays = Mutex<[Duration]>([])
    func add(_ delay: Duration) { delays.withLock { $0.append(delay) } }
    var all: [Duration] { delays.withLock { $0 } }
}

@Suite("Gateway")
struct GatewayTests {
    @Test("API key in a header, the query or the body; basic auth; custom header templates: as the upstream saw them", arguments: Backend.available)
    func authStrategies(backend: Backend) async throws {
        try await GatewayEnvironment.with(backend) { env in
            let header = try await env.integration("api_key", credentials: ["apiKey": "key-header-123456"])
            var seen = GatewayEnvironment.echoed(try await env.call(header, "/echo/users/42"))
            #expect(seen["headers"]?.objectValue?["x-api-key"] == "key-header-123456")

            let query = try await env.integration("api_key", credentials: ["apiKey": "key-query-123456"], config: ["keyLocation": "query", "keyParam": "token"])
            seen = GatewayEnvironment.echoed(try await env.call(query, "/echo/q?x=1"))
            #expect(seen["query"]?.stringValue?.contains("token=key-query-123456") == true)
            #expect(seen["query"]?.stringValue?.contains("x=1") == true)

            let body = try await env.integration("api_key", credentials: ["apiKey": "key-body-123456"], config: ["keyLocation": "body", "keyField": "auth"])
            seen = GatewayEnvironment.echoed(try await env.call(body, "/echo/b", method: "POST", body: ["a": 1]))
            let sentBody = try JSONValue.parse(Data((seen["body"]?.stringValue ?? "").utf8))
            #expect(sentBody == ["a": 1, "auth": "key-body-123456"])

            let basic = try await env.integration("basic_auth", credentials: ["username": "alice", "password": "s3cret-pass"])
            seen = GatewayEnvironment.echoed(try await env.call(basic, "/echo/basic"))
            #expect(seen["headers"]?.objectValue?["authorization"] == .string("Basic " + Data("alice:s3cret-pass".utf8).base64EncodedString()))

            let custom = try await env.integration("custom", credentials: ["apiKey": "custom-key-7890"], config: ["headers": ["Authorization": "Token {{apiKey}}", "X-Client": "portal"]])
            seen = GatewayEnvironment.echoed(try await env.call(custom, "/echo/custom"))
            #expect(seen["headers"]?.objectValue?["authorization"] == "Token custom-key-7890")
            #expect(seen["headers"]?.objectValue?["x-client"] == "portal")

            // Five calls, five rows and five request.completed entries; no credential value stored anywhere.
            #expect(try await env.requestEntries().filter { $0.type == "request.completed" }.count == 5)
            let stored = try await env.storedText()
            for secret in ["key-header-123456", "key-query-123456", "key-body-123456", "s3cret-pass", "custom-key-7890"] {
                #expect(!stored.contains(secret), "\(secret) was stored")
            }
            let row = try #require(try await env.rows(header).first)
            #expect(row.endpoint == "/echo/users/{id}" && row.responseStatus == 200 && row.method == "GET")
            let entry = try #require(try await env.requestEntries().first)
            #expect(entry.data.objectValue?["endpoint"] == "/echo/users/{id}")
            #expect(entry.data.objectValue?["outcome"] == "success")
            #expect(entry.data.objectValue?["host"] == "127.0.0.1")
            #expect(entry.integration == header.uuidString.lowercased())
        }
    }

    @Test("5xx is retried with backoff for idempotent calls only; 429 honours Retry-After", arguments: Backend.available)
    func retries(backend: Backend) async throws {
        try await GatewayEnvironment.with(backend) { env in
            let id = try await env.integration("api_key", credentials: ["apiKey": "k-retry-123456"], config: ["retry": ["maxAttempts": 3, "baseDelay": 100, "maxDelay": 1000]])
            let recovered = try await env.call(id, "/flaky/get/2")
            #expect(recovered.status == 200 && recovered.attempts == 3)
            #expect(env.upstream.calls("/flaky/get") == 3)
            // Full jitter: each delay at most min(maxDelay, base * 2^(n-1)).
            #expect(env.delays.all.count == 2)
            #expect(env.delays.all[0] <= .milliseconds(100) && env.delays.all[1] <= .milliseconds(200))

            // A POST without an idempotency key is sent once.
            let post = try await env.call(id, "/flaky/post/2", method: "POST", body: ["x": 1])
            #expect(post.status == 503 && post.attempts == 1 && post.outcome == "server_error")
            #expect(env.upstream.calls("/flaky/post") == 1)
            // With one, it is retried.
            let keyed = try await env.call(id, "/flaky/keyed/1", method: "POST", headers: ["Idempotency-Key": "abc"], body: ["x": 1])
            #expect(keyed.status == 200 && keyed.attempts == 2)

            // Still failing after every attempt: the upstream's status, recorded as request.failed.
            let failing = try await env.call(id, "/status/502")
            #expect(failing.status == 502 && failing.attempts == 3 && failing.outcome == "server_error")
            let failed = try await env.requestEntries().filter { $0.type == "request.failed" }
            #expect(failed.contains { $0.data.objectValue?["status"] == 502 && $0.data.objectValue?["errorCategory"] == "server" && $0.data.objectValue?["attempts"] == 3 })

            let limited = try await env.call(id, "/limited/a")
            #expect(limited.status == 200 && limited.attempts == 2)
            #expect(env.delays.all.last.map { $0 >= .seconds(1) } == true)
            // A provider that asks for two minutes' pause: until it passes, the portal refuses rather than calls.
            let other = try await env.integration("api_key", credentials: ["apiKey": "k-pause-123456"])
            let paused = try await env.call(other, "/status/503?retryAfter=120", method: "POST")
            #expect(paused.status == 503 && paused.attempts == 1)
            let held = await #expect(throws: PortalError.self) { try await env.call(other, "/echo/held") }
            #expect(held?.code == .throttled)
            #expect(env.upstream.calls("/echo/held") == 0)
            // A hostile or broken upstream's Retry-After (too large for whole seconds, or infinite) holds the
            // integration at most a day, and the refusal names a whole number of seconds: no trap.
            let hostile = try await env.integration("api_key", credentials: ["apiKey": "k-hostile-123456"])
            #expect(try await env.call(hostile, "/status/429?retryAfter=1e300", method: "POST").status == 429)
            let refused = await #expect(throws: PortalError.self) { try await env.call(hostile, "/echo/after-huge") }
            #expect(refused?.code == .throttled && (86_000...86_400).contains(refused?.retryAfterSeconds ?? 0), "about a day: \(refused?.retryAfterSeconds ?? 0) s")
            let infinite = try await env.integration("api_key", credentials: ["apiKey": "k-infinite-123456"])
            #expect(try await env.call(infinite, "/status/429?retryAfter=inf", method: "POST").status == 429)
            // Unreadable, so the 429's default pause of a second applies (the call may come after it).
            do {
                _ = try await env.call(infinite, "/echo/after-inf")
            } catch let error as PortalError {
                #expect(error.code == .throttled && (error.retryAfterSeconds ?? 0) <= 1)
            }
        }
    }

    @Test("request and response transforms: headers set and removed, body fields renamed, set, removed and picked")
    func transforms() async throws {
        try await GatewayEnvironment.with(.sqlite) { env in
            let id = try await env.integration("api_key", credentials: ["apiKey": "k-transform-123456"], config: [
                "transforms": [
                    "request": [
                        "headers": ["set": ["X-Client": "portal"], "remove": ["X-Debug"]],
                        "body": ["rename": ["/name": "/fullName"], "set": ["/meta/source": "portal"], "remove": ["/internal"]],
                    ],
                    "response": ["headers": ["remove": ["Content-Type"]], "body": ["pick": ["/method", "/body"]]],
                ],
            ])
            let answer = try await env.call(id, "/echo/t", method: "POST", headers: ["X-Debug": "1", "X-Keep": "k"], body: ["name": "Ada", "internal": "x", "age": 36])
            let body = answer.body.objectValue ?? [:]
            #expect(Set(body.keys) == ["method", "body"], "\(body.keys)")
            #expect(body["method"] == "POST")
            let sent = try JSONValue.parse(Data((body["body"]?.stringValue ?? "").utf8))
            #expect(sent == ["fullName": "Ada", "age": 36, "meta": ["source": "portal"]])
            #expect(answer.headers["content-type"] == nil)
            // What the upstream saw, through a call without the response pick.
            let plain = try await env.integration("api_key", credentials: ["apiKey": "k-transform-123456"], config: [
                "transforms": ["request": ["headers": ["set": ["X-Client": "portal"], "remove": ["X-Debug"]]]],
            ])
            let headers = GatewayEnvironment.echoed(try await env.call(plain, "/echo/h", headers: ["X-Debug": "1", "X-Keep": "k"]))["headers"]?.objectValue ?? [:]
            #expect(headers["x-client"] == "portal" && headers["x-debug"] == nil && headers["x-keep"] == "k")
        }
    }

    @Test("the portal's own rate limit answers 429 with Retry-After without calling out", arguments: [Backend.sqlite])
    func rateLimit(backend: Backend) async throws {
        try await GatewayEnvironment.with(backend) { env in
            let id = try await env.integration("api_key", credentials: ["apiKey": "k-limit-123456"], rateLimits: ["requestsPerMinute": 2])
            _ = try await env.call(id, "/echo/one")
            _ = try await env.call(id, "/echo/one")
            let error = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/one") }
            #expect(error?.code == .throttled && (error?.retryAfterSeconds ?? 0) >= 1)
            #expect(env.upstream.calls("/echo/one") == 2)
            let throttled = try await env.requestEntries().filter { $0.data.objectValue?["outcome"] == "throttled" }
            #expect(throttled.count == 1 && throttled[0].type == "request.failed")
        }
    }

    @Test("timeouts, oversized responses and unreachable upstreams fail clearly and are recorded", arguments: [Backend.sqlite])
    func failures(backend: Backend) async throws {
        try await GatewayEnvironment.with(backend, maxResponseBytes: 1_000) { env in
            let id = try await env.integration("api_key", credentials: ["apiKey": "k-fail-123456"], config: ["retry": ["maxAttempts": 1]])
            let timeout = await #expect(throws: PortalError.self) { try await env.call(id, "/slow/3000", timeoutMs: 200) }
            #expect(timeout?.code == .upstreamTimeout)
            let big = await #expect(throws: PortalError.self) { try await env.call(id, "/big/5000") }
            #expect(big?.code == .upstreamFailed && big?.message.contains("larger") == true)
            // A call's answer names its record: the row's id and the entry's callId.
            let answered = try await env.call(id, "/big/500")
            #expect(answered.status == 200)
            let callID = try #require(answered.callId)
            #expect(try await env.rows(id).contains { $0.id.uuidString.lowercased() == callID })
            #expect(try await env.requestEntries().filter { $0.data.objectValue?["callId"]?.stringValue == callID }.count == 1)

            let closed = try await env.integration("api_key", credentials: ["apiKey": "k-closed-123456"], config: ["retry": ["maxAttempts": 2, "baseDelay": 1]], baseURL: "http://127.0.0.1:1")
            let unreachable = await #expect(throws: PortalError.self) { try await env.call(closed, "/anything") }
            #expect(unreachable?.code == .upstreamFailed)
            let rows = try await env.rows(closed)
            #expect(rows.count == 1 && rows[0].responseStatus == nil && rows[0].errorMessage != nil)
            let entry = try #require(try await env.requestEntries().last)
            #expect(entry.type == "request.failed" && entry.data.objectValue?["outcome"] == "network_error" && entry.data.objectValue?["attempts"] == 2)
            // So does a recorded failure's problem.
            #expect(unreachable?.details["callId"]?.stringValue == rows[0].id.uuidString.lowercased())
            #expect(entry.data.objectValue?["callId"]?.stringValue == rows[0].id.uuidString.lowercased())
        }
    }

    @Test("internal destinations are refused before any connection: 10.0.0.1, 169.254.169.254, loopback not allow-listed", arguments: [Backend.sqlite])
    func ssrf(backend: Backend) async throws {
        try await GatewayEnvironment.with(backend) { env in
            for base in ["https://10.0.0.1", "https://169.254.169.254", "https://[::1]", "https://127.0.0.2:8443", "http://93.184.216.34"] {
                let id = try await env.integration("api_key", credentials: ["apiKey": "k-ssrf-123456"], baseURL: base)
                let error = await #expect(throws: PortalError.self) { try await env.call(id, "/latest/meta-data") }
                #expect(error?.code == .refused, "\(base): \(String(describing: error))")
            }
            let refused = try await env.requestEntries().filter { $0.data.objectValue?["outcome"] == "refused" }
            #expect(refused.count == 5)
        }
    }

    @Test("endpoint paths outside the base URL are refused; identifiers become {id} in records")
    func pathsAndTemplates() throws {
        #expect(EndpointTemplate.of(path: "/v1/users/42/orders/0192f0c4-7b1e-7cc2-9a51-3f0e8d6b2a41", configured: []) == "/v1/users/{id}/orders/{id}")
        #expect(EndpointTemplate.of(path: "/v1/people/alice@example.com", configured: []) == "/v1/people/{id}")
        #expect(EndpointTemplate.of(path: "/v1/users/42", configured: ["/v1/users/{userId}"]) == "/v1/users/{userId}")
        #expect(EndpointTemplate.of(path: "/v1/users/me", configured: []) == "/v1/users/me")
        #expect(throws: PortalError.self) { try APIRequest.parse(["method": "GET", "endpoint": "https://evil.example/x"], integrationID: UUID()) }
        #expect(throws: PortalError.self) { try APIRequest.parse(["method": "TRACE", "endpoint": "/x"], integrationID: UUID()) }
        let other = UUID()
        #expect(throws: PortalError.self) { try APIRequest.parse(["method": "GET", "endpoint": "/x", "integrationId": .string(UUID().uuidString)], integrationID: other) }
        #expect(try APIRequest.parse(["method": "get", "endpoint": "/x", "integrationId": .string(other.uuidString)], integrationID: other).method == "GET")
    }
}

@Suite("Outbound policy and signatures")
struct OutboundTests {
    @Test("addresses are classified, and allow-lists match hosts and CIDR ranges")
    func policy() async throws {
        for address in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1"] {
            #expect(IPAddress(address)?.isInternal == true, "\(address)")
        }
        for external in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] { #expect(IPAddress(external)?.isInternal == false, "\(external)") }
        let policy = try OutboundPolicy(allowList: "127.0.0.1, 10.0.0.0/8, api.internal.test")
        try await policy.check(URL(string: "http://127.0.0.1:9000/x")!)
        try await policy.check(URL(string: "http://10.9.8.7/x")!)
        try await policy.check(URL(string: "http://api.internal.test/x")!)
        await #expect(throws: PortalError.self) { try await policy.check(URL(string: "https://172.16.0.1/x")!) }
        await #expect(throws: PortalError.self) { try await policy.check(URL(string: "ftp://8.8.8.8/x")!) }
        await #expect(throws: PortalError.self) { try await policy.check(URL(string: "http://8.8.8.8/x")!) }
        #expect(throws: PortalError.self) { try OutboundPolicy(allowList: "10.0.0.0/40") }
        #expect(throws: PortalError.self) { try OutboundPolicy(allowList: "bad host!") }
    }

    static let suiteCredentials = SigV4.Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: nil)
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z

    @Test("SigV4 matches the AWS test suite and the S3 documentation example, and a one-byte change breaks it")
    func sigV4() throws {
        let cases: [(String, String, [(String, String)], String)] = [
            ("GET", "https://example.amazonaws.com/", [], "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
            ("POST", "https://example.amazonaws.com/", [], "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
            ("GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", [], "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            ("POST", "https://example.amazonaws.com/", [("My-Header1", "VALUE1")], "SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
        ]
        for (method, url, headers, expected) in cases {
            var request = OutboundRequest(method: method, url: URL(string: url)!, headers: headers)
            try SigV4.sign(&request, credentials: Self.suiteCredentials, region: "us-east-1", service: "service", date: Self.suiteDate)
            #expect(request.header("Authorization") == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \(expected)", "\(method) \(url)")
            #expect(request.header("X-Amz-Date") == "20150830T123600Z")
        }
        var s3 = OutboundRequest(method: "GET", url: URL(string: "https://examplebucket.s3.amazonaws.com/test.txt")!, headers: [("Range", "bytes=0-9")])
        let s3Credentials = SigV4.Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", sessionToken: nil)
        try SigV4.sign(&s3, credentials: s3Credentials, region: "us-east-1", service: "s3", date: Date(timeIntervalSince1970: 1_369_353_600))
        #expect(s3.header("Authorization")?.hasSuffix("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") == true, "\(s3.header("Authorization") ?? "")")

        var tampered = OutboundRequest(method: "GET", url: URL(string: "https://example.amazonaws.com/")!)
        var wrongKey = Self.suiteCredentials
        wrongKey.secretAccessKey.removeLast()
        wrongKey.secretAccessKey += "X"
        try SigV4.sign(&tampered, credentials: wrongKey, region: "us-east-1", service: "service", date: Self.suiteDate)
        #expect(tampered.header("Authorization")?.contains("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31") == false)
    }
}

@Suite("OAuth 2.0 through the gateway (nanoidp)")
struct OAuthGatewayTests {
    func oauthIntegration(_ env: GatewayEnvironment, _ idp: NanoIDP, credentials: [String: JSONValue] = [:], oauth: [String: JSONValue] = [:]) async throws -> UUID {
        var creds: [String: JSONValue] = ["clientId": .string(NanoIDP.clientID), "clientSecret": .string(NanoIDP.clientSecret)]
        creds.merge(credentials) { $1 }
        var settings: [String: JSONValue] = ["tokenUrl": .string(idp.tokenURL), "scopes": ["openid"]]
        settings.merge(oauth) { $1 }
        return try await env.integration("oauth2", credentials: .object(creds), config: ["oauth": .object(settings)], rateLimits: ["requestsPerSecond": 1000, "burst": 1000])
    }

    func tokenEvents(_ env: GatewayEnvironment) async throws -> [LedgerEntry] {
        // Token events go through the outbox (recorded in the token's transaction) and are chained a moment
        // later: drain it first, or a busy machine reads the ledger before they are in it.
        try await env.sequencer.drainAll()
        return try await env.db.read { tx in
            try await LedgerStore(tx).entries(env.admin.organizationID, from: 0, limit: 10_000).map { try LedgerEntry(canonical: $0.bytes) }
        }.filter { $0.type.hasPrefix("token.") }
    }

    @Test("client credentials: 100 concurrent calls fetch one token; it is sealed, sent as a bearer and never recorded", arguments: Backend.available)
    func clientCredentials(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            try await GatewayEnvironment.with(backend) { env in
                let id = try await oauthIntegration(env, idp)
                let answers = try await withThrowingTaskGroup(of: APIResponse.self) { group in
                    for i in 0..<100 { group.addTask { try await env.call(id, "/echo/cc/\(i)") } }
                    return try await group.reduce(into: [APIResponse]()) { $0.append($1) }
                }
                #expect(answers.count == 100 && answers.allSatisfy { $0.status == 200 })
                // Every call has its row and its entry, although the sequencer wrote them in a few batches.
                #expect(try await env.rows(id).count == 100)
                #expect(try await env.requestEntries().count == 100)
                let bearers = Set(answers.compactMap { GatewayEnvironment.echoed($0)["headers"]?.objectValue?["authorization"]?.stringValue })
                #expect(bearers.count == 1 && bearers.first?.hasPrefix("Bearer eyJ") == true)
                let events = try await tokenEvents(env)
                #expect(events.map(\.type) == ["token.issued"], "\(events.map(\.type))")
                #expect(events.first?.data.objectValue?["grantType"] == "client_credentials")
                let token = String(try #require(bearers.first).dropFirst("Bearer ".count))
                let stored = try await env.storedText()
                #expect(!stored.contains(token) && !stored.contains(NanoIDP.clientSecret))
                let sealed = try await env.db.read { tx in try await tx.raw("SELECT sealed FROM integration_tokens").all().count }
                #expect(sealed == 1)
                // client_secret_post: the client id and secret go in the form instead of a Basic header.
                let posted = try await oauthIntegration(
                    env, idp, credentials: ["clientId": .string(NanoIDP.postClientID), "clientSecret": .string(NanoIDP.postClientSecret)], oauth: ["clientAuth": "post"]
                )
                #expect(try await env.call(posted, "/echo/post").status == 200)
                #expect(try await tokenEvents(env).map(\.type) == ["token.issued", "token.issued"])
            }
        }
    }

    @Test("tokens are refreshed before expiry; the refresh-token grant is used when one is held; a 401 refreshes once and retries", arguments: [Backend.sqlite])
    func refresh(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            let clock = ManualWallClock(Date())
            try await GatewayEnvironment.with(backend, clock: clock) { env in
                let id = try await oauthIntegration(env, idp)
                _ = try await env.call(id, "/echo/r1")
                _ = try await env.call(id, "/echo/r2")
                #expect(try await tokenEvents(env).count == 1)
                // nanoidp's tokens last 60 minutes; 56 minutes on, the default 5-minute margin makes it refresh.
                clock.advance(by: 56 * 60)
                _ = try await env.call(id, "/echo/r3")
                #expect(try await tokenEvents(env).map(\.type) == ["token.issued", "token.issued"])

                let refreshToken = try await idp.refreshToken()
                let withRefresh = try await oauthIntegration(env, idp, credentials: ["refreshToken": .string(refreshToken)])
                #expect(try await env.call(withRefresh, "/echo/rt").status == 200)
                #expect(try await tokenEvents(env).last?.type == "token.refreshed")
                #expect(try await tokenEvents(env).last?.data.objectValue?["grantType"] == "refresh_token")

                let before = try await tokenEvents(env).count
                let retried = try await env.call(id, "/auth401/k")
                #expect(retried.status == 200 && retried.attempts == 2)
                #expect(try await tokenEvents(env).count == before + 1)
                #expect(env.upstream.calls("/auth401/k") == 2)
            }
        }
    }

    @Test("two instances on PostgreSQL: 100 concurrent calls with an expiring token refresh it once", arguments: Backend.available.filter { $0 == .postgres })
    func twoInstances(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            let clock = ManualWallClock(Date())
            try await GatewayEnvironment.with(backend, clock: clock) { env in
                let refreshToken = try await idp.refreshToken()
                let id = try await oauthIntegration(env, idp, credentials: ["refreshToken": .string(refreshToken)])
                _ = try await env.call(id, "/echo/first")
                #expect(try await tokenEvents(env).map(\.type) == ["token.refreshed"])
                // 56 minutes on, the token is inside the 5-minute margin: everyone wants a new one.
                clock.advance(by: 56 * 60)
                try await env.secondInstance { other in
                    let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                        for i in 0..<100 {
                            group.addTask {
                                let request = APIRequest(method: "GET", endpoint: "/echo/two/\(i)")
                                let gateway = i.isMultiple(of: 2) ? env.gateway : other
                                return try await gateway.execute(request, integrationID: id, by: env.admin).status
                            }
                        }
                        return try await group.reduce(into: [Int]()) { $0.append($1) }
                    }
                    #expect(statuses.count == 100 && statuses.allSatisfy { $0 == 200 })
                }
                try await env.sequencer.drainAll()
                #expect(try await tokenEvents(env).map(\.type) == ["token.refreshed", "token.refreshed"])
                #expect(env.upstream.calls("/echo/two/") == 100)
            }
        }
    }

    @Test("deleting revokes the tokens at the provider (RFC 7009) and forgets them", arguments: [Backend.sqlite])
    func revocation(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            try await GatewayEnvironment.with(backend) { env in
                let id = try await oauthIntegration(env, idp, oauth: ["revocationUrl": .string(idp.baseURL + "/revoke")])
                let seen = GatewayEnvironment.echoed(try await env.call(id, "/echo/before"))
                let token = String((seen["headers"]?.objectValue?["authorization"]?.stringValue ?? "").dropFirst("Bearer ".count))
                #expect(try await idp.introspect(token) == true)
                try await env.gateway.revokeTokens(integrationID: id, by: env.admin)
                try await env.registry.delete(id: id, by: env.admin)
                #expect(try await idp.introspect(token) == false)
                // Recorded events reach the chain within the sequencer's next batch.
                try await env.sequencer.drainAll()
                let revoked = try await tokenEvents(env).filter { $0.type == "token.revoked" }
                #expect(revoked.count == 1 && revoked.first?.data.objectValue?["revoked"] == 1)
                let rows = try await env.db.read { tx in try await tx.raw("SELECT integration_id FROM integration_tokens").all().count }
                #expect(rows == 0)
                #expect(!(try await env.storedText()).contains(token))
            }
        }
    }

    @Test("a failing token endpoint backs off, records token.refresh_failed and ends in status error", arguments: [Backend.sqlite])
    func exhausted(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            let clock = ManualWallClock(Date())
            try await GatewayEnvironment.with(backend, clock: clock) { env in
                let id = try await oauthIntegration(env, idp, credentials: ["clientSecret": "wrong-secret-000"], oauth: ["maxRefreshFailures": 2])
                let first = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/f") }
                #expect(first?.message.contains("401") == true)
                // Within the backoff the endpoint is not asked again.
                let held = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/f") }
                #expect(held?.message.contains("next attempt") == true)
                clock.advance(by: 10)
                _ = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/f") }
                let failures = try await tokenEvents(env).filter { $0.type == "token.refresh_failed" }
                #expect(failures.count == 2 && failures.last?.data.objectValue?["exhausted"] == 1)
                let status = try await env.registry.status(id: id, organizationID: env.admin.organizationID)
                #expect(status.status == .error && status.errorMessage?.contains("token refresh failed") == true)
                #expect(env.upstream.calls("/echo/f") == 0)
                // An integration in error makes no calls.
                let refused = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/f") }
                #expect(refused?.code == .refused)
            }
        }
    }
}

extension OAuthGatewayTests {
    @Test("an unreachable token endpoint backs off and keeps trying, but never puts the integration in error", arguments: [Backend.sqlite])
    func outageIsNotExhaustion(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await GatewayEnvironment.with(backend, clock: clock) { env in
            // A loopback port nothing listens on: the identity provider is down.
            let closed = try NanoIDP.freePort()
            let id = try await env.integration(
                "oauth2", credentials: ["clientId": "portal-client", "clientSecret": "portal-secret-123456"],
                config: ["oauth": ["tokenUrl": .string("http://127.0.0.1:\(closed)/token"), "maxRefreshFailures": 2]],
                rateLimits: ["requestsPerSecond": 1000, "burst": 1000]
            )
            for _ in 0..<4 {
                let failed = await #expect(throws: PortalError.self) { try await env.call(id, "/echo/o") }
                #expect(failed?.code == .upstreamFailed, "\(failed?.message ?? "")")
                clock.advance(by: 400)
            }
            let failures = try await tokenEvents(env).filter { $0.type == "token.refresh_failed" }
            #expect(failures.count == 4)
            #expect(failures.allSatisfy { $0.data.objectValue?["exhausted"] == 0 && $0.data.objectValue?["transient"] == 1 })
            let status = try await env.registry.status(id: id, organizationID: env.admin.organizationID)
            #expect(status.status == .active, "\(status)")
        }
    }
}

@Suite("Signed JWT assertions")
struct JWTAssertionTests {
    static func base64URLDecode(_ text: String) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map(Array.init)
    }

    @Test("HS256, RS256, ES256 and EdDSA assertions verify with the matching key, carry the configured claims, and are reused until near expiry")
    func assertions() async throws {
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let p256 = P256.Signing.PrivateKey()
        let ed = Curve25519.Signing.PrivateKey()
        let edPEM = "-----BEGIN PRIVATE KEY-----\n" + Data([0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20] + Array(ed.rawRepresentation)).base64EncodedString() + "\n-----END PRIVATE KEY-----"
        let cases: [(String, JSONValue, @Sendable ([UInt8], [UInt8]) -> Bool)] = [
            ("HS256", ["secret": "hs-secret-0123456789"], { input, signature in
                HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: SymmetricKey(data: Array("hs-secret-0123456789".utf8)))
            }),
            ("RS256", ["privateKey": .string(rsa.pemRepresentation)], { input, signature in
                rsa.publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .insecurePKCS1v1_5)
            }),
            ("ES256", ["privateKey": .string(p256.pemRepresentation)], { input, signature in
                (try? P256.Signing.ECDSASignature(rawRepresentation: signature)).map { p256.publicKey.isValidSignature($0, for: input) } ?? false
            }),
            ("EdDSA", ["privateKey": .string(edPEM)], { input, signature in ed.publicKey.isValidSignature(signature, for: input) }),
        ]
        let clock = ManualWallClock(Date())
        try await GatewayEnvironment.with(.sqlite, clock: clock) { env in
            for (algorithm, credentials, verify) in cases {
                let id = try await env.integration("jwt", credentials: credentials, config: [
                    "jwt": ["algorithm": .string(algorithm), "issuer": "portal", "audience": "https://api.example.test", "keyId": "k1", "claims": ["scope": "read"]],
                ])
                let first = GatewayEnvironment.echoed(try await env.call(id, "/echo/jwt"))["headers"]?.objectValue?["authorization"]?.stringValue ?? ""
                #expect(first.hasPrefix("Bearer "), "\(algorithm)")
                let parts = first.dropFirst(7).split(separator: ".").map(String.init)
                #expect(parts.count == 3)
                let header = try JSONValue.parse(Data(try #require(Self.base64URLDecode(parts[0]))))
                let claims = try JSONValue.parse(Data(try #require(Self.base64URLDecode(parts[1]))))
                #expect(header.objectValue?["alg"] == .string(algorithm) && header.objectValue?["kid"] == "k1")
                #expect(claims.objectValue?["iss"] == "portal" && claims.objectValue?["aud"] == "https://api.example.test" && claims.objectValue?["scope"] == "read")
                if case .int(let iat)? = claims.objectValue?["iat"], case .int(let exp)? = claims.objectValue?["exp"] { #expect(exp - iat == 300) } else { Issue.record("no iat/exp") }
                let signature = try #require(Self.base64URLDecode(parts[2]))
                #expect(verify(Array((parts[0] + "." + parts[1]).utf8), signature), "\(algorithm) signature")
                var tampered = signature
                tampered[0] ^= 1
                #expect(!verify(Array((parts[0] + "." + parts[1]).utf8), tampered), "\(algorithm) tampered")

                let second = GatewayEnvironment.echoed(try await env.call(id, "/echo/jwt"))["headers"]?.objectValue?["authorization"]?.stringValue
                #expect(second == first, "\(algorithm): reused while valid")
            }
            // 280 s later the 300 s assertions are within 30 s of expiry: a new one is signed.
            let id = try await env.integration("jwt", credentials: ["secret": "hs-secret-0123456789"], config: ["jwt": ["algorithm": "HS256"]])
            let before = GatewayEnvironment.echoed(try await env.call(id, "/echo/a"))["headers"]?.objectValue?["authorization"]?.stringValue
            clock.advance(by: 280)
            let after = GatewayEnvironment.echoed(try await env.call(id, "/echo/b"))["headers"]?.objectValue?["authorization"]?.stringValue
            #expect(before != nil && after != nil && before != after)
            #expect(!(try await env.storedText()).contains(String((before ?? "").dropFirst(7))))
        }
    }

    /// The claims of an ES256 JWT if its signature verifies with `key`, else nil.
    static func verifiedClaims(_ jwt: String, _ key: P256.Signing.PublicKey) throws -> [String: JSONValue]? {
        let parts = jwt.split(separator: ".").map(String.init)
        guard parts.count == 3, let raw = base64URLDecode(parts[2]), let signature = try? P256.Signing.ECDSASignature(rawRepresentation: raw),
              key.isValidSignature(signature, for: Array((parts[0] + "." + parts[1]).utf8)),
              let claims = base64URLDecode(parts[1])
        else { return nil }
        return try JSONValue.parse(Data(claims)).objectValue
    }

    @Test("the JWT-bearer grant (RFC 7523 2.1) and private_key_jwt client authentication (2.2) send verifiable assertions and use the token")
    func jwtBearer() async throws {
        let key = P256.Signing.PrivateKey()
        try await GatewayEnvironment.with(.sqlite) { env in
            let tokenURL = env.upstream.baseURL + "/token/jb"
            let id = try await env.integration("oauth2", credentials: ["clientId": "portal-client", "privateKey": .string(key.pemRepresentation)], config: [
                "oauth": ["tokenUrl": .string(tokenURL), "grantType": "jwt_bearer", "scopes": ["read"]],
                "jwt": ["algorithm": "ES256", "subject": "svc@acme.example"],
            ])
            let seen = GatewayEnvironment.echoed(try await env.call(id, "/echo/jb"))
            #expect(seen["headers"]?.objectValue?["authorization"] == "Bearer tok-jb-1")
            let sent = try #require(env.upstream.tokenRequests("jb").first)
            #expect(sent.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" && sent.form["scope"] == "read")
            let assertion = try #require(sent.form["assertion"])
            let claims = try #require(try Self.verifiedClaims(assertion, key.publicKey), "the assertion verifies with the public key")
            #expect(claims["iss"] == "portal-client" && claims["sub"] == "svc@acme.example" && claims["aud"] == .string(tokenURL))
            #expect(claims["jti"]?.stringValue?.isEmpty == false)
            #expect(try Self.verifiedClaims(assertion, P256.Signing.PrivateKey().publicKey) == nil, "another key does not verify it")
            #expect(sent.authorization == nil && sent.form["client_secret"] == nil)
            // The token is reused while valid.
            _ = try await env.call(id, "/echo/jb2")
            #expect(env.upstream.tokenRequests("jb").count == 1)

            let clientURL = env.upstream.baseURL + "/token/pkj"
            let other = try await env.integration("oauth2", credentials: ["clientId": "portal-client", "privateKey": .string(key.pemRepresentation)], config: [
                "oauth": ["tokenUrl": .string(clientURL), "clientAuth": "private_key_jwt", "tokenParams": ["audience": "https://api.example.test/"]], "jwt": ["algorithm": "ES256"],
            ])
            #expect(GatewayEnvironment.echoed(try await env.call(other, "/echo/pkj"))["headers"]?.objectValue?["authorization"] == "Bearer tok-pkj-1")
            let client = try #require(env.upstream.tokenRequests("pkj").first)
            #expect(client.form["grant_type"] == "client_credentials" && client.authorization == nil, "\(client.form)")
            #expect(client.form["audience"] == "https://api.example.test/")
            #expect(client.form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" && client.form["client_id"] == "portal-client", "\(client.form.keys.sorted())")
            let clientAssertion = try #require(client.form["client_assertion"])
            let clientClaims = try #require(try Self.verifiedClaims(clientAssertion, key.publicKey))
            #expect(clientClaims["iss"] == "portal-client" && clientClaims["sub"] == "portal-client" && clientClaims["aud"] == .string(clientURL))

            // Neither the key nor an assertion is stored.
            let stored = try await env.storedText()
            #expect(!stored.contains(assertion) && !stored.contains("tok-jb-1") && !stored.contains(String(key.pemRepresentation.split(separator: "\n")[1])))
            // An unknown grant is refused when the integration is written, naming the field.
            let refused = await #expect(throws: PortalError.self) {
                try await env.integration("oauth2", credentials: ["clientId": "c"], config: ["oauth": ["tokenUrl": .string(tokenURL), "grantType": "password"]])
            }
            #expect(refused?.fieldErrors.contains { $0.pointer == "/config/oauth/grantType" } == true)
        }
    }
}
