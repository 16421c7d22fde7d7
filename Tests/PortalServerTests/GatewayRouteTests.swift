import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// `POST /portal/integrations/{id}/requests` over HTTP: the seed's APIRequest in, APIResponse out, and the
/// gateway's refusals as problem+json.
@Suite("Gateway over HTTP")
struct GatewayRouteTests {
    func echoIntegration(_ portal: Portal, base: String? = nil, rateLimits: String = #"{"requestsPerMinute":2}"#, config: String = "{}") async throws -> String {
        let response = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.operator"), json: """
            {"name":"Echo \(UUID().uuidString.prefix(8))","type":"analytics","baseUrl":"\(base ?? portal.upstream.baseURL)","authMethod":"api_key",
             "credentials":{"apiKey":"k-route-123456"},"rateLimits":\(rateLimits),"config":\(config)}
            """)
        #expect(response.status == .created, "\(response.body.string)")
        return try #require(response.json.objectValue?["id"]?.stringValue)
    }

    @Test("a call returns the upstream's answer; bad input, the rate limit and internal destinations get problems", arguments: Backend.available)
    func executeRequest(backend: Backend) async throws {
        // A standing clock: the rate limit's bucket does not refill however slowly a busy machine answers
        // (two requests a minute refilled one while stress-ng ran beside the suite).
        try await withPortal(backend, clock: ManualWallClock(Date())) { portal in
            let id = try await echoIntegration(portal)
            let operatorToken = portal.token("acme.operator")
            let ok = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: operatorToken, json: """
                {"integrationId":"\(id)","method":"POST","endpoint":"/echo/contacts","headers":{"X-Trace":"t1"},"body":{"name":"n"},"params":{"page":"2"}}
                """)
            #expect(ok.status == .ok, "\(ok.body.string)")
            let answer = ok.json.objectValue ?? [:]
            #expect(answer["status"] == 200 && answer["outcome"] == "success" && answer["attempts"] == 1 && answer["cacheStatus"] == "BYPASS")
            let echoed = answer["body"]?.objectValue ?? [:]
            #expect(echoed["path"] == "/echo/contacts" && echoed["query"] == "page=2" && echoed["method"] == "POST")
            #expect(echoed["headers"]?.objectValue?["x-trace"] == "t1" && echoed["headers"]?.objectValue?["x-api-key"] == "k-route-123456")
            // The caller's portal token never reaches the provider.
            #expect(!ok.body.string.contains(operatorToken))

            let bad = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: operatorToken, json: #"{"method":"TRACE","endpoint":"http://elsewhere/","extra":1}"#)
            let problem = expectProblem(bad, .unprocessableContent)
            let pointers = Set((problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == ["/method", "/endpoint", "/extra"])

            _ = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: operatorToken, json: #"{"method":"GET","endpoint":"/echo/again"}"#)
            let throttled = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: operatorToken, json: #"{"method":"GET","endpoint":"/echo/again"}"#)
            #expect(expectProblem(throttled, .tooManyRequests)["code"] == "throttled")
            #expect(Int(throttled.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(portal.upstream.calls("/echo/again") == 1)

            let metadata = try await echoIntegration(portal, base: "https://169.254.169.254")
            let refused = try await portal.call(.post, "/portal/integrations/\(metadata)/requests", token: operatorToken, json: #"{"method":"GET","endpoint":"/latest/meta-data"}"#)
            #expect(expectProblem(refused, .forbidden)["code"] == "refused")

            let unreachable = try await echoIntegration(portal, base: "http://127.0.0.1:1")
            let failed = try await portal.call(.post, "/portal/integrations/\(unreachable)/requests", token: operatorToken, json: #"{"method":"GET","endpoint":"/x"}"#)
            #expect(expectProblem(failed, .badGateway)["code"] == "upstream_failed")

            // Auditors read but do not call out.
            let auditor = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.auditor"), json: #"{"method":"GET","endpoint":"/echo/x"}"#)
            expectProblem(auditor, .forbidden)
        }
    }

    @Test("the proxy forwards method, path, query, headers and body, never the portal token; the cache answers repeat GETs", arguments: Backend.available)
    func proxyAndCache(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Proxy","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-proxy-123456"},
                 "config":{"cache":{"ttlSeconds":60,"endpoints":["/echo/cached"]}},"rateLimits":{"requestsPerSecond":100,"burst":100}}
                """)
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let token = portal.token("acme.operator")
            let get = try await portal.call(.get, "/portal/integrations/\(id)/proxy/echo/users/7?x=1&y=two", token: token, headers: [HTTPField.Name("X-Custom")!: "c1"])
            #expect(get.status == .ok && get.headers[HTTPField.Name("X-Cache-Status")!] == "BYPASS")
            let seen = get.json.objectValue ?? [:]
            #expect(seen["path"] == "/echo/users/7" && seen["query"] == "x=1&y=two" && seen["method"] == "GET")
            let headers = seen["headers"]?.objectValue ?? [:]
            #expect(headers["x-custom"] == "c1" && headers["x-api-key"] == "k-proxy-123456")
            #expect(headers["authorization"] == nil && !get.body.string.contains(token))

            let post = try await portal.call(.post, "/portal/integrations/\(id)/proxy/echo/notes", token: token, json: "plain words", contentType: "text/plain")
            #expect(post.json.objectValue?["body"] == "plain words" && post.json.objectValue?["headers"]?.objectValue?["content-type"] == "text/plain")

            let missing = try await portal.call(.get, "/portal/integrations/\(id)/proxy/status/404", token: token)
            #expect(missing.status == .notFound && missing.json.objectValue?["status"] == 404)

            let first = try await portal.call(.get, "/portal/integrations/\(id)/proxy/echo/cached", token: token)
            let second = try await portal.call(.get, "/portal/integrations/\(id)/proxy/echo/cached", token: token)
            #expect(first.headers[HTTPField.Name("X-Cache-Status")!] == "MISS" && second.headers[HTTPField.Name("X-Cache-Status")!] == "HIT")
            #expect(second.body.string == first.body.string)
            #expect(portal.upstream.calls("/echo/cached") == 1)
            let fresh = try await portal.call(.get, "/portal/integrations/\(id)/proxy/echo/cached", token: token, headers: [.cacheControl: "no-store"])
            #expect(fresh.headers[HTTPField.Name("X-Cache-Status")!] == "BYPASS")
            #expect(portal.upstream.calls("/echo/cached") == 2)
        }
    }

    @Test("testing a saved integration records the call and integration.tested; an unsaved configuration stores nothing", arguments: [Backend.sqlite])
    func testRoutes(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let token = portal.token("acme.operator")
            let id = try await echoIntegration(portal, rateLimits: #"{"requestsPerMinute":100}"#, config: #"{"testEndpoint":"/echo/test"}"#)
            let saved = try await portal.call(.post, "/portal/integrations/\(id)/test", token: token)
            #expect(saved.status == .ok)
            #expect(saved.json.objectValue?["success"] == true && saved.json.objectValue?["details"]?.objectValue?["status"] == 200)
            let entries = try await portal.call(.get, "/ledger/acme/entries?from=0&limit=1000", token: token)
            let types = (entries.json.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["entry"]?.objectValue?["type"]?.stringValue }
            #expect(types.contains("integration.tested") && types.contains("request.completed"), "\(types)")

            let before = try await portal.rowCounts()
            let unsaved = try await portal.call(.post, "/portal/integrations/test", token: token, json: """
                {"name":"Try","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"basic_auth",
                 "credentials":{"username":"u","password":"transient-pass-1"},"config":{"testEndpoint":"/status/401"}}
                """)
            #expect(unsaved.status == .ok)
            #expect(unsaved.json.objectValue?["success"] == false)
            #expect(unsaved.json.objectValue?["message"]?.stringValue?.contains("credentials") == true)
            #expect(try await portal.rowCounts() == before)
            #expect(portal.upstream.calls("/status/401") == 1)

            let refused = try await portal.call(.post, "/portal/integrations/test", token: token, json: """
                {"name":"Meta","type":"analytics","baseUrl":"https://169.254.169.254","authMethod":"api_key","credentials":{"apiKey":"k-meta-123456"}}
                """)
            #expect(refused.json.objectValue?["success"] == false && refused.json.objectValue?["details"]?.objectValue?["error"] == "refused")
        }
    }

    @Test("authorization code with PKCE: authorize, log in at the provider, the callback stores the token once", arguments: Backend.available)
    func authorizationCode(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            try await withPortal(backend) { portal in
                let token = portal.token("acme.operator")
                let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                    {"name":"IdP","type":"identity_provider","baseUrl":"\(portal.upstream.baseURL)","authMethod":"oauth2",
                     "credentials":{"clientId":"\(NanoIDP.clientID)","clientSecret":"\(NanoIDP.clientSecret)"},
                     "config":{"oauth":{"tokenUrl":"\(idp.tokenURL)","authorizationUrl":"\(idp.baseURL)/authorize","scopes":["openid","offline_access"],"grantType":"authorization_code","authorizationParams":{"prompt":"consent"}}}}
                    """)
                let id = try #require(created.json.objectValue?["id"]?.stringValue)
                // Before it is connected, calls are refused with a pointer to the flow.
                let early = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/x"}"#)
                #expect(early.json.objectValue?["detail"]?.stringValue?.contains("oauth/authorize") == true, "\(early.body.string)")

                let start = try await portal.call(.get, "/portal/integrations/\(id)/oauth/authorize", token: token)
                #expect(start.status == .ok, "\(start.body.string)")
                let url = try #require(start.json.objectValue?["authorizationUrl"]?.stringValue)
                let query = URLComponents(string: url)?.queryItems ?? []
                #expect(query.contains { $0.name == "code_challenge_method" && $0.value == "S256" })
                #expect(query.contains { $0.name == "prompt" && $0.value == "consent" })
                #expect(query.first { $0.name == "code_challenge" }?.value?.count == 43)
                let (code, state) = try await idp.login(authorizationURL: url)
                #expect(state == start.json.objectValue?["state"]?.stringValue)

                let callback = try await portal.call(.get, "/portal/oauth/callback?code=\(code)&state=\(state)", token: nil)
                #expect(callback.status == .ok && callback.json.objectValue?["connected"] == true, "\(callback.body.string)")
                // The state is single-use.
                let replay = try await portal.call(.get, "/portal/oauth/callback?code=\(code)&state=\(state)", token: nil)
                expectProblem(replay, .badRequest)
                let forged = try await portal.call(.get, "/portal/oauth/callback?code=x&state=forged", token: nil)
                expectProblem(forged, .badRequest)

                let call = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/connected"}"#)
                let authorization = call.json.objectValue?["body"]?.objectValue?["headers"]?.objectValue?["authorization"]?.stringValue
                #expect(authorization?.hasPrefix("Bearer eyJ") == true, "\(call.body.string)")
                let entries = try await portal.call(.get, "/ledger/acme/entries?from=0&limit=1000", token: token)
                let issued = (entries.json.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["entry"]?.objectValue }.filter { $0["type"] == "token.issued" }
                #expect(issued.count == 1 && issued.first?["data"]?.objectValue?["grantType"] == "authorization_code")
                #expect(issued.first?["data"]?.objectValue?["hasRefreshToken"] == 1)
                #expect(!entries.body.string.contains(code))
            }
        }
    }

    @Test("rotating credentials: new values are used, the old ones only as a fallback during the overlap, and credential.rotated holds no value", arguments: [Backend.sqlite])
    func rotation(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let token = portal.token("acme.operator")
            let id = try await echoIntegration(portal, rateLimits: #"{"requestsPerMinute":100}"#)
            let rotated = try await portal.call(.post, "/portal/integrations/\(id)/credentials/rotate", token: token, json: #"{"credentials":{"apiKey":"k-route-new-7890"},"overlapSeconds":3600}"#)
            #expect(rotated.status == .ok, "\(rotated.body.string)")
            #expect(!rotated.body.string.contains("k-route-new-7890") && !rotated.body.string.contains("k-route-123456"))

            let current = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/key/k-route-new-7890"}"#)
            #expect(current.json.objectValue?["status"] == 200 && current.json.objectValue?["attempts"] == 1)
            // A provider that still knows only the old key: refused once, then the previous key succeeds.
            let fallback = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/key/k-route-123456"}"#)
            #expect(fallback.json.objectValue?["status"] == 200 && fallback.json.objectValue?["attempts"] == 2, "\(fallback.body.string)")

            // Rotating again without overlap ends the fallback.
            _ = try await portal.call(.post, "/portal/integrations/\(id)/credentials/rotate", token: token, json: #"{"credentials":{"apiKey":"k-route-third-1111"}}"#)
            let ended = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: token, json: #"{"method":"GET","endpoint":"/key/k-route-new-7890"}"#)
            #expect(ended.json.objectValue?["status"] == 401 && ended.json.objectValue?["attempts"] == 1)

            let bad = try await portal.call(.post, "/portal/integrations/\(id)/credentials/rotate", token: token, json: #"{"credentials":{},"overlapSeconds":-1}"#)
            let problem = expectProblem(bad, .unprocessableContent)
            #expect(Set((problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue }) == ["/credentials", "/overlapSeconds"])

            let entries = try await portal.call(.get, "/ledger/acme/entries?from=0&limit=1000", token: token)
            let rotations = (entries.json.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["entry"]?.objectValue }.filter { $0["type"] == "credential.rotated" }
            #expect(rotations.count == 2 && rotations.first?["data"]?.objectValue?["fields"] == ["apiKey"])
            #expect(rotations.first?["data"]?.objectValue?["overlapUntil"] != nil && rotations.last?["data"]?.objectValue?["overlapUntil"] == nil)
            #expect(!entries.body.string.contains("k-route-new-7890") && !entries.body.string.contains("k-route-third-1111"))
        }
    }

    @Test("the catalog lists and filters presets; an integration created from one needs only credentials and calls as configured")
    func catalog() async throws {
        try await withPortal(.sqlite) { portal in
            let auditor = portal.token("acme.auditor")
            let all = try await portal.call(.get, "/portal/catalog", token: auditor)
            #expect(all.status == .ok)
            let providers = all.json.objectValue?["providers"]?.arrayValue ?? []
            #expect(providers.count >= 27)
            let identity = try await portal.call(.get, "/portal/catalog?type=identity_provider", token: auditor).json.objectValue?["providers"]?.arrayValue ?? []
            #expect(Set(identity.compactMap { $0.objectValue?["id"]?.stringValue }) == ["okta", "auth0", "azure-ad", "active-directory"])
            let searched = try await portal.call(.get, "/portal/catalog?q=SIEM", token: auditor).json.objectValue?["providers"]?.arrayValue ?? []
            #expect(searched.compactMap { $0.objectValue?["id"]?.stringValue } == ["splunk"])
            expectProblem(try await portal.call(.get, "/portal/catalog?type=crm", token: auditor), .unprocessableContent)
            let stripe = try await portal.call(.get, "/portal/catalog/stripe", token: auditor)
            #expect(stripe.json.objectValue?["webhook"]?.objectValue?["scheme"] == "stripe" && stripe.json.objectValue?["authMethod"] == "api_key")
            expectProblem(try await portal.call(.get, "/portal/catalog/nope", token: auditor), .notFound)

            // Stripe's preset pointed at the test upstream: the key goes out as a bearer, as Stripe expects.
            let operatorToken = portal.token("acme.operator")
            let created = try await portal.call(.post, "/portal/integrations", token: operatorToken, json: """
                {"preset":"stripe","baseUrl":"\(portal.upstream.baseURL)","credentials":{"apiKey":"rk_test_0123456789"},"config":{"testEndpoint":"/echo/balance"}}
                """)
            #expect(created.status == .created, "\(created.body.string)")
            let view = created.json.objectValue ?? [:]
            #expect(view["name"] == "Stripe" && view["type"] == "enterprise" && view["authMethod"] == "api_key")
            #expect(view["config"]?.objectValue?["preset"] == "stripe" && view["rateLimits"]?.objectValue?["requestsPerSecond"] == 25)
            let id = try #require(view["id"]?.stringValue)
            let tested = try await portal.call(.post, "/portal/integrations/\(id)/test", token: operatorToken)
            #expect(tested.json.objectValue?["success"] == true, "\(tested.body.string)")
            let call = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: operatorToken, json: #"{"method":"GET","endpoint":"/echo/customers"}"#)
            #expect(call.json.objectValue?["body"]?.objectValue?["headers"]?.objectValue?["authorization"] == "Bearer rk_test_0123456789")

            // Missing parameters and credentials are named; nothing is created.
            let incomplete = try await portal.call(.post, "/portal/integrations", token: operatorToken, json: #"{"preset":"okta","credentials":{"clientId":"0oa1"}}"#)
            let problem = expectProblem(incomplete, .unprocessableContent)
            let pointers = Set((problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == ["/parameters/domain", "/credentials/privateKey"])
            let listed = try await portal.call(.get, "/portal/integrations", token: operatorToken).json.objectValue?["items"]?.arrayValue ?? []
            #expect(listed.count == 1)
        }
    }
}
