import AsyncHTTPClient
import Crypto
package import Foundation
package import Integrations
package import Ledger
package import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
package import PortalCore
import ServiceLifecycle
package import Storage
import Synchronization

/// The seed's `APIRequest`: a call to make through an integration.
package struct APIRequest: Sendable {
    package var method: String
    /// The path below the integration's base URL, optionally with a query (`/v1/users?limit=10`).
    package var endpoint: String
    package var headers: [String: String]
    package var body: JSONValue?
    package var params: [String: String]
    /// Milliseconds; the seed's `timeout` (default 30 s).
    package var timeoutMs: Int?
    /// The data subjects whose personal data the call discloses to the provider (ids such as emails): the
    /// call's ledger entry carries their commitments, which a data-subject export finds (GDPR Art. 15).
    package var dataSubjects: [String]

    package init(
        method: String, endpoint: String, headers: [String: String] = [:], body: JSONValue? = nil, params: [String: String] = [:], timeoutMs: Int? = nil,
        dataSubjects: [String] = []
    ) {
        self.dataSubjects = dataSubjects
        self.method = method
        self.endpoint = endpoint
        self.headers = headers
        self.body = body
        self.params = params
        self.timeoutMs = timeoutMs
    }

    package static let methods: Set<String> = ["GET", "POST", "PUT", "DELETE", "PATCH"]

    /// Parses the seed's JSON shape; `integrationId`, when given, must be `expected`.
    package static func parse(_ json: JSONValue, integrationID expected: UUID) throws(PortalError) -> APIRequest {
        var errors: [PortalError.FieldError] = []
        guard case .object(let m) = json else { throw PortalError(.validationFailed, "the request is a JSON object", fieldErrors: [.init(pointer: "", message: "must be an object")]) }
        let known: Set<String> = ["integrationId", "method", "endpoint", "headers", "body", "params", "timeout", "dataSubjects"]
        for key in m.keys.sorted() where !known.contains(key) { errors.append(.init(pointer: "/\(key)", message: "unknown field")) }
        if let id = m["integrationId"] {
            if id.stringValue.flatMap(UUID.init(uuidString:)) != expected { errors.append(.init(pointer: "/integrationId", message: "must be the integration of the path")) }
        }
        let method = m["method"]?.stringValue?.uppercased() ?? ""
        if !methods.contains(method) { errors.append(.init(pointer: "/method", message: "must be one of GET, POST, PUT, DELETE, PATCH")) }
        let endpoint = m["endpoint"]?.stringValue ?? ""
        if !endpoint.hasPrefix("/") || endpoint.hasPrefix("//") || endpoint.count > 2_000 {
            errors.append(.init(pointer: "/endpoint", message: "must be a path below the integration's base URL, starting with a single /"))
        }
        func strings(_ key: String) -> [String: String] {
            guard let value = m[key] else { return [:] }
            guard case .object(let o) = value, o.values.allSatisfy({ $0.stringValue != nil }) else {
                errors.append(.init(pointer: "/\(key)", message: "must be an object of strings"))
                return [:]
            }
            return o.compactMapValues(\.stringValue)
        }
        let headers = strings("headers")
        let params = strings("params")
        var timeout: Int?
        if let t = m["timeout"] {
            if case .int(let ms) = t, (1...300_000).contains(ms) { timeout = Int(ms) } else { errors.append(.init(pointer: "/timeout", message: "must be milliseconds between 1 and 300000")) }
        }
        var subjects: [String] = []
        if let value = m["dataSubjects"] {
            if case .array(let items) = value, items.count <= 100, items.allSatisfy({ ($0.stringValue?.count ?? 0) >= 1 && ($0.stringValue?.count ?? 0) <= 320 }) {
                subjects = items.compactMap(\.stringValue)
            } else {
                errors.append(.init(pointer: "/dataSubjects", message: "must be a list of at most 100 subject ids (strings of 1 to 320 characters)"))
            }
        }
        guard errors.isEmpty else { throw PortalError(.validationFailed, "the request is not a valid APIRequest", fieldErrors: errors) }
        let body: JSONValue? = m["body"].flatMap { $0 == .null ? nil : $0 }
        return APIRequest(method: method, endpoint: endpoint, headers: headers, body: body, params: params, timeoutMs: timeout, dataSubjects: subjects)
    }
}

/// The seed's `APIResponse`, plus what the gateway did.
package struct APIResponse: Sendable, Encodable {
    package var status: Int
    package var headers: [String: String]
    /// The response parsed as JSON when it is JSON, else its text.
    package var body: JSONValue
    package var timestamp: String
    /// Milliseconds, all attempts included.
    package var duration: Int
    package var attempts: Int
    package var outcome: String
    /// `HIT`, `MISS` or `BYPASS`.
    package var cacheStatus: String
    /// The call's record: its `integration_requests` row id and the `callId` of its ledger entry.
    package var callId: String?
}

/// The gateway: `executeRequest(integrationId, APIRequest) -> APIResponse` through validate ->
/// rate limit -> [retry: authenticate -> send] -> record. Every call, refused ones included, leaves one
/// `integration_requests` row and one `request.completed` or `request.failed` ledger entry, written in
/// the same batch transaction (DESIGN 4.1); no credential value reaches either.
package final class Gateway: Service, OutboundTransport, Sendable {
    package struct Configuration: Sendable {
        package var policy: OutboundPolicy
        /// Largest request body sent, and largest response body read, in bytes.
        package var maxRequestBytes: Int
        package var maxResponseBytes: Int
        package var defaultTimeout: Duration
        /// Responses the cache keeps at most, and the largest body it keeps.
        package var cacheEntries: Int
        package var maxCachedBodyBytes: Int

        package init(
            policy: OutboundPolicy = OutboundPolicy(), maxRequestBytes: Int = 1 << 20, maxResponseBytes: Int = 10 << 20,
            defaultTimeout: Duration = .seconds(30), cacheEntries: Int = 1_000, maxCachedBodyBytes: Int = 256 << 10
        ) {
            self.policy = policy
            self.maxRequestBytes = maxRequestBytes
            self.maxResponseBytes = maxResponseBytes
            self.defaultTimeout = defaultTimeout
            self.cacheEntries = cacheEntries
            self.maxCachedBodyBytes = maxCachedBodyBytes
        }
    }

    let registry: IntegrationRegistry
    let oauth: OAuthTokens
    let audit: any AuditTrail
    let clock: any WallClock
    let ids: IdentifierGenerator
    let logger: Logger
    let configuration: Configuration
    package let limiter = RateLimiter()
    let assertions = JWTAssertions()
    let cache: ResponseCache
    let sleep: @Sendable (Duration) async throws -> Void
    /// A uniform value in [0, 1) for the backoff's jitter.
    let random: @Sendable () -> Double
    /// The HTTP clients: one by name, and one per vetted (host, address) pair (see ``OutboundClients``).
    let clients = OutboundClients(configuration: Gateway.clientConfiguration())
    /// Told of every recorded call and token request (monitoring).
    let observer: any ActivityObserver
    let database: Database
    /// Commitments of the data subjects a call names.
    let subjects: SubjectSealing

    package init(
        database: Database, vault: CredentialVault, registry: IntegrationRegistry, audit: any AuditTrail, clock: any WallClock = SystemWallClock(),
        ids: IdentifierGenerator = .shared, logger: Logger, configuration: Configuration = .init(), observer: any ActivityObserver = NoActivityObserver(),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.registry = registry
        self.observer = observer
        self.database = database
        subjects = SubjectSealing(vault: vault)
        oauth = OAuthTokens(
            database: database, vault: vault, audit: audit, clock: clock, observer: observer, invalidate: { [registry] id in registry.invalidate(id: id) }
        )
        self.audit = audit
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.configuration = configuration
        self.sleep = sleep
        self.random = random
        cache = ResponseCache(capacity: configuration.cacheEntries, maxBodyBytes: configuration.maxCachedBodyBytes)
    }

    /// Waits for shutdown, then closes the HTTP clients made.
    package func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Closes the HTTP clients (idempotent).
    package func shutdown() async throws {
        try await clients.shutdown()
    }

    /// Runs `request` through integration `integrationID` for `principal` (the seed's executeRequest).
    package func execute(_ request: APIRequest, integrationID: UUID, by principal: Principal) async throws -> APIResponse {
        var endpoint = request.endpoint
        if !request.params.isEmpty {
            var components = URLComponents(string: endpoint) ?? URLComponents()
            var items = components.queryItems ?? []
            for (name, value) in request.params.sorted(by: { $0.key < $1.key }) { items.append(URLQueryItem(name: name, value: value)) }
            components.queryItems = items
            endpoint = components.string ?? endpoint
        }
        let body = request.body.map { Array(JSONValue.encodeText($0).utf8) } ?? []
        var headers = request.headers.sorted(by: { $0.key < $1.key }).map { (name: $0.key, value: $0.value) }
        if !body.isEmpty, !headers.contains(where: { $0.name.lowercased() == "content-type" }) { headers.append(("Content-Type", "application/json")) }
        let result = try await perform(
            GatewayCall(
                method: request.method, endpoint: endpoint, headers: headers, body: body, timeoutMs: request.timeoutMs, storedBody: request.body,
                dataSubjects: request.dataSubjects
            ),
            integrationID: integrationID, by: principal
        )
        return APIResponse(
            status: result.status,
            headers: Dictionary(result.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { "\($0), \($1)" }),
            body: Self.body(result.body), timestamp: Timestamp.rfc3339(clock.now()), duration: result.durationMs,
            attempts: result.attempts, outcome: result.outcome.rawValue, cacheStatus: result.cacheStatus, callId: result.callID?.uuidString.lowercased()
        )
    }

    /// The pipeline for any call (`execute` and the transparent proxy): validate -> destination policy ->
    /// rate limit -> cache lookup -> [retry: authenticate -> send] -> cache store -> record.
    package func perform(_ call: GatewayCall, integrationID: UUID, by principal: Principal) async throws -> GatewayResult {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        return try await run(call, through: integration, by: principal, transient: false)
    }

    /// The pipeline. `transient`: an unsaved configuration under test, whose credentials are used once and
    /// kept nowhere: no rate limit, cache, stored token or record.
    ///
    /// The steps: the plan (pure: ``CallPlan``), the destination policy, the rate limit, the cache, the OAuth
    /// token, then the attempts (``attempt(_:integration:destination:bearer:record:started:transient:)``, whose
    /// decisions are ``RetryPolicy``'s) through the transport (``send(_:to:deadline:)``), and the recorder
    /// (``record(_:started:)``). Every refusal after the plan is recorded before it is thrown.
    private func run(_ call: GatewayCall, through integration: OutboundIntegration, by principal: Principal, transient: Bool) async throws -> GatewayResult {
        let started = ContinuousClock.now
        let plan = try CallPlan.make(
            call, for: integration, maxRequestBytes: configuration.maxRequestBytes, defaultTimeout: configuration.defaultTimeout, transient: transient
        )
        var record = CallRecord(id: ids.next(), integration: integration, plan: plan, actor: principal.tokenID.uuidString.lowercased())
        if !transient, !call.dataSubjects.isEmpty {
            // Commitments, not ids, go into the entry (DESIGN 4.1); the subject's salt is made on first use.
            let commitments = try await database.write { [subjects] db in
                try await subjects.commitments(organizationID: integration.organizationID, subjectIDs: call.dataSubjects, in: db, at: clock.now())
            }
            record.subjects = Array(Set(commitments.values)).sorted()
        }

        let destination: OutboundPolicy.Destination
        do {
            destination = try await configuration.policy.check(plan.url)
        } catch {
            // A fixed message: the policy's own text may name addresses a DNS answer gave.
            throw try await refuse(record, outcome: .refused, message: "the outbound policy refused the destination", error, started: started, transient: transient)
        }
        if !transient, let wait = limiter.acquire(integrationID: integration.id, endpoint: plan.template, limits: RateLimits(integration.rateLimits), now: clock.now()) {
            let seconds = max(1, Int(min(wait, RateLimiter.maxHoldOff).rounded(.up)))
            var error = PortalError(.throttled, "the rate limit of this integration is reached; retry after \(seconds) s")
            error.retryAfterSeconds = seconds
            throw try await refuse(record, outcome: .throttled, message: "the portal's rate limit for this integration is reached", error, started: started, transient: transient)
        }

        // The cache, for GETs of the endpoints config.cache names.
        // Hashing the credential identity costs a SHA-256 per call: only where the cache applies.
        let cacheKey = plan.cacheable ? ResponseCache.key(method: plan.method, url: plan.url, integration: integration) : ""
        if plan.cacheable, let hit = cache.get(cacheKey, now: clock.now()) {
            record.attempts = 0
            record.status = hit.status
            record.outcome = .success
            record.cache = "HIT"
            record.responseDigest = hit.body.isEmpty ? nil : Hex.encode(SHA256.hash(data: hit.body))
            if !transient { try await self.record(record, started: started) }
            return GatewayResult(
                status: hit.status, headers: hit.headers, body: hit.body, attempts: 0, outcome: .success, cacheStatus: "HIT", durationMs: Self.milliseconds(since: started),
                callID: transient ? nil : record.id
            )
        }
        record.cache = plan.cacheable ? "MISS" : "BYPASS"

        // An OAuth 2.0 access token, obtained or refreshed (once for all concurrent calls) when due.
        var bearer: String?
        if plan.usesOAuth {
            do {
                bearer = transient
                    ? try await oauth.transientToken(for: integration, endpoint: tokenEndpoint)
                    : try await oauth.accessToken(for: integration, endpoint: tokenEndpoint)
            } catch let error as PortalError {
                record.category = "authentication"
                // A fixed message: a token endpoint's answer is not ours to store or show.
                throw try await refuse(
                    record, outcome: .networkError, message: "the OAuth access token could not be obtained (\(error.code))", error, started: started, transient: transient
                )
            }
        }

        var response = try await attempt(plan, integration: integration, destination: destination, bearer: bearer, record: &record, started: started, transient: transient)
        record.outcome = CallOutcome.of(status: response.status)
        if let transformed = plan.transforms.response.body(response.body) { response.body = transformed }
        if plan.storeBodies { record.storedResponse = Self.redact(Self.body(response.body), secrets: Authenticator.secrets(of: integration)) }
        let headers = plan.transforms.response.headers(response.headers.filter { !Self.hopByHop.contains($0.name.lowercased()) })
        if plan.cacheable, response.status == 200, !Self.noStore(response.headers) {
            cache.put(cacheKey, .init(status: response.status, headers: headers, body: response.body, expires: clock.now().addingTimeInterval(plan.cachePolicy.ttl)))
        }
        if !transient { try await self.record(record, started: started) }
        return GatewayResult(
            status: response.status, headers: headers, body: response.body, attempts: record.attempts,
            outcome: record.outcome, cacheStatus: record.cache, durationMs: Self.milliseconds(since: started), callID: transient ? nil : record.id
        )
    }

    /// The attempts: authentication inside the loop, so signatures and assertions are fresh on every one;
    /// what follows each answer or failure is ``RetryPolicy``'s decision. Returns the answer to give; a call
    /// that never got one is recorded and thrown (`upstreamFailed` or `upstreamTimeout`).
    private func attempt(
        _ plan: CallPlan, integration: OutboundIntegration, destination: OutboundPolicy.Destination, bearer initialBearer: String?,
        record: inout CallRecord, started: ContinuousClock.Instant, transient: Bool
    ) async throws -> UpstreamResponse {
        var policy = RetryPolicy(
            backoff: Backoff(plan.retry), idempotent: plan.idempotent, deadline: ContinuousClock.now + plan.timeout,
            refreshableToken: plan.usesOAuth && !transient, usesOAuth: plan.usesOAuth, hasPreviousCredentials: integration.previousCredentials != nil
        )
        var bearer = initialBearer
        // The credentials this attempt signs with (the previous ones after a refusal during a rotation's overlap).
        var signing = integration
        while true {
            policy.attemptStarted()
            record.attempts = policy.attempts
            var outbound = OutboundRequest(method: plan.method, url: plan.url, headers: plan.headers, body: plan.body)
            // A signed JWT assertion is made (or reused while valid) inside the loop: each attempt is in date.
            if JWTAssertions.signs(signing) { bearer = try assertions.assertion(for: signing, now: clock.now()) }
            try Authenticator.apply(signing, to: &outbound, now: clock.now(), bearer: bearer)
            let response: UpstreamResponse
            do {
                response = try await send(outbound, to: destination, deadline: policy.deadline)
            } catch let error as PortalError where error.code == .upstreamFailed || error.code == .upstreamTimeout {
                if case .retry(let delay) = policy.after(failure: error.code, now: .now, unit: random()) {
                    try await sleep(delay)
                    continue
                }
                record.status = nil
                throw try await refuse(record, outcome: .networkError, message: error.message, error, started: started, transient: transient)
            }
            let retryAfter = response.status == 429 || response.status >= 500
                ? response.header("Retry-After").flatMap { RateLimiter.retryAfterSeconds($0, now: clock.now()) } : nil
            let next = policy.after(status: response.status, retryAfter: retryAfter, now: .now, unit: random())
            switch next {
            case .refreshToken:
                bearer = try await oauth.accessToken(for: integration, rejected: bearer, endpoint: tokenEndpoint)
                continue
            case .previousCredentials:
                signing.credentials = signing.previousCredentials ?? signing.credentials
                signing.previousCredentials = nil
                continue
            case .retry, .finish:
                break
            }
            record.status = response.status
            (record.quotaRemaining, record.quotaLimit) = Self.quota(response.headers)
            record.responseDigest = response.body.isEmpty ? nil : Hex.encode(SHA256.hash(data: response.body))
            if let until = RateLimiter.holdOff(status: response.status, headers: response.headers, now: clock.now()) {
                limiter.block(integrationID: integration.id, until: until)
            }
            if case .retry(let delay) = next {
                try await sleep(delay)
                continue
            }
            return response
        }
    }

    /// The token endpoint the OAuth flows call, through the same destination policy and transport.
    private var tokenEndpoint: OAuthTokens.TokenEndpoint {
        { [self] url, form, basic in try await requestToken(url, form: form, basic: basic) }
    }

    /// What `GET /portal/integrations/{id}/oauth/authorize` answers.
    package struct AuthorizationStart: Sendable, Encodable {
        /// The provider URL to open in a browser.
        package var authorizationUrl: String
        package var state: String
        package var expiresAt: String
    }

    /// Starts the authorization-code flow with PKCE for an oauth2 integration; the provider redirects to
    /// `redirectURI` (the portal's `/portal/oauth/callback` unless `config.oauth.redirectUri` says otherwise).
    package func authorize(integrationID: UUID, by principal: Principal, defaultRedirectURI: String) async throws -> AuthorizationStart {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        guard integration.authMethod == .oauth2 else { throw PortalError(.conflict, "only oauth2 integrations authorize") }
        let redirect = integration.configuration.oauth?.redirectURI ?? defaultRedirectURI
        let started = try await oauth.authorize(integration, tokenID: principal.tokenID, redirectURI: redirect)
        return AuthorizationStart(authorizationUrl: started.url, state: started.state, expiresAt: Timestamp.rfc3339(started.expiresAt))
    }

    /// Completes the flow from the provider's redirect (`code` and `state`); the state is what authorizes it.
    package func completeAuthorization(state: String, code: String) async throws -> (organizationID: UUID, integrationID: UUID) {
        let registry = registry
        return try await oauth.complete(
            state: state, code: code, load: { id, organization in try await registry.outbound(id: id, organizationID: organization) }, endpoint: tokenEndpoint
        )
    }

    /// Revokes and forgets an oauth2 integration's tokens before it is deleted (nothing to do for others).
    package func revokeTokens(integrationID: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        guard integration.authMethod == .oauth2 else { return }
        try await oauth.revoke(integration, actor: principal.tokenID.uuidString.lowercased(), endpoint: tokenEndpoint)
    }

    /// Rotates an integration's credentials (see ``IntegrationRegistry/rotateCredentials(id:credentials:overlap:by:)``).
    package func rotateCredentials(integrationID: UUID, credentials: [String: String], overlap: TimeInterval, by principal: Principal) async throws -> IntegrationView {
        try await registry.rotateCredentials(id: integrationID, credentials: credentials, overlap: overlap, by: principal)
    }

    /// Tests a saved integration: one `GET` (or `config.testMethod` `POST`) of `config.testEndpoint` (default `/`) through the whole
    /// pipeline (so it is recorded like any call), then an `integration.tested` entry with the outcome.
    package func test(integrationID: UUID, by principal: Principal) async throws -> TestResult {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        let result = await probe(integration, by: principal, transient: false)
        try await audit.append([AuditEvent(
            organizationID: principal.organizationID, type: .integrationTested, actor: principal.tokenID.uuidString.lowercased(),
            integrationID: integration.id, data: ["success": result.success ? 1 : 0, "outcome": result.details.objectValue?["outcome"] ?? "refused"],
            time: clock.now()
        )])
        return result
    }

    /// Tests an unsaved configuration (the seed's onConfigTest): its credentials are used for this one call
    /// and stored nowhere; nothing is recorded.
    package func test(unsaved input: IntegrationInput, by principal: Principal) async throws -> TestResult {
        try principal.require(.manageIntegrations)
        let integration = OutboundIntegration(
            id: UUID(), organizationID: principal.organizationID, name: input.name, baseURL: input.baseURL, authMethod: input.authMethod,
            credentials: input.credentials, config: input.config, rateLimits: input.rateLimits ?? IntegrationRegistry.defaultRateLimits,
            status: .active
        )
        return await probe(integration, by: principal, transient: true)
    }

    private func probe(_ integration: OutboundIntegration, by principal: Principal, transient: Bool) async -> TestResult {
        let endpoint = integration.configuration.testEndpoint
        // Some providers (Dropbox) have only POST endpoints.
        let call = GatewayCall(method: integration.configuration.testMethod, endpoint: endpoint, headers: [("Accept", "application/json")], body: [])
        do {
            let result = try await run(call, through: integration, by: principal, transient: transient)
            let success = (200..<400).contains(result.status)
            return TestResult(
                success: success,
                message: success ? "the provider answered HTTP \(result.status)" : "the provider answered HTTP \(result.status)\(result.status == 401 || result.status == 403 ? ": check the credentials" : "")",
                details: [
                    "endpoint": .string(endpoint), "status": .int(Int64(result.status)), "outcome": .string(result.outcome.rawValue),
                    "attempts": .int(Int64(result.attempts)), "durationMs": .int(Int64(result.durationMs)),
                ]
            )
        } catch let error as PortalError {
            return TestResult(success: false, message: error.message, details: ["endpoint": .string(endpoint), "error": .string(error.code.rawValue)])
        } catch {
            return TestResult(success: false, message: "the test call failed", details: ["endpoint": .string(endpoint)])
        }
    }

    /// Calls an OAuth 2.0 token endpoint (form-encoded POST, client_secret_basic when `basic` is given),
    /// through the same destination policy as every call.
    private func requestToken(_ url: URL, form: [(String, String)], basic: (String, String)?) async throws -> (Int, JSONValue) {
        let destination = try await configuration.policy.check(url)
        func encode(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: SigV4.unreserved) ?? text }
        let body = form.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
        var request = OutboundRequest(method: "POST", url: url, body: Array(body.utf8))
        request.setHeader("Content-Type", "application/x-www-form-urlencoded")
        request.setHeader("Accept", "application/json")
        if let (id, secret) = basic {
            // RFC 6749 2.3.1: the client id and secret are form-encoded before Basic encoding.
            request.setHeader("Authorization", "Basic " + Data("\(encode(id)):\(encode(secret))".utf8).base64EncodedString())
        }
        let response = try await send(request, to: destination, deadline: .now + .seconds(15))
        return (response.status, (try? JSONValue.parse(Data(response.body))) ?? .null)
    }

    /// Whether `Cache-Control` says `no-store`.
    static func noStore(_ headers: [(name: String, value: String)]) -> Bool {
        headers.contains { $0.name.lowercased() == "cache-control" && $0.value.lowercased().contains("no-store") }
    }

    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    ]

    /// `base` joined with `endpoint` and `params`; refuses an endpoint that would leave the base URL.
    static func url(base: String, endpoint: String) throws(PortalError) -> (URL, String) {
        guard var components = URLComponents(string: base), components.host != nil else {
            throw PortalError(.configuration, "the integration's base URL is not an absolute URL")
        }
        guard let relative = URLComponents(string: endpoint), relative.host == nil, relative.scheme == nil else {
            throw PortalError(.validationFailed, "the endpoint must be a path", fieldErrors: [.init(pointer: "/endpoint", message: "must be a path")])
        }
        let segments = relative.path.split(separator: "/")
        guard !segments.contains(".."), !segments.contains(".") else {
            throw PortalError(.validationFailed, "the endpoint may not contain . or .. segments", fieldErrors: [.init(pointer: "/endpoint", message: "no . or .. segments")])
        }
        let basePath = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        components.percentEncodedPath = basePath + (relative.percentEncodedPath.isEmpty ? "/" : relative.percentEncodedPath)
        components.percentEncodedQuery = relative.percentEncodedQuery
        guard let url = components.url else { throw PortalError(.validationFailed, "the endpoint does not form a valid URL") }
        return (url, relative.path)
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        let d = start.duration(to: .now)
        return Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}

extension JSONValue {
    /// An array of strings, or nil.
    var arrayStrings: [String]? {
        guard case .array(let items) = self else { return nil }
        let strings = items.compactMap(\.stringValue)
        return strings.count == items.count ? strings : nil
    }
}
