import AsyncHTTPClient
import Crypto
public import Foundation
public import Integrations
public import Ledger
public import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
public import PortalCore
public import ServiceLifecycle
public import Storage
import Synchronization

/// The seed's `APIRequest`: a call to make through an integration.
public struct APIRequest: Sendable {
    public var method: String
    /// The path below the integration's base URL, optionally with a query (`/v1/users?limit=10`).
    public var endpoint: String
    public var headers: [String: String]
    public var body: JSONValue?
    public var params: [String: String]
    /// Milliseconds; the seed's `timeout` (default 30 s).
    public var timeoutMs: Int?
    /// The data subjects whose personal data the call discloses to the provider (ids such as emails): the
    /// call's ledger entry carries their commitments, which a data-subject export finds (GDPR Art. 15).
    public var dataSubjects: [String]

    public init(
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

    public static let methods: Set<String> = ["GET", "POST", "PUT", "DELETE", "PATCH"]

    /// Parses the seed's JSON shape; `integrationId`, when given, must be `expected`.
    public static func parse(_ json: JSONValue, integrationID expected: UUID) throws(PortalError) -> APIRequest {
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
public struct APIResponse: Sendable, Encodable {
    public var status: Int
    public var headers: [String: String]
    /// The response parsed as JSON when it is JSON, else its text.
    public var body: JSONValue
    public var timestamp: String
    /// Milliseconds, all attempts included.
    public var duration: Int
    public var attempts: Int
    public var outcome: String
    /// `HIT`, `MISS` or `BYPASS`.
    public var cacheStatus: String
    /// The call's record: its `integration_requests` row id and the `callId` of its ledger entry.
    public var callId: String?
}

/// The gateway: `executeRequest(integrationId, APIRequest) -> APIResponse` through validate ->
/// rate limit -> [retry: authenticate -> send] -> record. Every call, refused ones included, leaves one
/// `integration_requests` row and one `request.completed` or `request.failed` ledger entry, written in
/// the same batch transaction (DESIGN 4.1); no credential value reaches either.
public final class Gateway: Service, OutboundTransport, Sendable {
    public struct Configuration: Sendable {
        public var policy: OutboundPolicy
        /// Largest request body sent, and largest response body read, in bytes.
        public var maxRequestBytes: Int
        public var maxResponseBytes: Int
        public var defaultTimeout: Duration
        /// Responses the cache keeps at most, and the largest body it keeps.
        public var cacheEntries: Int
        public var maxCachedBodyBytes: Int

        public init(
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

    private let registry: IntegrationRegistry
    private let oauth: OAuthTokens
    private let audit: any AuditTrail
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let logger: Logger
    private let configuration: Configuration
    public let limiter = RateLimiter()
    let assertions = JWTAssertions()
    let cache: ResponseCache
    private let sleep: @Sendable (Duration) async throws -> Void
    /// The HTTP clients: one by name, and one per vetted (host, address) pair (see ``OutboundClients``).
    private let clients = OutboundClients(configuration: Gateway.clientConfiguration())
    /// Told of every recorded call and token request (monitoring).
    private let observer: any ActivityObserver
    private let database: Database
    /// Commitments of the data subjects a call names.
    private let subjects: SubjectSealing

    public init(
        database: Database, vault: CredentialVault, registry: IntegrationRegistry, audit: any AuditTrail, clock: any WallClock = SystemWallClock(),
        ids: IdentifierGenerator = .shared, logger: Logger, configuration: Configuration = .init(), observer: any ActivityObserver = NoActivityObserver(),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
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
        cache = ResponseCache(capacity: configuration.cacheEntries, maxBodyBytes: configuration.maxCachedBodyBytes)
    }

    /// The HTTP clients' configuration (clients are made on first use): no redirects (a 3xx goes back to the
    /// caller, so no redirect can lead past the destination policy), TLS 1.2 at least, a bounded pool per host.
    static func clientConfiguration() -> HTTPClient.Configuration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        var config = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10)))
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        // A refused connection fails the attempt at once; the gateway's own retry loop (with its
        // backoff and the call's timeout) decides what happens next, instead of the pool retrying
        // silently until the deadline.
        config.connectionPool.retryConnectionEstablishment = false
        config.decompression = .disabled
        return config
    }

    /// Waits for shutdown, then closes the HTTP clients made.
    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Closes the HTTP clients (idempotent).
    public func shutdown() async throws {
        try await clients.shutdown()
    }

    /// Runs `request` through integration `integrationID` for `principal` (the seed's executeRequest).
    public func execute(_ request: APIRequest, integrationID: UUID, by principal: Principal) async throws -> APIResponse {
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
    public func perform(_ call: GatewayCall, integrationID: UUID, by principal: Principal) async throws -> GatewayResult {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        return try await run(call, through: integration, by: principal, transient: false)
    }

    /// The pipeline. `transient`: an unsaved configuration under test, whose credentials are used once and
    /// kept nowhere: no rate limit, cache, stored token or record.
    private func run(_ call: GatewayCall, through integration: OutboundIntegration, by principal: Principal, transient: Bool) async throws -> GatewayResult {
        let started = ContinuousClock.now
        let config = integration.configuration
        let actor = principal.tokenID.uuidString.lowercased()

        // Validate, and build the URL.
        guard integration.status == .active else {
            throw PortalError(.refused, "the integration is \(integration.status); only active integrations make calls")
        }
        guard APIRequest.methods.contains(call.method) else {
            throw PortalError(.methodNotAllowed, "the gateway sends GET, POST, PUT, DELETE and PATCH, not \(call.method)")
        }
        // Transforms stored before their limits existed may not be applied as written: the call is refused
        // with the reason rather than sent with a rule silently left out.
        let transforms = try Transforms.checked(config: config.transforms)
        let body = transforms.request.body(call.body) ?? call.body
        let callHeaders = transforms.request.headers(call.headers)
        guard body.count <= configuration.maxRequestBytes else {
            throw PortalError(.payloadTooLarge, "the request body is larger than \(configuration.maxRequestBytes) bytes")
        }
        let (url, path) = try Self.url(base: integration.baseURL, endpoint: call.endpoint)
        let template = EndpointTemplate.of(path: path, configured: config.endpoints)
        if let allowed = config.allowedPaths, !allowed.contains(where: { EndpointTemplate.of(path: path, configured: [$0]) == $0 }) {
            throw PortalError(.refused, "the integration does not allow calls to \(template)")
        }
        let storeBodies = config.storeBodies
        var record = CallRecord(
            id: ids.next(), integration: integration, method: call.method, template: template, url: url, actor: actor,
            requestDigest: body.isEmpty ? nil : Hex.encode(SHA256.hash(data: body)), storedRequest: storeBodies ? call.storedBody : nil
        )
        if !transient, !call.dataSubjects.isEmpty {
            // Commitments, not ids, go into the entry (DESIGN 4.1); the subject's salt is made on first use.
            let commitments = try await database.write { [subjects] db in
                try await subjects.commitments(organizationID: integration.organizationID, subjectIDs: call.dataSubjects, in: db, at: clock.now())
            }
            record.subjects = Array(Set(commitments.values)).sorted()
        }

        let destination: OutboundPolicy.Destination
        do {
            destination = try await configuration.policy.check(url)
        } catch {
            record.outcome = .refused
            // A fixed message: the policy's own text may name addresses a DNS answer gave.
            record.error = "the outbound policy refused the destination"
            if !transient { try await self.record(record, started: started) }
            throw Self.naming(error, record, transient: transient)
        }
        if !transient, let wait = limiter.acquire(integrationID: integration.id, endpoint: template, limits: RateLimits(integration.rateLimits), now: clock.now()) {
            record.outcome = .throttled
            record.error = "the portal's rate limit for this integration is reached"
            if !transient { try await self.record(record, started: started) }
            var error = PortalError(.throttled, "the rate limit of this integration is reached; retry after \(Int(wait.rounded(.up))) s")
            error.retryAfterSeconds = max(1, Int(wait.rounded(.up)))
            throw Self.naming(error, record, transient: transient)
        }

        // The cache, for GETs of the endpoints config.cache names.
        let cachePolicy = ResponseCache.Policy(config.cache)
        let cacheable = !transient && call.method == "GET" && cachePolicy.covers(template) && !Self.noStore(call.headers)
        // Hashing the credential identity costs a SHA-256 per call: only where the cache applies.
        let cacheKey = cacheable ? ResponseCache.key(method: call.method, url: url, integration: integration) : ""
        if cacheable, let hit = cache.get(cacheKey, now: clock.now()) {
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
        record.cache = cacheable ? "MISS" : "BYPASS"

        // An OAuth 2.0 access token, obtained or refreshed (once for all concurrent calls) when due.
        let usesOAuth = integration.authMethod == .oauth2 && config.oauth != nil
        let endpoint: OAuthTokens.TokenEndpoint = { [self] url, form, basic in try await requestToken(url, form: form, basic: basic) }
        var bearer: String?
        var refreshedAfter401 = false
        if usesOAuth {
            do {
                bearer = transient
                    ? try await oauth.transientToken(for: integration, endpoint: endpoint)
                    : try await oauth.accessToken(for: integration, endpoint: endpoint)
            } catch let error as PortalError {
                record.outcome = .networkError
                record.category = "authentication"
                // A fixed message: a token endpoint's answer is not ours to store or show.
                record.error = "the OAuth access token could not be obtained (\(error.code))"
                if !transient { try await self.record(record, started: started) }
                throw Self.naming(error, record, transient: transient)
            }
        }

        // The retry loop: authentication inside it, so signatures are fresh on every attempt.
        let backoff = Backoff(config.retry)
        let idempotent = ["GET", "PUT", "DELETE"].contains(call.method)
            || call.headers.contains { $0.name.lowercased() == "idempotency-key" }
            || config.retry.retryNonIdempotent
        let timeout = call.timeoutMs.map { Duration.milliseconds($0) } ?? configuration.defaultTimeout
        let deadline = ContinuousClock.now + timeout
        var lastError: PortalError?
        // The credentials this attempt signs with (the previous ones after a refusal during a rotation's overlap).
        var signing = integration
        while true {
            record.attempts += 1
            var outbound = OutboundRequest(method: call.method, url: url, body: body)
            for (name, value) in callHeaders where !Self.hopByHop.contains(name.lowercased()) {
                outbound.headers.append((name, value))
            }
            // A signed JWT assertion is made (or reused while valid) inside the loop: each attempt is in date.
            if JWTAssertions.signs(signing) { bearer = try assertions.assertion(for: signing, now: clock.now()) }
            try Authenticator.apply(signing, to: &outbound, now: clock.now(), bearer: bearer)
            do {
                var response = try await send(outbound, to: destination, deadline: deadline)
                // A 401 with an OAuth token: refresh it once (unless another call already did) and retry once.
                if response.status == 401, usesOAuth, !refreshedAfter401, !transient {
                    refreshedAfter401 = true
                    bearer = try await oauth.accessToken(for: integration, rejected: bearer, endpoint: endpoint)
                    continue
                }
                // Refused with rotated credentials during the overlap window: try the previous ones once.
                if response.status == 401 || response.status == 403, let previous = signing.previousCredentials, !usesOAuth {
                    signing.credentials = previous
                    signing.previousCredentials = nil
                    continue
                }
                record.status = response.status
                (record.quotaRemaining, record.quotaLimit) = Self.quota(response.headers)
                record.responseDigest = response.body.isEmpty ? nil : Hex.encode(SHA256.hash(data: response.body))
                if let until = RateLimiter.holdOff(status: response.status, headers: response.headers, now: clock.now()) {
                    limiter.block(integrationID: integration.id, until: until)
                }
                let retryable = response.status == 429 || response.status >= 500
                if retryable, idempotent, record.attempts < backoff.maxAttempts {
                    var delay = backoff.delay(attempt: record.attempts, unit: Double.random(in: 0..<1))
                    if let after = response.header("Retry-After").flatMap({ RateLimiter.retryAfterSeconds($0, now: clock.now()) }) {
                        delay = max(delay, .milliseconds(Int64(after * 1000)))
                    }
                    if ContinuousClock.now + delay < deadline {
                        try await sleep(delay)
                        continue
                    }
                }
                record.outcome = CallOutcome.of(status: response.status)
                if let transformed = transforms.response.body(response.body) { response.body = transformed }
                if storeBodies { record.storedResponse = Self.redact(Self.body(response.body), secrets: Authenticator.secrets(of: integration)) }
                let headers = transforms.response.headers(response.headers.filter { !Self.hopByHop.contains($0.name.lowercased()) })
                if cacheable, response.status == 200, !Self.noStore(response.headers) {
                    cache.put(cacheKey, .init(status: response.status, headers: headers, body: response.body, expires: clock.now().addingTimeInterval(cachePolicy.ttl)))
                }
                if !transient { try await self.record(record, started: started) }
                return GatewayResult(
                    status: response.status, headers: headers, body: response.body, attempts: record.attempts,
                    outcome: record.outcome, cacheStatus: record.cache, durationMs: Self.milliseconds(since: started), callID: transient ? nil : record.id
                )
            } catch let error as PortalError where error.code == .upstreamFailed || error.code == .upstreamTimeout {
                lastError = error
                let delay = backoff.delay(attempt: record.attempts, unit: Double.random(in: 0..<1))
                if idempotent, error.code == .upstreamFailed, record.attempts < backoff.maxAttempts, ContinuousClock.now + delay < deadline {
                    try await sleep(delay)
                    continue
                }
                break
            }
        }
        let failure = lastError ?? PortalError(.upstreamFailed, "the upstream call failed")
        record.outcome = .networkError
        record.status = nil
        record.error = failure.message
        if !transient { try await self.record(record, started: started) }
        throw Self.naming(failure, record, transient: transient)
    }

    /// A refusal or failure that was recorded, naming its record (`callId` in the problem document), so the
    /// client can cite the call the ledger holds; a test of an unsaved configuration is recorded nowhere.
    static func naming(_ error: any Error, _ record: CallRecord, transient: Bool) -> any Error {
        guard !transient, var error = error as? PortalError else { return error }
        error.details["callId"] = .string(record.id.uuidString.lowercased())
        return error
    }

    /// What `GET /portal/integrations/{id}/oauth/authorize` answers.
    public struct AuthorizationStart: Sendable, Encodable {
        /// The provider URL to open in a browser.
        public var authorizationUrl: String
        public var state: String
        public var expiresAt: String
    }

    /// Starts the authorization-code flow with PKCE for an oauth2 integration; the provider redirects to
    /// `redirectURI` (the portal's `/portal/oauth/callback` unless `config.oauth.redirectUri` says otherwise).
    public func authorize(integrationID: UUID, by principal: Principal, defaultRedirectURI: String) async throws -> AuthorizationStart {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        guard integration.authMethod == .oauth2 else { throw PortalError(.conflict, "only oauth2 integrations authorize") }
        let redirect = integration.configuration.oauth?.redirectURI ?? defaultRedirectURI
        let started = try await oauth.authorize(integration, tokenID: principal.tokenID, redirectURI: redirect)
        return AuthorizationStart(authorizationUrl: started.url, state: started.state, expiresAt: Timestamp.rfc3339(started.expiresAt))
    }

    /// Completes the flow from the provider's redirect (`code` and `state`); the state is what authorizes it.
    public func completeAuthorization(state: String, code: String) async throws -> (organizationID: UUID, integrationID: UUID) {
        let endpoint: OAuthTokens.TokenEndpoint = { [self] url, form, basic in try await requestToken(url, form: form, basic: basic) }
        let registry = registry
        return try await oauth.complete(
            state: state, code: code, load: { id, organization in try await registry.outbound(id: id, organizationID: organization) }, endpoint: endpoint
        )
    }

    /// Revokes and forgets an oauth2 integration's tokens before it is deleted (nothing to do for others).
    public func revokeTokens(integrationID: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let integration = try await registry.outbound(id: integrationID, organizationID: principal.organizationID)
        guard integration.authMethod == .oauth2 else { return }
        let endpoint: OAuthTokens.TokenEndpoint = { [self] url, form, basic in try await requestToken(url, form: form, basic: basic) }
        try await oauth.revoke(integration, actor: principal.tokenID.uuidString.lowercased(), endpoint: endpoint)
    }

    /// Rotates an integration's credentials (see ``IntegrationRegistry/rotateCredentials(id:credentials:overlap:by:)``).
    public func rotateCredentials(integrationID: UUID, credentials: [String: String], overlap: TimeInterval, by principal: Principal) async throws -> IntegrationView {
        try await registry.rotateCredentials(id: integrationID, credentials: credentials, overlap: overlap, by: principal)
    }

    /// Tests a saved integration: one `GET` (or `config.testMethod` `POST`) of `config.testEndpoint` (default `/`) through the whole
    /// pipeline (so it is recorded like any call), then an `integration.tested` entry with the outcome.
    public func test(integrationID: UUID, by principal: Principal) async throws -> TestResult {
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
    public func test(unsaved input: IntegrationInput, by principal: Principal) async throws -> TestResult {
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

    /// Sends one attempt; network failures and timeouts become `upstreamFailed` / `upstreamTimeout`.
    ///
    /// The response is collected by async-http-client's accumulating delegate (bounded by the response
    /// size limit) on the connection's event loop, with no event-loop preference, so any idle pooled
    /// connection serves the call. Issue 5's profile: pinning calls to the caller's event loop made the
    /// pool close and open connections all the time (a third of the CPU), and the streaming body API added
    /// a thread hop per chunk.
    ///
    /// The connection goes to the address the policy vetted (`destination`), never to a fresh DNS answer
    /// (DNS rebinding); the host name stays the `Host` header, the SNI and the certificate's checked name.
    private func send(_ request: OutboundRequest, to destination: OutboundPolicy.Destination, deadline: ContinuousClock.Instant) async throws -> UpstreamResponse {
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { throw PortalError(.upstreamTimeout, "the call's timeout passed before the upstream answered") }
        let nanoseconds = Int64(remaining.components.seconds) * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000
        do {
            var headers = HTTPHeaders()
            headers.reserveCapacity(request.headers.count)
            for (name, value) in request.headers { headers.add(name: name, value: value) }
            let outgoing = try HTTPClient.Request(
                url: request.url, method: HTTPMethod(rawValue: request.method), headers: headers,
                body: request.body.isEmpty ? nil : .bytes(request.body)
            )
            let response = try await clients.with(outgoing, to: destination) { http in
                try await http.execute(
                    request: outgoing, delegate: ResponseAccumulator(request: outgoing, maxBodySize: configuration.maxResponseBytes),
                    eventLoop: .indifferent, deadline: .now() + .nanoseconds(nanoseconds), logger: nil
                ).futureResult.get()
            }
            return UpstreamResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                body: response.body.map { Array(buffer: $0) } ?? []
            )
        } catch is ResponseAccumulator.ResponseTooBigError {
            throw PortalError(.upstreamFailed, "the upstream's response is larger than \(configuration.maxResponseBytes) bytes")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw PortalError(.upstreamTimeout, "the upstream did not answer within the call's timeout")
        } catch let error as PortalError {
            throw error
        } catch {
            logger.debug("upstream call failed", metadata: ["portal.error_type": "\(type(of: error))"])
            throw PortalError(.upstreamFailed, "the upstream could not be reached (\(Self.describe(error)))")
        }
    }

    /// A fixed, secret-free description of a client error. Never the error's own text: the HTTP client's
    /// errors quote header values (an API key among them) and DNS answers, and this message is stored in
    /// `integration_requests` and shown to auditors as `lastError`.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .remoteConnectionClosed: return "connection closed by the upstream"
            default: break
            }
            // The case's name only: the text after it (header values, hosts) is never used.
            let name = String(describing: error).prefix { $0 != "(" }.lowercased()
            if name.contains("invalidheaderfield") { return "a header name or value is not allowed in HTTP" }
            if name.contains("tls") || name.contains("ssl") { return "TLS failure" }
            return "HTTP client failure"
        }
        let name = String(describing: type(of: error))
        if name.contains("SSL") || name.contains("TLS") { return "TLS failure" }
        if name.contains("Connection") || name.contains("IOError") || name.contains("ChannelError") { return "connection failed" }
        if name.contains("Resolution") || name.contains("DNS") { return "name resolution failed" }
        return "network failure"
    }

    /// Writes the call's row and ledger entry in one batch transaction, and waits until both are durable.
    private func record(_ call: CallRecord, started: ContinuousClock.Instant) async throws {
        let now = clock.now()
        let duration = started.duration(to: .now)
        let micros = Int64(duration.components.seconds) * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        var data: [String: JSONValue] = [
            "method": .string(call.method), "endpoint": .string(call.template), "host": .string(call.url.host ?? ""),
            "pathDigest": .string(Hex.encode(SHA256.hash(data: Array((call.url.path + (call.url.query.map { "?" + $0 } ?? "")).utf8)))),
            "outcome": .string(call.outcome.rawValue), "attempts": .int(Int64(call.attempts)), "durationMicros": .int(micros),
            "cache": .string(call.cache), "callId": .string(call.id.uuidString.lowercased()),
        ]
        if let status = call.status { data["status"] = .int(Int64(status)) }
        let category = call.outcome == .success ? nil : call.category ?? (call.outcome == .throttled ? "rate_limit" : call.outcome == .refused ? "business" : CallOutcome.category(status: call.status))
        if let category { data["errorCategory"] = .string(category) }
        if let digest = call.requestDigest { data["requestBodyDigest"] = .string(digest) }
        if !call.subjects.isEmpty { data["subjects"] = .array(call.subjects.map(JSONValue.string)) }
        if let digest = call.responseDigest { data["responseBodyDigest"] = .string(digest) }
        let integration = call.integration
        let row = IntegrationRequestRecord(
            id: call.id, organizationID: integration.organizationID, integrationID: integration.id, method: call.method,
            endpoint: call.template, requestBody: call.storedRequest.map { Self.redact($0, secrets: Authenticator.secrets(of: integration)) },
            responseStatus: call.status, responseBody: call.storedResponse, durationMs: Int(micros / 1000),
            errorMessage: call.error ?? (call.outcome == .success ? nil : "HTTP \(call.status ?? 0)"), createdAt: now
        )
        let event = AuditEvent(
            organizationID: integration.organizationID, type: call.outcome == .success ? .requestCompleted : .requestFailed,
            actor: call.actor, integrationID: integration.id, data: .object(data), time: now
        )
        try await audit.append([event], with: RequestRow(record: row))
        observer.observe(.call(.init(
            organizationID: integration.organizationID, integrationID: integration.id, endpoint: call.template, outcome: call.outcome.rawValue,
            category: category, durationMicros: micros, at: now, error: row.errorMessage, quotaRemaining: call.quotaRemaining, quotaLimit: call.quotaLimit
        )))
    }

    /// The provider's remaining quota and limit from its rate-limit headers (`X-RateLimit-*` or the IETF
    /// draft's `RateLimit-*`), when it sent both.
    static func quota(_ headers: [(name: String, value: String)]) -> (Int?, Int?) {
        func value(_ names: [String]) -> Int? {
            for (name, value) in headers where names.contains(name.lowercased()) {
                if let n = Int(value.split(separator: ",").first?.trimmingCharacters(in: .whitespaces) ?? "") { return n }
            }
            return nil
        }
        let remaining = value(["x-ratelimit-remaining", "ratelimit-remaining"])
        let limit = value(["x-ratelimit-limit", "ratelimit-limit"])
        return remaining != nil && limit != nil ? (remaining, limit) : (nil, nil)
    }

    /// Sends one notification (alert receivers): the destination policy applies, through the shared client,
    /// without a ledger entry of its own (the notifier logs it). Returns the status and up to 64 KiB of body.
    public func deliver(_ request: OutboundRequest, timeout: Duration)  async throws -> (status: Int, body: [UInt8]) {
        let destination = try await configuration.policy.check(request.url)
        let response = try await send(request, to: destination, deadline: ContinuousClock.now + timeout)
        return (response.status, Array(response.body.prefix(64 << 10)))
    }

    /// A call's `integration_requests` row, written with its ledger entry in the sequencer's batch.
    struct RequestRow: CompanionRow {
        var record: IntegrationRequestRecord

        static func insert(_ rows: [RequestRow], in db: Transaction) async throws -> Set<Int> {
            try await IntegrationRequestStore(db).insert(rows.map(\.record))
            return []
        }
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

    /// A response body as JSON when it parses, else as text (binary as base64).
    static func body(_ bytes: [UInt8]) -> JSONValue {
        guard !bytes.isEmpty else { return .null }
        if let json = try? JSONValue.parse(Data(bytes)) { return json }
        if let text = String(validating: bytes, as: UTF8.self) { return .string(text) }
        return ["base64": .string(Data(bytes).base64EncodedString())]
    }

    /// `value` with every occurrence of a secret replaced by `••••`.
    static func redact(_ value: JSONValue, secrets: [String]) -> JSONValue {
        switch value {
        case .string(var s):
            for secret in secrets where s.contains(secret) { s = s.replacingOccurrences(of: secret, with: "••••") }
            return .string(s)
        case .array(let items): return .array(items.map { redact($0, secrets: secrets) })
        case .object(let members): return .object(members.mapValues { redact($0, secrets: secrets) })
        default: return value
        }
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        let d = start.duration(to: .now)
        return Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}

/// What the gateway learned about one call, for its row and ledger entry.
struct CallRecord {
    /// The call's `integration_requests` row id, also in its ledger entry (`callId`) and its answer.
    var id: UUID
    var integration: OutboundIntegration
    var method: String
    var template: String
    var url: URL
    var actor: String
    var requestDigest: String?
    var storedRequest: JSONValue?
    var attempts = 0
    var status: Int?
    var outcome: CallOutcome = .networkError
    var error: String?
    var responseDigest: String?
    var storedResponse: JSONValue?
    /// `HIT`, `MISS` or `BYPASS`.
    var cache = "BYPASS"
    /// The error category when the status does not tell it (a failed token request: `authentication`).
    var category: String?
    /// Commitments of the data subjects the call discloses.
    var subjects: [String] = []
    /// The provider's rate-limit headers, when it sent them.
    var quotaRemaining: Int?
    var quotaLimit: Int?

    init(id: UUID, integration: OutboundIntegration, method: String, template: String, url: URL, actor: String, requestDigest: String?, storedRequest: JSONValue?) {
        self.id = id
        self.integration = integration
        self.method = method
        self.template = template
        self.url = url
        self.actor = actor
        self.requestDigest = requestDigest
        self.storedRequest = storedRequest
    }
}

/// One upstream answer.
struct UpstreamResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
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
