import Foundation
import HTTPTypes
import Hummingbird
import PortalCore

/// The web console (issue 20), served at `/` and `/console/...` by the same process as the API.
///
/// Every page reads and acts through ``ConsoleAPI``, as the signed-in token: the server's role checks and
/// organization scoping are the API's own, and a page only reflects them (a link a role may not use is not
/// shown, and the action behind it is refused by the route if asked anyway). Every response carries the
/// security headers of ``ConsoleSecurity``; every state-changing request needs the session's CSRF token
/// and a same-origin `Origin`.
struct ConsoleRoutes: Sendable {
    typealias Context = PortalRequestContext
    typealias PageHandler = @Sendable (Request, Context, ConsolePage) async throws -> Response

    let api: ConsoleAPI
    let sessions: ConsoleSessions
    let view: ConsoleView
    let clock: any WallClock
    let failures: AuthFailureRecorder
    /// The organization's allow-list and the API's rate limits, as for the API.
    let access: APIAccessGuard
    /// Whether cookies get `Secure` (the public URL is https).
    let secureCookies: Bool
    let maxBodyBytes: Int

    func register(on router: Router<Context>) {
        for path in ["/", "/console"] {
            router.on(RouterPath(path), method: .get) { _, _ in ConsoleSecurity.redirect("/console/integrations") }
        }
        router.on("/console/static/{name}", method: .get) { _, context in
            guard let name = context.parameters.get("name"), let asset = view.asset(name) else {
                return ConsoleSecurity.secured(Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "not found"))))
            }
            var headers: HTTPFields = [.contentType: asset.type]
            headers[.cacheControl] = "no-cache"
            return ConsoleSecurity.secured(Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes))), cache: true)
        }
        router.on("/console/sign-in", method: .get) { request, _ in
            if let secret = ConsoleForm.cookie(ConsoleSessions.cookieName, in: request.headers[.cookie]),
               try await sessions.resolve(secret: secret) != nil {
                return ConsoleSecurity.redirect("/console/integrations")
            }
            let query = ConsoleForm.fields(request.uri.query ?? "")
            return try signInPage(next: ConsoleForm.value("next", in: query), notice: ConsoleForm.value("notice", in: query), error: nil, status: .ok)
        }
        router.on("/console/sign-in", method: .post) { request, context in
            let fields = try await form(request)
            let next = ConsoleForm.value("next", in: fields)
            guard ConsoleSecurity.sameOrigin(request) else {
                return try signInPage(next: next, notice: nil, error: "The sign-in came from another site and was refused.", status: .forbidden)
            }
            let token = (ConsoleForm.value("token", in: fields) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            do {
                let (secret, _) = try await sessions.start(token: token)
                var response = ConsoleSecurity.redirect(ConsoleSecurity.safeNext(next))
                response.headers[.setCookie] = ConsoleSecurity.sessionCookie(secret, maxAge: Int(sessions.limits.absolute), secure: secureCookies)
                return response
            } catch let error as PortalError where error.code == .unauthenticated {
                failures.note(route: "/console/sign-in", address: context.remoteAddress)
                return try signInPage(next: next, notice: nil, error: "Sign-in refused: \(error.message).", status: .unauthorized)
            }
        }
        router.on("/console/sign-out", method: .post) { request, _ in
            let fields = try await form(request)
            if let secret = ConsoleForm.cookie(ConsoleSessions.cookieName, in: request.headers[.cookie]),
               let session = try await sessions.resolve(secret: secret) {
                guard ConsoleSecurity.sameOrigin(request), ConsoleSessions.csrfMatches(ConsoleForm.value("csrf", in: fields), session) else {
                    return try refusal(session, "The form's CSRF token or origin is not valid; nothing was changed.")
                }
                try await sessions.end(session)
            }
            var response = ConsoleSecurity.redirect("/console/sign-in?notice=signed-out")
            response.headers[.setCookie] = ConsoleSecurity.sessionCookie("", maxAge: 0, secure: secureCookies)
            return response
        }
        ConsolePages(api: api, clock: clock).register(self, on: router)
    }

    /// A page or action behind a session. GET pages render; POST actions also need the CSRF token and a
    /// same-origin request. Without a live session: back to sign-in (with the page to return to).
    func page(_ router: Router<Context>, _ method: HTTPRequest.Method, _ path: String, _ handler: @escaping PageHandler) {
        router.on(RouterPath(path), method: method) { request, context in
            guard let secret = ConsoleForm.cookie(ConsoleSessions.cookieName, in: request.headers[.cookie]),
                  let session = try await sessions.resolve(secret: secret)
            else {
                let back = method == .get ? request.uri.description : path
                var response = ConsoleSecurity.redirect("/console/sign-in?next=\(ConsoleForm.encode(back))&notice=signed-out-or-expired")
                response.headers[.setCookie] = ConsoleSecurity.sessionCookie("", maxAge: 0, secure: secureCookies)
                return response
            }
            do {
                try await access.check(session.principal, address: context.remoteAddress, route: path, method: method.rawValue)
            } catch let error as PortalError {
                let page = ConsolePage(session: session, view: view, fields: [], query: [], context: nil)
                var response = try page.render("error", title: "Refused", status: error.code == .throttled ? .tooManyRequests : .forbidden, [
                    "status": error.code == .throttled ? 429 : 403, "message": error.message,
                ])
                if let seconds = error.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
                return response
            }
            var fields: [(String, String)] = []
            if method != .get {
                fields = try await form(request)
                guard ConsoleSecurity.sameOrigin(request), ConsoleSessions.csrfMatches(ConsoleForm.value("csrf", in: fields), session) else {
                    return try refusal(session, "The form's CSRF token or origin is not valid; nothing was changed.")
                }
            }
            let page = ConsolePage(session: session, view: view, fields: fields, query: ConsoleForm.fields(request.uri.query ?? ""), context: context)
            do {
                return try await handler(request, context, page)
            } catch let error as ConsolePageError {
                return try page.problem(error.answer)
            }
        }
    }

    private func refusal(_ session: ConsoleSession, _ message: String) throws -> Response {
        let page = ConsolePage(session: session, view: view, fields: [], query: [], context: nil)
        return try page.render("error", title: "Refused", status: .forbidden, ["status": 403, "message": message])
    }

    private func signInPage(next: String?, notice: String?, error: String?, status: HTTPResponse.Status) throws -> Response {
        var values: [String: Any] = ["title": "Sign in", "signedOut": true]
        if let next { values["next"] = ConsoleSecurity.safeNext(next) }
        if let error { values["error"] = error }
        switch notice {
        case "signed-out": values["notice"] = "You are signed out."
        case "signed-out-or-expired": values["notice"] = "Your session ended. Sign in again to continue."
        default: break
        }
        return ConsoleSecurity.html(try view.render("sign-in", values), status: status)
    }

    private func form(_ request: Request) async throws -> [(String, String)] {
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        return ConsoleForm.fields(String(buffer: buffer))
    }
}

/// What a page handler works with: the session, its form or query fields, and the rendering.
struct ConsolePage: Sendable {
    let session: ConsoleSession
    let view: ConsoleView
    /// The posted form (POST), without the CSRF token's check, already done.
    let fields: [(String, String)]
    let query: [(String, String)]
    let context: PortalRequestContext?

    var principal: Principal { session.principal }

    func field(_ name: String) -> String? { ConsoleForm.value(name, in: fields) }
    func parameter(_ name: String) -> String? { ConsoleForm.value(name, in: query).flatMap { $0.isEmpty ? nil : $0 } }

    /// Renders `template` inside the layout, with the navigation for the caller's role.
    func render(_ template: String, title: String, status: HTTPResponse.Status = .ok, _ values: [String: Any]) throws -> Response {
        var all = values
        let role = principal.role
        all["title"] = title
        all["organization"] = principal.organizationSlug
        all["owner"] = principal.owner
        all["role"] = role.rawValue
        all["csrf"] = session.csrf
        all["nav"] = Self.sections.filter { role.allows($0.permission) }.map { section -> [String: Any] in
            ["href": section.href, "label": section.label, "current": section.label == (values["section"] as? String)]
        }
        return ConsoleSecurity.html(try view.render(template, all), status: status)
    }

    /// The page for an API answer that stops it (403, 404, 422 without a form, 5xx).
    func problem(_ answer: ConsoleAPI.Answer) throws -> Response {
        let message =
            answer.status == .forbidden ? "Your role (\(principal.role.rawValue)) may not do this: \(answer.detail)." : answer.detail
        return try render("error", title: answer.status == .notFound ? "Not found" : "Refused", status: answer.status, [
            "status": Int(answer.status.code), "message": message,
        ])
    }

    private struct Section {
        var href: String
        var label: String
        var permission: Permission
    }

    private static let sections: [Section] = [
        Section(href: "/console/integrations", label: "Integrations", permission: .readIntegrations),
        Section(href: "/console/alerts", label: "Alerts", permission: .readIntegrations),
        Section(href: "/console/ledger", label: "Ledger", permission: .readLedger),
        Section(href: "/console/governance", label: "Governance", permission: .readIntegrations),
        Section(href: "/console/compliance", label: "Compliance", permission: .readReports),
        Section(href: "/console/tokens", label: "Tokens", permission: .manageTokens),
        Section(href: "/console/settings", label: "Settings", permission: .readIntegrations),
    ]
}

/// The headers and cookies every console response carries.
enum ConsoleSecurity {
    /// No inline script or style, nothing from elsewhere, no framing.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        + "frame-ancestors 'none'; base-uri 'none'"

    static func secured(_ response: Response, cache: Bool = false) -> Response {
        var response = response
        response.headers[.contentSecurityPolicy] = contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "same-origin"
        response.headers[.crossOriginOpenerPolicy] = "same-origin"
        if !cache { response.headers[.cacheControl] = "no-store" }
        return response
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        secured(Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text))))
    }

    /// A 303 to a path of this server.
    static func redirect(_ location: String) -> Response {
        secured(Response(status: .seeOther, headers: [.location: location]))
    }

    /// `HttpOnly` always, `SameSite=Lax` so a provider's OAuth redirect back into the console keeps the
    /// session, `Secure` behind TLS.
    static func sessionCookie(_ value: String, maxAge: Int, secure: Bool) -> String {
        "\(ConsoleSessions.cookieName)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    /// Where to go after sign-in: a console path only (never another site, never `//host`).
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/console/"), !next.hasPrefix("/console/sign-"), !next.contains("//"), !next.contains("\\"),
              next.utf8.count <= 512, next.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
        else { return "/console/integrations" }
        return next
    }

    /// Whether a state-changing request came from this site: its `Origin` (sent by browsers on every POST)
    /// names this host, or, without one, `Sec-Fetch-Site` does not say another site.
    static func sameOrigin(_ request: Request) -> Bool {
        if let origin = request.headers[.origin] {
            guard let host = request.head.authority else { return false }
            return origin == "http://\(host)" || origin == "https://\(host)"
        }
        if let site = request.headers[.secFetchSite] { return site == "same-origin" || site == "none" }
        return true
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let crossOriginOpenerPolicy = Self("Cross-Origin-Opener-Policy")!
    static let secFetchSite = Self("Sec-Fetch-Site")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
