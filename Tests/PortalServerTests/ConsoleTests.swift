import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
@testable import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// The web console's sessions and its guard rails (issue 20), through the router; the pages themselves are
/// driven in a real browser by Tests/console/console_test.py.
@Suite("Console")
struct ConsoleTests {
    /// Signs in with `token`; returns the cookie header value and the response.
    static func signIn(_ portal: Portal, _ token: String, headers: HTTPFields = [:]) async throws -> (cookie: String?, response: TestResponse) {
        var fields = headers
        fields[.contentType] = "application/x-www-form-urlencoded"
        let response = try await portal.client.execute(
            uri: "/console/sign-in", method: .post, headers: fields, body: ByteBuffer(string: "token=\(ConsoleForm.encode(token))")
        )
        let cookie = response.headers[.setCookie].flatMap { header in
            header.split(separator: ";").first.map(String.init).flatMap { $0.hasSuffix("=") ? nil : $0 }
        }
        return (cookie, response)
    }

    static func get(_ portal: Portal, _ uri: String, cookie: String?) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let cookie { headers[.cookie] = cookie }
        return try await portal.client.execute(uri: uri, method: .get, headers: headers, body: nil)
    }

    static func post(_ portal: Portal, _ uri: String, cookie: String?, form: String, origin: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let cookie { headers[.cookie] = cookie }
        if let origin { headers[.origin] = origin }
        return try await portal.client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: form))
    }

    /// The CSRF token a page carries in its forms.
    static func csrf(_ page: TestResponse) throws -> String {
        let html = page.body.string
        let marker = #"name="csrf" value=""#
        let start = try #require(html.range(of: marker)).upperBound
        let end = try #require(html[start...].firstIndex(of: "\""))
        return String(html[start..<end])
    }

    static func ledgerTypes(_ portal: Portal) async throws -> [String] {
        try await portal.services.ledger.drainAll()
        let entries = try await portal.call(.get, "/ledger/acme/entries?limit=1000", token: portal.token("acme.admin"))
        return (entries.json.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["entry"]?.objectValue?["type"]?.stringValue }
    }

    @Test("signing in exchanges a token for an HttpOnly, SameSite=Lax session; pages need it; signing out ends it on the server", arguments: Backend.available)
    func session(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let unsigned = try await Self.get(portal, "/console/integrations", cookie: nil)
            #expect(unsigned.status == .seeOther && unsigned.headers[.location]?.hasPrefix("/console/sign-in?next=%2Fconsole%2Fintegrations") == true)
            let (cookie, signedIn) = try await Self.signIn(portal, portal.token("acme.operator"))
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/console/integrations")
            let setCookie = try #require(signedIn.headers[.setCookie])
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax") && setCookie.contains("Path=/"), "\(setCookie)")
            #expect(!setCookie.contains(portal.token("acme.operator")), "the cookie is not the token")
            let page = try await Self.get(portal, "/console/integrations", cookie: cookie)
            #expect(page.status == .ok, "\(page.body.string.prefix(300))")
            let csp = page.headers[.contentSecurityPolicy] ?? ""
            #expect(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "\(csp)")
            #expect(page.headers[.xContentTypeOptions] == "nosniff" && page.headers[.cacheControl] == "no-store")
            #expect(page.body.string.contains("operator@acme"))
            // Sign out: the cookie is cleared and the session is over on the server, not only in the browser.
            let out = try await Self.post(portal, "/console/sign-out", cookie: cookie, form: "csrf=\(try Self.csrf(page))")
            #expect(out.status == .seeOther && out.headers[.setCookie]?.contains("Max-Age=0") == true)
            let reused = try await Self.get(portal, "/console/integrations", cookie: cookie)
            #expect(reused.status == .seeOther && reused.headers[.location]?.hasPrefix("/console/sign-in") == true)
            let types = try await Self.ledgerTypes(portal)
            #expect(types.filter { $0 == "session.started" }.count == 1 && types.filter { $0 == "session.ended" }.count == 1, "\(types)")
        }
    }

    @Test("a wrong, expired or revoked token is refused at sign-in with a 401 and no cookie", arguments: Backend.available)
    func refusedSignIn(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            for token in ["ptk_" + String(repeating: "a", count: 43), "not a token", portal.token("acme.expired"), portal.token("acme.revoked")] {
                let (cookie, response) = try await Self.signIn(portal, token)
                #expect(response.status == .unauthorized && cookie == nil, "\(token.prefix(8)): \(response.status)")
                #expect(response.body.string.contains("Sign-in refused"), "\(response.body.string.prefix(400))")
                #expect(!response.body.string.contains(token) || token == "not a token", "the token is not echoed")
            }
        }
    }

    @Test("idle and absolute limits, and the token's revocation, end a session, each ledgered once", arguments: Backend.available)
    func sessionEnds(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock) { portal in
            let limits = portal.services.consoleSessions.limits
            // Idle: no request for longer than the idle limit.
            let (idle, _) = try await Self.signIn(portal, portal.token("acme.admin"))
            #expect(try await Self.get(portal, "/console/alerts", cookie: idle).status == .ok)
            clock.advance(by: limits.idle + 1)
            #expect(try await Self.get(portal, "/console/alerts", cookie: idle).status == .seeOther)
            // Absolute: active all along, but past the absolute limit.
            let (busy, _) = try await Self.signIn(portal, portal.token("acme.admin"))
            var elapsed: TimeInterval = 0
            while elapsed < limits.absolute {
                #expect(try await Self.get(portal, "/console/alerts", cookie: busy).status == .ok)
                clock.advance(by: limits.idle / 2)
                elapsed += limits.idle / 2
            }
            clock.advance(by: 1)
            #expect(try await Self.get(portal, "/console/alerts", cookie: busy).status == .seeOther)
            // The token revoked: its session ends with it.
            let issued = try await portal.call(.post, "/portal/tokens", token: portal.token("acme.admin"), json: #"{"role":"operator","owner":"short-lived"}"#)
            let token = try #require(issued.json.objectValue?["token"]?.stringValue)
            let id = try #require(issued.json.objectValue?["id"]?.stringValue)
            let (revoked, _) = try await Self.signIn(portal, token)
            #expect(try await Self.get(portal, "/console/alerts", cookie: revoked).status == .ok)
            #expect(try await portal.call(.delete, "/portal/tokens/\(id)", token: portal.token("acme.admin")).status == .noContent)
            #expect(try await Self.get(portal, "/console/alerts", cookie: revoked).status == .seeOther)
            #expect(try await Self.get(portal, "/console/alerts", cookie: revoked).status == .seeOther)
            let ended = try await portal.services.database.read { db in
                try await db.raw("SELECT end_reason FROM console_sessions WHERE ended_at IS NOT NULL ORDER BY created_at").all()
                    .map { try $0.decode(column: "end_reason", as: String.self) }
            }
            #expect(ended == ["idle", "expired", "token_ended"], "\(ended)")
            let types = try await Self.ledgerTypes(portal)
            #expect(types.filter { $0 == "session.ended" }.count == 3, "each end is ledgered once: \(types)")
        }
    }

    @Test("a form without the session's CSRF token, or from another origin, changes nothing", arguments: Backend.available)
    func csrf(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let (cookie, _) = try await Self.signIn(portal, portal.token("acme.admin"))
            let page = try await Self.get(portal, "/console/tokens", cookie: cookie)
            let csrf = try Self.csrf(page)
            let before = try await portal.rowCounts()["api_tokens"]
            for (form, origin) in [
                ("role=admin&owner=mallory", nil), ("role=admin&owner=mallory&csrf=forged", nil),
                ("role=admin&owner=mallory&csrf=\(csrf)", "https://evil.example"),
            ] {
                let refused = try await Self.post(portal, "/console/tokens", cookie: cookie, form: form, origin: origin)
                #expect(refused.status == .forbidden, "\(form) from \(origin ?? "no origin"): \(refused.status)")
            }
            #expect(try await portal.rowCounts()["api_tokens"] == before)
            // Another session's CSRF token is not this one's.
            let (other, _) = try await Self.signIn(portal, portal.token("acme.admin"))
            let otherCSRF = try Self.csrf(try await Self.get(portal, "/console/tokens", cookie: other))
            #expect(otherCSRF != csrf)
            #expect(try await Self.post(portal, "/console/tokens", cookie: cookie, form: "role=auditor&owner=x&csrf=\(otherCSRF)").status == .forbidden)
            // With its own token the same form works, and the new token is shown once.
            let made = try await Self.post(portal, "/console/tokens", cookie: cookie, form: "role=auditor&owner=Ann+Auditor&expiresIn=7d&csrf=\(csrf)")
            #expect(made.status == .ok && made.body.string.contains("id=\"new-token\""), "\(made.body.string.prefix(300))")
            #expect(try await portal.rowCounts()["api_tokens"] == (before ?? 0) + 1)
        }
    }

    @Test("the console is the API's rules: another organization's integration is not found, an auditor's token creation is refused and ledgered", arguments: Backend.available)
    func apiRules(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await portal.createIntegration(name: "Acme CRM")
            let (globex, _) = try await Self.signIn(portal, portal.token("globex.admin"))
            let foreign = try await Self.get(portal, "/console/integrations/\(id)", cookie: globex)
            #expect(foreign.status == .notFound && !foreign.body.string.contains("Acme CRM"))
            #expect(!(try await Self.get(portal, "/console/integrations", cookie: globex)).body.string.contains("Acme CRM"))
            let (acme, _) = try await Self.signIn(portal, portal.token("acme.auditor"))
            let own = try await Self.get(portal, "/console/integrations/\(id)", cookie: acme)
            #expect(own.status == .ok && own.body.string.contains("Acme CRM"))
            #expect(!own.body.string.contains("client-secret-abcdef"), "secrets are never echoed")
            #expect(!own.body.string.contains("href=\"/console/tokens\""), "an auditor is not offered token administration")
            let csrf = try Self.csrf(own)
            let refused = try await Self.post(portal, "/console/tokens", cookie: acme, form: "role=admin&owner=escalate&csrf=\(csrf)")
            #expect(refused.status == .forbidden && refused.body.string.contains("auditor"), "\(refused.body.string.prefix(300))")
            #expect(try await Self.ledgerTypes(portal).contains("access.denied"), "the refusal is ledgered like the API's")
            // The API's own filters feed the list.
            let filtered = try await Self.get(portal, "/console/integrations?type=analytics", cookie: acme)
            #expect(filtered.status == .ok && !filtered.body.string.contains("Acme CRM"))
        }
    }

    @Test("where to go after sign-in is a console path only; form and cookie parsing")
    func parsing() {
        #expect(ConsoleSecurity.safeNext("/console/ledger?seq=3") == "/console/ledger?seq=3")
        for hostile in ["https://evil.example/", "//evil.example/console/", "/console//evil", "/console/\\evil", "/portal/tokens", "/console/sign-in", nil] {
            #expect(ConsoleSecurity.safeNext(hostile) == "/console/integrations", "\(hostile ?? "nil")")
        }
        let fields = ConsoleForm.fields("a=1&b=x+y%2Bz&c=%E2%82%AC&d=%zz&e")
        #expect(fields.map(\.0) == ["a", "b", "c", "d", "e"])
        #expect(fields.map(\.1) == ["1", "x y+z", "€", "%zz", ""])
        #expect(ConsoleForm.cookie("portal_session", in: "a=b; portal_session=abc; c=d") == "abc")
        #expect(ConsoleForm.cookie("portal_session", in: "portal_session_x=abc") == nil)
        #expect(ConsoleForm.encode("/console/a b?x=1") == "%2Fconsole%2Fa%20b%3Fx%3D1")
        let checkpoint = CheckpointText("example.com/log\n42\nAAAA\n\n— example.com/log \(Data(repeating: 7, count: 68).base64EncodedString())\n")
        #expect(checkpoint.origin == "example.com/log" && checkpoint.size == 42 && checkpoint.signatures.first?.algorithm == "Ed25519")
        #expect(checkpoint.signatures.first?.keyID == "07070707")
    }

    @Test("Connect runs the OAuth authorization-code flow from the console and comes back to the integration's page; without the link's CSRF token it starts nothing", arguments: Backend.available)
    func connect(backend: Backend) async throws {
        try await NanoIDP.with { idp in
            try await withPortal(backend) { portal in
                let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                    {"name":"IdP","type":"identity_provider","baseUrl":"\(portal.upstream.baseURL)","authMethod":"oauth2",
                     "credentials":{"clientId":"\(NanoIDP.clientID)","clientSecret":"\(NanoIDP.clientSecret)"},
                     "config":{"oauth":{"tokenUrl":"\(idp.tokenURL)","authorizationUrl":"\(idp.baseURL)/authorize","scopes":["openid"],"grantType":"authorization_code"}}}
                    """)
                let id = try #require(created.json.objectValue?["id"]?.stringValue)
                let (cookie, _) = try await Self.signIn(portal, portal.token("acme.admin"))
                let page = try await Self.get(portal, "/console/integrations/\(id)", cookie: cookie)
                #expect(page.body.string.contains("id=\"connect\""), "an OAuth integration with an authorization URL offers Connect")
                let csrf = try Self.csrf(page)
                #expect(try await Self.get(portal, "/console/integrations/\(id)/connect", cookie: cookie).status == .forbidden)
                #expect(try await Self.get(portal, "/console/integrations/\(id)/connect?csrf=forged", cookie: cookie).status == .forbidden)
                let start = try await Self.get(portal, "/console/integrations/\(id)/connect?csrf=\(csrf)", cookie: cookie)
                let location = try #require(start.headers[.location])
                #expect(start.status == .seeOther && location.hasPrefix(idp.baseURL + "/authorize"), "\(location)")
                let (code, state) = try await idp.login(authorizationURL: location)
                let back = try await portal.client.execute(
                    uri: "/portal/oauth/callback?code=\(code)&state=\(state)", method: .get,
                    headers: [.accept: "text/html,application/xhtml+xml", .cookie: cookie ?? ""], body: nil
                )
                #expect(back.status == .seeOther && back.headers[.location] == "/console/integrations/\(id)?done=connected", "\(back.status) \(back.body.string)")
                let landed = try await Self.get(portal, "/console/integrations/\(id)?done=connected", cookie: cookie)
                #expect(landed.body.string.contains("Connected: the provider"))
            }
        }
    }
}
