import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalServer
import PortalTestSupport
import Storage
import Testing

/// The role table of DESIGN section 6 on every route, authentication failures, and organization isolation.
@Suite("Access control")
struct AccessControlTests {
    /// Every route the server serves, with the permission it enforces.
    static var routes: [APIRoute] {
        get throws {
            var settings = PortalSettings()
            settings.databaseURL = "sqlite:///tmp/portal-unused-\(UUID().uuidString).sqlite"
            settings.masterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            let database = try Database(url: settings.databaseURL, logger: quietLogger)
            return try buildRouter(services: try PortalServices(settings: settings, database: database, logger: quietLogger)).1
        }
    }

    /// A request that the route accepts from an allowed caller, creating what it needs first.
    func request(for route: APIRoute, in portal: Portal) async throws -> (uri: String, json: String?) {
        switch route.description {
        case "GET /portal/whoami": return ("/portal/whoami", nil)
        case "POST /portal/tokens": return ("/portal/tokens", #"{"role":"auditor","owner":"matrix"}"#)
        case "GET /portal/tokens": return ("/portal/tokens", nil)
        case "DELETE /portal/tokens/{id}":
            let created = try await portal.call(.post, "/portal/tokens", token: portal.token("acme.admin"), json: #"{"role":"auditor","owner":"victim"}"#)
            return ("/portal/tokens/\(created.json.objectValue?["id"]?.stringValue ?? "")", nil)
        case "POST /portal/integrations":
            return ("/portal/integrations", #"{"name":"M \#(UUID().uuidString)","type":"analytics","baseUrl":"https://api.mixpanel.com","authMethod":"api_key","credentials":{"apiKey":"k-123"}}"#)
        case "GET /portal/integrations": return ("/portal/integrations", nil)
        case "GET /portal/integrations/{id}": return ("/portal/integrations/\(try await portal.createIntegration())", nil)
        case "PATCH /portal/integrations/{id}": return ("/portal/integrations/\(try await portal.createIntegration())", #"{"config":{"region":"eu"}}"#)
        case "DELETE /portal/integrations/{id}": return ("/portal/integrations/\(try await portal.createIntegration())", nil)
        case "GET /portal/integrations/{id}/status": return ("/portal/integrations/\(try await portal.createIntegration())/status", nil)
        case "POST /portal/integrations/{id}/requests":
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Echo \(UUID().uuidString)","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-matrix-123456"}}
                """)
            return ("/portal/integrations/\(created.json.objectValue?["id"]?.stringValue ?? "")/requests", #"{"method":"GET","endpoint":"/echo/matrix"}"#)
        case "GET /portal/integrations/{id}/oauth/authorize":
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"OAuth \(UUID().uuidString)","type":"identity_provider","baseUrl":"https://idp.example.test","authMethod":"oauth2",
                 "credentials":{"clientId":"c-123456"},"config":{"oauth":{"tokenUrl":"https://idp.example.test/token","authorizationUrl":"https://idp.example.test/authorize"}}}
                """)
            return ("/portal/integrations/\(created.json.objectValue?["id"]?.stringValue ?? "")/oauth/authorize", nil)
        case "POST /portal/integrations/{id}/credentials/rotate":
            return ("/portal/integrations/\(try await portal.createIntegration())/credentials/rotate", #"{"credentials":{"clientSecret":"rotated-secret-123456"},"overlapSeconds":60}"#)
        case "POST /portal/integrations/test":
            return ("/portal/integrations/test", #"{"name":"Try","type":"analytics","baseUrl":"\#(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-try-123456"},"config":{"testEndpoint":"/echo/test"}}"#)
        case "POST /portal/integrations/{id}/test":
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Tested \(UUID().uuidString)","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-matrix-123456"}}
                """)
            return ("/portal/integrations/\(created.json.objectValue?["id"]?.stringValue ?? "")/test", nil)
        case let description where description.hasSuffix(" /portal/integrations/{id}/proxy/{path}"):
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Proxy \(UUID().uuidString)","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-matrix-123456"}}
                """)
            return ("/portal/integrations/\(created.json.objectValue?["id"]?.stringValue ?? "")/proxy/echo/matrix?x=1", route.method == "GET" || route.method == "DELETE" ? nil : #"{"a":1}"#)
        case "POST /portal/integrations/{id}/webhooks":
            return ("/portal/integrations/\(try await portal.createIntegration())/webhooks", #"{"endpoint":"/webhooks/m-\#(Self.suffix())","secret":"matrix-secret-1"}"#)
        case "GET /portal/integrations/{id}/webhooks": return ("/portal/integrations/\(try await portal.createIntegration())/webhooks", nil)
        case "GET /portal/integrations/{id}/webhooks/logs": return ("/portal/integrations/\(try await portal.createIntegration())/webhooks/logs?status=failed", nil)
        case "GET /portal/integrations/{id}/webhooks/{webhookId}": return (try await webhookEndpoint(portal), nil)
        case "PATCH /portal/integrations/{id}/webhooks/{webhookId}": return (try await webhookEndpoint(portal), #"{"events":["user.*"]}"#)
        case "DELETE /portal/integrations/{id}/webhooks/{webhookId}": return (try await webhookEndpoint(portal), nil)
        case "POST /portal/integrations/{id}/webhooks/{webhookId}/test": return (try await webhookEndpoint(portal) + "/test", nil)
        case "POST /portal/webhooks/events/{eventId}/retry": return ("/portal/webhooks/events/\(try await failedWebhookEvent(portal))/retry", nil)
        case "POST /portal/webhooks/events/retry": return ("/portal/webhooks/events/retry", #"{"eventType":"none.such"}"#)
        case "POST /portal/integrations/{id}/sync": return ("/portal/integrations/\(try await syncIntegration(portal))/sync", #"{"syncType":"full"}"#)
        case "GET /portal/integrations/{id}/sync/jobs": return ("/portal/integrations/\(try await syncIntegration(portal))/sync/jobs", nil)
        case "GET /portal/integrations/{id}/sync/jobs/{jobId}": return (try await syncJob(portal, endpoint: "/echo/users"), nil)
        case "POST /portal/integrations/{id}/sync/jobs/{jobId}/cancel": return (try await syncJob(portal, endpoint: "/slow/1500") + "/cancel", nil)
        case "GET /portal/integrations/{id}/sync/schedule": return ("/portal/integrations/\(try await syncIntegration(portal))/sync/schedule", nil)
        case "POST /portal/integrations/{id}/sync/pause": return ("/portal/integrations/\(try await syncIntegration(portal))/sync/pause", nil)
        case "POST /portal/integrations/{id}/sync/resume": return ("/portal/integrations/\(try await syncIntegration(portal))/sync/resume", nil)
        case "GET /portal/integrations/{id}/sync/conflicts": return ("/portal/integrations/\(try await syncIntegration(portal))/sync/conflicts?status=open", nil)
        case "POST /portal/integrations/{id}/sync/conflicts/{conflictId}/resolve":
            return (try await syncConflict(portal) + "/resolve", #"{"choose":"destination"}"#)
        case "GET /portal/integrations/{id}/records/{entity}":
            return ("/portal/integrations/\(try await syncIntegration(portal))/records/users?modified_after=2026-01-01T00:00:00Z", nil)
        case "PATCH /portal/integrations/{id}/records/{entity}/{recordId}": return (try await syncRecord(portal), #"{"plan":"team"}"#)
        case "POST /portal/subjects/{id}/export": return ("/portal/subjects/matrix%40example.test/export", nil)
        case "POST /portal/subjects/{id}/erase": return ("/portal/subjects/matrix-\(Self.suffix())%40example.test/erase", nil)
        case "POST /portal/reports": return ("/portal/reports", #"{"kind":"gdpr","from":"2026-01-01","to":"2026-01-31"}"#)
        case "GET /portal/reports": return ("/portal/reports?limit=5", nil)
        case "GET /portal/reports/{id}": return ("/portal/reports/\(try await reportID(portal))", nil)
        case "GET /portal/reports/{id}/download": return ("/portal/reports/\(try await reportID(portal, wait: true))/download", nil)
        case "GET /portal/retention": return ("/portal/retention", nil)
        case "GET /portal/compliance/processing-register": return ("/portal/compliance/processing-register?from=2026-01-01&to=2026-12-31", nil)
        case "PUT /portal/retention": return ("/portal/retention", #"{"requestLogsDays":400,"storedBodiesDays":null,"webhookPayloadsDays":14}"#)
        case "GET /portal/metrics": return ("/portal/metrics", nil)
        case "GET /portal/metrics/summary": return ("/portal/metrics/summary?window=24h", nil)
        case "GET /portal/integrations/{id}/metrics": return ("/portal/integrations/\(try await portal.createIntegration())/metrics?window=5m", nil)
        case "GET /portal/integrations/{id}/metrics/series": return ("/portal/integrations/\(try await portal.createIntegration())/metrics/series?window=1h", nil)
        case "GET /portal/alerts": return ("/portal/alerts?recentHours=48", nil)
        case "GET /portal/alerts/rules": return ("/portal/alerts/rules", nil)
        case "GET /portal/alerts/silences": return ("/portal/alerts/silences", nil)
        case "POST /portal/alerts/silences":
            return ("/portal/alerts/silences", #"{"matchers":[{"name":"integration","value":"none"}],"duration":"1h","comment":"maintenance"}"#)
        case "DELETE /portal/alerts/silences/{id}": return ("/portal/alerts/silences/\(try await silence(portal))", nil)
        case "GET /portal/alerts/receivers": return ("/portal/alerts/receivers", nil)
        case "POST /portal/alerts/receivers": return ("/portal/alerts/receivers", #"{"name":"r-\#(Self.suffix())","kind":"teams","url":"https://example.com/workflow"}"#)
        case "DELETE /portal/alerts/receivers/{id}": return ("/portal/alerts/receivers/\(try await receiver(portal))", nil)
        case "GET /portal/alerts/notifications": return ("/portal/alerts/notifications?limit=10", nil)
        case "GET /portal/catalog": return ("/portal/catalog?type=identity_provider", nil)
        case "GET /portal/catalog/{preset}": return ("/portal/catalog/okta", nil)
        case "GET /portal/integrations/{id}/slo": return ("/portal/integrations/\(try await portal.createIntegration())/slo", nil)
        case "GET /portal/reviews/questionnaire": return ("/portal/reviews/questionnaire", nil)
        case "GET /portal/reviews": return ("/portal/reviews", nil)
        case "GET /portal/integrations/{id}/reviews": return ("/portal/integrations/\(try await portal.createIntegration())/reviews", nil)
        case "POST /portal/integrations/{id}/reviews": return ("/portal/integrations/\(try await portal.createIntegration())/reviews", ReviewTests.answers())
        case "POST /portal/bulk-jobs": return ("/portal/bulk-jobs", #"{"action":"export","format":"yaml"}"#)
        case "GET /portal/bulk-jobs": return ("/portal/bulk-jobs", nil)
        case "GET /portal/bulk-jobs/{id}":
            let created = try await portal.call(.post, "/portal/bulk-jobs", token: portal.token("acme.admin"), json: #"{"action":"export"}"#)
            return ("/portal/bulk-jobs/\(created.json.objectValue?["id"]?.stringValue ?? "")", nil)
        case "GET /portal/policy": return ("/portal/policy", nil)
        case "PUT /portal/policy": return ("/portal/policy", #"{"approvals":"off"}"#)
        case "GET /portal/approvals": return ("/portal/approvals?state=pending", nil)
        case "POST /portal/integrations/{id}/approve": return ("/portal/integrations/\(try await pendingIntegration(portal))/approve", #"{"comment":"reviewed"}"#)
        case "POST /portal/integrations/{id}/reject": return ("/portal/integrations/\(try await pendingIntegration(portal))/reject", #"{"comment":"not needed"}"#)
        case "GET /ledger/{slug}/checkpoint": return ("/ledger/acme/checkpoint", nil)
        case "GET /ledger/{slug}/keys": return ("/ledger/acme/keys", nil)
        case "GET /ledger/{slug}/tile/{path}": return ("/ledger/acme/tile/0/000.p/1", nil)
        case "GET /ledger/{slug}/entries": return ("/ledger/acme/entries?from=0&limit=5", nil)
        case "GET /ledger/{slug}/entries/{seq}": return ("/ledger/acme/entries/0", nil)
        case "GET /ledger/{slug}/proofs/consistency": return ("/ledger/acme/proofs/consistency?from=1&to=2", nil)
        case "POST /ledger/{slug}/checkpoints": return ("/ledger/acme/checkpoints", nil)
        case "POST /ledger/{slug}/verifications": return ("/ledger/acme/verifications", nil)
        case "GET /ledger/{slug}/export": return ("/ledger/acme/export", nil)
        default:
            Issue.record("the role matrix has no request for \(route): add one")
            return ("/", nil)
        }
    }

    static func suffix() -> String { String(UUID().uuidString.lowercased().prefix(8)) }

    /// A new report's id (requested as acme's admin), once built when `wait`.
    func reportID(_ portal: Portal, wait: Bool = false) async throws -> String {
        let created = try await portal.call(.post, "/portal/reports", token: portal.token("acme.admin"), json: #"{"kind":"soc2","from":"2026-01-01","to":"2026-12-31"}"#)
        let id = try #require(created.json.objectValue?["id"]?.stringValue, "\(created.body.string)")
        if wait {
            _ = try await eventually {
                try await portal.call(.get, "/portal/reports/\(id)", token: portal.token("acme.admin")).json.objectValue?["status"] == "completed"
            }
        }
        return id
    }

    /// A new integration waiting for approval, requested by acme's operator (so its admin and compliance
    /// officer may decide), with approvals required only while it is made.
    func pendingIntegration(_ portal: Portal) async throws -> String {
        let admin = portal.token("acme.admin")
        #expect(try await portal.call(.put, "/portal/policy", token: admin, json: #"{"approvals":"required"}"#).status == .ok)
        let id = try await portal.createIntegration(token: portal.token("acme.operator"))
        #expect(try await portal.call(.put, "/portal/policy", token: admin, json: #"{"approvals":"off"}"#).status == .ok)
        return id
    }

    /// A new silence's id (created as acme's admin).
    func silence(_ portal: Portal) async throws -> String {
        let created = try await portal.call(.post, "/portal/alerts/silences", token: portal.token("acme.admin"), json: #"{"matchers":[{"name":"kind","value":"dead_letters"}],"duration":"2h","comment":"matrix"}"#)
        return try #require(created.json.objectValue?["id"]?.stringValue, "\(created.body.string)")
    }

    /// A new alert receiver's id (created as acme's admin).
    func receiver(_ portal: Portal) async throws -> String {
        let created = try await portal.call(.post, "/portal/alerts/receivers", token: portal.token("acme.admin"), json: #"{"name":"m-\#(Self.suffix())","kind":"slack","url":"https://hooks.example.com/x"}"#)
        return try #require(created.json.objectValue?["id"]?.stringValue, "\(created.body.string)")
    }

    /// A new webhook endpoint's URI (created as acme's admin).
    func webhookEndpoint(_ portal: Portal) async throws -> String {
        let integration = try await portal.createIntegration()
        let created = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: portal.token("acme.admin"), json: """
            {"endpoint":"/webhooks/m-\(Self.suffix())","secret":"matrix-secret-1"}
            """)
        return "/portal/integrations/\(integration)/webhooks/\(created.json.objectValue?["id"]?.stringValue ?? "")"
    }

    /// A new integration with a syncConfig whose users endpoint is `endpoint` on the test upstream.
    func syncIntegration(_ portal: Portal, endpoint: String = "/echo/users") async throws -> String {
        let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"Sync \(Self.suffix())","type":"identity_provider","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key",
             "credentials":{"apiKey":"k-matrix-123456"},"syncConfig":{"entities":{"users":{"endpoint":"\(endpoint)","itemsPath":"/none"}}}}
            """)
        return try #require(created.json.objectValue?["id"]?.stringValue, "\(created.body.string)")
    }

    /// A sync job's URI (started as acme's admin).
    func syncJob(_ portal: Portal, endpoint: String) async throws -> String {
        let integration = try await syncIntegration(portal, endpoint: endpoint)
        let started = try await portal.call(.post, "/portal/integrations/\(integration)/sync", token: portal.token("acme.admin"), json: #"{"syncType":"full"}"#)
        let job = try #require(started.json.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue, "\(started.body.string)")
        return "/portal/integrations/\(integration)/sync/jobs/\(job)"
    }

    /// An open conflict's URI, written straight into the database.
    func syncConflict(_ portal: Portal) async throws -> String {
        let integration = try await syncIntegration(portal)
        let id = UUID()
        try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
            try await db.write { tx in
                try await SyncRecordStore(tx).upsert(
                    organizationID: portal.acme.id, integrationID: UUID(uuidString: integration)!, entity: "users", recordID: "u-1", data: ["plan": "free"],
                    source: "sync", sourceEventID: nil, at: Date()
                )
                try await SyncStore(tx).insertConflict(SyncConflictRecord(
                    id: id, organizationID: portal.acme.id, integrationID: UUID(uuidString: integration)!, entity: "users", recordID: "u-1", jobID: nil,
                    source: ["plan": "pro"], destination: ["plan": "team"], base: ["plan": "free"], flagged: ["plan"], createdAt: Date()
                ))
            }
        }
        return "/portal/integrations/\(integration)/sync/conflicts/\(id.uuidString.lowercased())"
    }

    /// A synced record's URI, written straight into the database.
    func syncRecord(_ portal: Portal) async throws -> String {
        let integration = try await syncIntegration(portal)
        try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
            try await db.write { tx in
                try await SyncRecordStore(tx).upsert(
                    organizationID: portal.acme.id, integrationID: UUID(uuidString: integration)!, entity: "users", recordID: "u-1", data: ["plan": "free"],
                    source: "sync", sourceEventID: nil, at: Date()
                )
            }
        }
        return "/portal/integrations/\(integration)/records/users/u-1"
    }

    /// A dead-lettered event of a new endpoint, written straight into the queue as failed.
    func failedWebhookEvent(_ portal: Portal) async throws -> String {
        let uri = try await webhookEndpoint(portal)
        let parts = uri.split(separator: "/").map(String.init)
        let (integration, endpoint) = (UUID(uuidString: parts[2])!, UUID(uuidString: parts[4])!)
        let id = UUID()
        let inserted = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
            try await db.write { tx in
                try await WebhookEventStore(tx).insert([WebhookEventRecord(
                    id: id, organizationID: portal.acme.id, integrationID: integration, endpointID: endpoint, eventType: "user.updated", payload: [:],
                    signature: nil, status: .failed, errorMessage: "made failed by the test", createdAt: Date(), providerEventID: nil,
                    dedupKey: "test:\(id)", headers: [:], bodyDigest: "00", availableAt: Date()
                )])
            }
        }
        #expect(inserted == [id])
        return id.uuidString.lowercased()
    }

    @Test("every role against every route: allowed, or 403", arguments: Backend.available)
    func roleMatrix(backend: Backend) async throws {
        let routes = try Self.routes.filter(\.authenticated)
        #expect(routes.count >= 10)
        try await withPortal(backend, configure: { $0.quotas.openReports = 1_000 }) { portal in
            for route in routes {
                for role in Role.allCases {
                    let (uri, json) = try await request(for: route, in: portal)
                    let response = try await portal.call(
                        HTTPRequest.Method(route.method)!, uri, token: portal.token("acme.\(role.rawValue)"), json: json
                    )
                    let allowed = route.permission.map(role.allows) ?? true
                    if allowed {
                        #expect((200..<300).contains(response.status.code), "\(role) \(route): \(response.status) \(response.body.string)")
                    } else {
                        let problem = expectProblem(response, .forbidden)
                        #expect(problem["code"] == "forbidden", "\(role) \(route)")
                    }
                }
            }
        }
    }

    @Test("missing, malformed, unknown, expired and revoked tokens get 401 on every authenticated route", arguments: Backend.available)
    func unauthenticated(backend: Backend) async throws {
        let routes = try Self.routes.filter(\.authenticated)
        try await withPortal(backend, configure: { $0.quotas.openReports = 1_000 }) { portal in
            let badTokens: [String?] = [
                nil, "not-a-token", "ptk_" + String(repeating: "A", count: 43), portal.token("acme.expired"), portal.token("acme.revoked"),
            ]
            for route in routes {
                let uri = route.path.replacingOccurrences(of: "{id}", with: UUID().uuidString.lowercased())
                    .replacingOccurrences(of: "{slug}", with: "acme").replacingOccurrences(of: "{seq}", with: "0")
                    .replacingOccurrences(of: "{path}", with: "0/000")
                for token in badTokens {
                    let response = try await portal.call(HTTPRequest.Method(route.method)!, uri, token: token, json: "{}")
                    let problem = expectProblem(response, .unauthorized)
                    #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                    #expect(problem["code"] == "unauthenticated")
                }
            }
            let basic = try await portal.call(.get, "/portal/integrations", token: nil, headers: [.authorization: "Basic YTpi"])
            expectProblem(basic, .unauthorized)
            let expired = try await portal.call(.get, "/portal/whoami", token: portal.token("acme.expired"))
            #expect(expectProblem(expired, .unauthorized)["detail"]?.stringValue?.contains("expired") == true)
            let revoked = try await portal.call(.get, "/portal/whoami", token: portal.token("acme.revoked"))
            #expect(expectProblem(revoked, .unauthorized)["detail"]?.stringValue?.contains("revoked") == true)
        }
    }

    @Test("a token in use and then revoked, and an integration in use and then disabled, are refused at once (the caches forget them)")
    func revocationIsImmediate() async throws {
        try await withPortal(.sqlite) { portal in
            let admin = portal.token("acme.admin")
            let issued = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"operator","owner":"short-lived"}"#)
            let token = try #require(issued.json.objectValue?["token"]?.stringValue)
            let tokenID = try #require(issued.json.objectValue?["id"]?.stringValue)
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                {"name":"Echo cache","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-cache-123456"}}
                """)
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            // Used twice, so both the token and the integration's outbound configuration are cached.
            for _ in 0..<2 {
                #expect(try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/c"}"#).status == .ok)
            }
            let disabled = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"status":"inactive"}"#)
            #expect(disabled.status == .ok, "\(disabled.body.string)")
            let refused = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/c"}"#)
            #expect(expectProblem(refused, .forbidden)["code"] == "refused")
            #expect(try await portal.call(.delete, "/portal/tokens/\(tokenID)", token: admin).status == .noContent)
            let afterRevoke = try await portal.call(.get, "/portal/whoami", token: token)
            #expect(expectProblem(afterRevoke, .unauthorized)["detail"]?.stringValue?.contains("revoked") == true)
            #expect(portal.upstream.calls("/echo/c") == 2)
        }
    }

    @Test("another organization's resources are 404 and never listed", arguments: Backend.available)
    func isolation(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let acmeIntegration = try await portal.createIntegration(name: "Acme CRM")
            let globexIntegration = try await portal.createIntegration(name: "Globex CRM", token: portal.token("globex.admin"))
            let globexAdmin = portal.token("globex.admin")

            for (method, suffix, json) in [
                (HTTPRequest.Method.get, "", nil), (.patch, "", #"{"name":"stolen"}"#), (.delete, "", nil), (.get, "/status", nil),
            ] as [(HTTPRequest.Method, String, String?)] {
                let response = try await portal.call(method, "/portal/integrations/\(acmeIntegration)\(suffix)", token: globexAdmin, json: json)
                expectProblem(response, .notFound)
            }
            let list = try await portal.call(.get, "/portal/integrations", token: globexAdmin)
            let ids = list.json.objectValue?["items"]?.arrayIDs ?? []
            #expect(ids == [globexIntegration])
            let acmeList = try await portal.call(.get, "/portal/integrations?includeDeleted=true", token: portal.token("acme.auditor"))
            #expect(acmeList.json.objectValue?["items"]?.arrayIDs == [acmeIntegration])

            // Tokens too: globex's admin neither sees nor revokes acme's tokens.
            let acmeTokens = try await portal.call(.get, "/portal/tokens?limit=1000", token: portal.token("acme.admin"))
            let acmeTokenID = try #require(acmeTokens.json.objectValue?["items"]?.arrayIDs.first)
            expectProblem(try await portal.call(.delete, "/portal/tokens/\(acmeTokenID)", token: globexAdmin), .notFound)
            let globexTokens = try await portal.call(.get, "/portal/tokens?limit=1000", token: globexAdmin)
            let globexOrgs = Set(globexTokens.json.objectValue?["items"]?.arrayValues.compactMap { $0.objectValue?["organization"]?.stringValue } ?? [])
            #expect(globexOrgs == ["globex"])

            // The acme integration is untouched.
            let still = try await portal.call(.get, "/portal/integrations/\(acmeIntegration)", token: portal.token("acme.auditor"))
            #expect(still.json.objectValue?["name"] == "Acme CRM")
            #expect(still.json.objectValue?["deletedAt"] == nil)
        }
    }
}

extension JSONValue {
    var arrayValues: [JSONValue] {
        if case .array(let items) = self { return items }
        return []
    }

    var arrayIDs: [String] { arrayValues.compactMap { $0.objectValue?["id"]?.stringValue } }
}
