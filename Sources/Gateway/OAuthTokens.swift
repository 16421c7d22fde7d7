import Crypto
import Foundation
import Integrations
import Ledger
import PortalCore
import Storage
import Synchronization

/// The OAuth 2.0 settings of an integration (`config.oauth`).
struct OAuthSettings {
    var tokenURL: URL
    var grantType: String
    var scope: String?
    /// `basic` (client_secret_basic, the default), `post` (client_secret_post) or `private_key_jwt` (a
    /// signed client assertion, RFC 7523 section 2.2, from `credentials.privateKey`).
    var clientAuth: String
    /// Refresh this long before expiry (default 300 s).
    var refreshEarly: TimeInterval
    /// Consecutive failed refreshes after which the integration goes to status `error`.
    var maxFailures: Int
    /// Extra token-request fields for the client-credentials and JWT-bearer grants (`tokenParams`, e.g.
    /// Auth0's `audience`), and extra authorization-URL parameters (`authorizationParams`, e.g.
    /// Dropbox's `token_access_type=offline`).
    var tokenParams: [(String, String)]
    var authorizationParams: [(String, String)]

    init(_ integration: OutboundIntegration) throws(PortalError) {
        // Checked member by member when written (IntegrationConfiguration); a stored row from before the
        // check without a usable token URL is refused here.
        guard let oauth = integration.configuration.oauth, let url = URL(string: oauth.tokenURL), url.host != nil else {
            throw PortalError(.configuration, "an oauth2 integration names its token endpoint in config.oauth.tokenUrl")
        }
        tokenURL = url
        tokenParams = oauth.tokenParameters
        authorizationParams = oauth.authorizationParameters
        grantType = oauth.grantType == .jwtBearer ? Self.jwtBearer : oauth.grantType.rawValue
        scope = oauth.scopes.isEmpty ? nil : oauth.scopes.joined(separator: " ")
        clientAuth = oauth.clientAuth.rawValue
        refreshEarly = TimeInterval(oauth.refreshEarlySeconds)
        maxFailures = oauth.maxRefreshFailures
    }

    /// The JWT-bearer authorization grant (RFC 7523 section 2.1).
    static let jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
}

/// The tokens as sealed in `integration_tokens`.
struct OAuthTokenValues: Codable, Equatable {
    var accessToken: String?
    var refreshToken: String?
}

/// Obtains, stores and refreshes an integration's OAuth 2.0 access token: client credentials, or
/// the refresh-token grant when a refresh token is held; refreshed `refreshEarly` before expiry; one refresh
/// at a time per integration across the process (a keyed lock, so 100 concurrent calls refresh once) and,
/// on PostgreSQL, across instances (the token row is locked `FOR UPDATE` and re-read before refreshing).
/// Tokens are sealed by the vault; every issue, refresh and failure appends a `token.*` entry without
/// any token value. After `maxRefreshFailures` consecutive failures the integration's status becomes
/// `error` with the reason.
final class OAuthTokens: Sendable {
    private let database: Database
    private let vault: CredentialVault
    private let audit: any AuditTrail
    private let clock: any WallClock
    private let locks = KeyedLock()
    /// Forgets an integration's cached configuration after its status changed here.
    private let invalidate: @Sendable (UUID) -> Void
    /// Told of every token request's result (monitoring).
    private let observer: any ActivityObserver
    /// Calls the token endpoint: (url, form fields, basic credentials) -> (status, JSON body).
    typealias TokenEndpoint = @Sendable (URL, [(String, String)], (String, String)?) async throws -> (Int, JSONValue)

    init(
        database: Database, vault: CredentialVault, audit: any AuditTrail, clock: any WallClock, observer: any ActivityObserver = NoActivityObserver(),
        invalidate: @escaping @Sendable (UUID) -> Void
    ) {
        self.invalidate = invalidate
        self.observer = observer
        self.database = database
        self.vault = vault
        self.audit = audit
        self.clock = clock
    }

    private static func context(_ id: UUID) -> String { "oauth:\(id.uuidString.lowercased())" }

    /// A usable access token. `rejected`: a token the provider just refused (401); it is refreshed unless
    /// another call already replaced it.
    func accessToken(for integration: OutboundIntegration, rejected: String? = nil, endpoint: TokenEndpoint) async throws -> String {
        let settings = try OAuthSettings(integration)
        if rejected == nil, let current = try await current(integration, settings: settings) { return current }
        let result = try await locks.withLock(integration.id) { () async throws -> Result<String, PortalError> in
            // Another call may have refreshed while this one waited.
            if let current = try await current(integration, settings: settings), current != rejected { return .success(current) }
            if database.dialect == .postgres {
                // The row lock makes instances take turns; a failure is committed with its record, then thrown.
                return try await database.write { db in
                    let row = try await IntegrationTokenStore(db).find(integrationID: integration.id, organizationID: integration.organizationID, lock: true)
                    let values = try await open(row, db: db)
                    if let row, let access = values.accessToken, access != rejected, fresh(row, settings) { return .success(access) }
                    return try await refresh(integration, settings: settings, row: row, values: values, db: db, endpoint: endpoint)
                }
            }
            let (row, values) = try await database.read { db in
                let row = try await IntegrationTokenStore(db).find(integrationID: integration.id, organizationID: integration.organizationID)
                return (row, try await open(row, db: db))
            }
            return try await refresh(integration, settings: settings, row: row, values: values, db: nil, endpoint: endpoint)
        }
        return try result.get()
    }

    /// A token for an unsaved configuration under test: one grant, stored nowhere, recorded nowhere.
    func transientToken(for integration: OutboundIntegration, endpoint: TokenEndpoint) async throws -> String {
        let settings = try OAuthSettings(integration)
        let (form, basic) = try Self.grantForm(integration, settings: settings, refreshToken: integration.credentials["refreshToken"], now: clock.now())
        let (status, body) = try await endpoint(settings.tokenURL, form, basic)
        guard (200..<300).contains(status), let access = body.objectValue?["access_token"]?.stringValue, !access.isEmpty else {
            throw PortalError(.upstreamFailed, "could not obtain an access token: the token endpoint answered HTTP \(status)")
        }
        return access
    }

    /// The token request's form fields and Basic credentials (client_secret_basic unless `clientAuth` says
    /// otherwise). The JWT-bearer grant (RFC 7523) sends a signed assertion from `credentials.privateKey`
    /// (or `secret` for HS256) with claims from `config.jwt`: `iss` defaults to the client id, `sub` to
    /// the client id, `aud` to the token endpoint.
    static func grantForm(_ integration: OutboundIntegration, settings: OAuthSettings, refreshToken: String?, now: Date) throws(PortalError) -> ([(String, String)], (String, String)?) {
        let clientID = integration.credentials["clientId"].flatMap { $0.isEmpty ? nil : $0 }
        let grant = refreshToken != nil ? "refresh_token" : settings.grantType
        var form: [(String, String)] = [("grant_type", grant)]
        switch grant {
        case "refresh_token":
            if let refreshToken { form.append(("refresh_token", refreshToken)) }
        case "client_credentials":
            form += settings.tokenParams
        case OAuthSettings.jwtBearer:
            let defaults: [String: JSONValue] = ["iss": clientID.map(JSONValue.string) ?? .null, "sub": clientID.map(JSONValue.string) ?? .null, "aud": .string(settings.tokenURL.absoluteString)]
            guard integration.config.objectValue?["jwt"]?.objectValue?["subject"] != nil || clientID != nil else {
                throw PortalError(.configuration, "the JWT-bearer grant needs config.jwt.subject or credentials.clientId")
            }
            form.append(("assertion", try JWTAssertions.sign(integration, now: now, defaults: defaults).0))
            form += settings.tokenParams
        default:
            throw PortalError(.refused, "the integration has no token yet: connect it through GET /portal/integrations/{id}/oauth/authorize")
        }
        if let scope = settings.scope, !scope.isEmpty { form.append(("scope", scope)) }
        // RFC 7523: the assertion itself may be the only authentication (Google service accounts).
        if grant == OAuthSettings.jwtBearer, integration.credentials["clientSecret"] == nil, settings.clientAuth != "private_key_jwt" { return (form, nil) }
        guard let clientID else { throw PortalError(.configuration, "an oauth2 integration needs credentials.clientId") }
        // Authenticate first: it may add fields to the form.
        let basic = try authenticateClient(integration, clientID: clientID, settings: settings, now: now, form: &form)
        return (form, basic)
    }

    /// Client authentication: client_secret_basic (returned) unless `clientAuth` is `post` or there is no
    /// secret, in which case the client id (and secret) go into `form`; or, for `private_key_jwt`, a
    /// signed client assertion (RFC 7523 section 2.2: `iss` and `sub` the client id, `aud` the token endpoint).
    static func authenticateClient(
        _ integration: OutboundIntegration, clientID: String, settings: OAuthSettings, now: Date, form: inout [(String, String)]
    ) throws(PortalError) -> (String, String)? {
        let secret = integration.credentials["clientSecret"]
        if settings.clientAuth == "private_key_jwt" {
            let claims: [String: JSONValue] = ["iss": .string(clientID), "sub": .string(clientID), "aud": .string(settings.tokenURL.absoluteString)]
            let (assertion, _) = try JWTAssertions.sign(integration, now: now, defaults: claims, fixed: true)
            form += [("client_id", clientID), ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion)]
            return nil
        }
        if settings.clientAuth != "post", let secret { return (clientID, secret) }
        form.append(("client_id", clientID))
        if let secret { form.append(("client_secret", secret)) }
        return nil
    }

    private func fresh(_ row: IntegrationTokenRecord, _ settings: OAuthSettings) -> Bool {
        guard let expires = row.expiresAt else { return row.tokenType != "none" }
        return expires.timeIntervalSince(clock.now()) > settings.refreshEarly
    }

    private func current(_ integration: OutboundIntegration, settings: OAuthSettings) async throws -> String? {
        try await database.read { db in
            guard let row = try await IntegrationTokenStore(db).find(integrationID: integration.id, organizationID: integration.organizationID),
                  fresh(row, settings)
            else { return nil }
            return try await open(row, db: db).accessToken
        }
    }

    private func open(_ row: IntegrationTokenRecord?, db: Transaction) async throws -> OAuthTokenValues {
        guard let row, case .object(let fields) = row.sealed, !fields.isEmpty else { return OAuthTokenValues() }
        let plaintext = try await vault.open(row.sealed, organizationID: row.organizationID, context: Self.context(row.integrationID), in: db)
        return (try? JSONDecoder().decode(OAuthTokenValues.self, from: plaintext)) ?? OAuthTokenValues()
    }

    /// Runs the grant and stores the result; in `db` (PostgreSQL, row locked) or in a new write transaction.
    private func refresh(
        _ integration: OutboundIntegration, settings: OAuthSettings, row: IntegrationTokenRecord?, values: OAuthTokenValues, db: Transaction?,
        endpoint: TokenEndpoint
    ) async throws -> Result<String, PortalError> {
        let now = clock.now()
        if let next = row?.nextAttemptAt, next > now, row?.refreshFailures ?? 0 > 0 {
            var error = PortalError(.upstreamFailed, "the token endpoint failed recently; the next attempt is due at \(Timestamp.rfc3339(next))")
            error.retryAfterSeconds = max(1, Int(next.timeIntervalSince(now).rounded(.up)))
            return .failure(error)
        }
        let refreshToken = values.refreshToken ?? integration.credentials["refreshToken"]
        let grant = refreshToken != nil ? "refresh_token" : settings.grantType
        let (form, basic) = try Self.grantForm(integration, settings: settings, refreshToken: refreshToken, now: now)
        let outcome: Result<(Int, JSONValue), PortalError>
        do {
            outcome = .success(try await endpoint(settings.tokenURL, form, basic))
        } catch let error as PortalError {
            outcome = .failure(error)
        }
        switch outcome {
        case .success(let (status, body)) where (200..<300).contains(status):
            guard body.objectValue?["access_token"]?.stringValue?.isEmpty == false else {
                return try await fail(integration, settings: settings, row: row, reason: "the token endpoint answered without an access_token", db: db)
            }
            return .success(try await save(integration, answer: body, grant: grant, previousRefreshToken: refreshToken, scope: settings.scope, actor: AuditEvent.system("gateway"), db: db))
        case .success(let (status, body)):
            let code = body.objectValue?["error"]?.stringValue.map { " (\($0))" } ?? ""
            // A 5xx or 429 is the provider's outage, not a refusal of these credentials.
            return try await fail(
                integration, settings: settings, row: row, reason: "the token endpoint answered HTTP \(status)\(code)", transient: status >= 500 || status == 429, db: db
            )
        case .failure(let error):
            return try await fail(integration, settings: settings, row: row, reason: "the token endpoint could not be reached: \(error.message)", transient: true, db: db)
        }
    }

    /// Seals and stores a token endpoint's answer and appends `token.issued` / `token.refreshed`; returns
    /// the access token.
    private func save(
        _ integration: OutboundIntegration, answer body: JSONValue, grant: String, previousRefreshToken: String?, scope defaultScope: String?,
        actor: String, db: Transaction?
    ) async throws -> String {
        let now = clock.now()
        let fields = body.objectValue ?? [:]
        let access = fields["access_token"]?.stringValue ?? ""
        let expires: Date? = if case .int(let seconds)? = fields["expires_in"] { now.addingTimeInterval(TimeInterval(seconds)) } else { nil }
        let values = OAuthTokenValues(accessToken: access, refreshToken: fields["refresh_token"]?.stringValue ?? previousRefreshToken)
        let scope = fields["scope"]?.stringValue ?? defaultScope
        let event: AuditEventType = grant == "refresh_token" ? .tokenRefreshed : .tokenIssued
        try await write(db) { tx in
            let sealed = try await vault.seal(try JSONEncoder().encode(values), organizationID: integration.organizationID, context: Self.context(integration.id), in: tx)
            try await IntegrationTokenStore(tx).upsert(IntegrationTokenRecord(
                integrationID: integration.id, organizationID: integration.organizationID, sealed: sealed,
                tokenType: fields["token_type"]?.stringValue ?? "Bearer", scope: scope, expiresAt: expires,
                refreshFailures: 0, nextAttemptAt: nil, updatedAt: now
            ))
            var data: [String: JSONValue] = ["grantType": .string(grant), "hasRefreshToken": values.refreshToken != nil ? 1 : 0]
            if let scope { data["scopes"] = .string(scope) }
            if let expires { data["expiresAt"] = .string(Timestamp.rfc3339(expires)) }
            try await audit.record(AuditEvent(
                organizationID: integration.organizationID, type: event, actor: actor, integrationID: integration.id, data: .object(data), time: now
            ), in: tx)
        }
        audit.wake()
        observer.observe(.tokenRefresh(organizationID: integration.organizationID, integrationID: integration.id, success: true))
        return access
    }

    // MARK: Revocation

    /// Revokes the integration's stored tokens at the provider (RFC 7009, `config.oauth.revocationUrl`),
    /// refresh token first, then forgets them and appends `token.revoked` (how many the provider accepted;
    /// never a token value). Without a revocation endpoint the tokens are only forgotten, and the entry says so.
    func revoke(_ integration: OutboundIntegration, actor: String, endpoint: TokenEndpoint) async throws {
        let (row, values) = try await database.read { db in
            let row = try await IntegrationTokenStore(db).find(integrationID: integration.id, organizationID: integration.organizationID)
            return (row, try await open(row, db: db))
        }
        guard row != nil else { return }
        let settings = try? OAuthSettings(integration)
        let revocationURL = integration.configuration.oauth?.revocationURL.flatMap(URL.init(string:))
        var accepted = 0
        var attempted = 0
        if let revocationURL, let settings, let clientID = integration.credentials["clientId"] {
            for (token, hint) in [(values.refreshToken, "refresh_token"), (values.accessToken, "access_token")] {
                guard let token else { continue }
                attempted += 1
                var form: [(String, String)] = [("token", token), ("token_type_hint", hint)]
                let basic = try? Self.authenticateClient(integration, clientID: clientID, settings: settings, now: clock.now(), form: &form)
                // RFC 7009: 200 means revoked (or already invalid).
                if let (status, _) = try? await endpoint(revocationURL, form, basic), status == 200 { accepted += 1 }
            }
        }
        let now = clock.now()
        try await database.write { db in
            try await IntegrationTokenStore(db).delete(integrationID: integration.id)
            var data: [String: JSONValue] = ["attempted": .int(Int64(attempted)), "revoked": .int(Int64(accepted))]
            if revocationURL == nil { data["reason"] = "the provider has no revocation endpoint configured; the tokens were discarded" }
            try await audit.record(AuditEvent(
                organizationID: integration.organizationID, type: .tokenRevoked, actor: actor, integrationID: integration.id, data: .object(data), time: now
            ), in: db)
        }
        audit.wake()
    }

    // MARK: Authorization code with PKCE

    /// What `GET .../oauth/authorize` answers.
    struct Authorization {
        var url: String
        var state: String
        var expiresAt: Date
    }

    /// Starts an authorization-code flow: a single-use `state` (10 minutes) bound to the organization, the
    /// integration, the requesting token and a PKCE S256 verifier (sealed), and the provider URL to open.
    func authorize(_ integration: OutboundIntegration, tokenID: UUID, redirectURI: String) async throws -> Authorization {
        guard let base = integration.configuration.oauth?.authorizationURL, var components = URLComponents(string: base), components.host != nil else {
            throw PortalError(.validationFailed, "the integration names no config.oauth.authorizationUrl")
        }
        guard let clientID = integration.credentials["clientId"] else { throw PortalError(.configuration, "an oauth2 integration needs credentials.clientId") }
        let settings = try OAuthSettings(integration)
        let state = Self.randomToken()
        let verifier = Self.randomToken()
        let challenge = Self.base64URL(Array(SHA256.hash(data: Array(verifier.utf8))))
        let now = clock.now()
        let expires = now.addingTimeInterval(600)
        try await database.write { db in
            let sealed = try await vault.seal(Data(verifier.utf8), organizationID: integration.organizationID, context: VaultContext.oauthState(integration.id), in: db)
            try await OAuthStateStore(db).insert(OAuthStateRecord(
                stateHash: Hex.encode(SHA256.hash(data: Array(state.utf8))), organizationID: integration.organizationID,
                integrationID: integration.id, tokenID: tokenID, sealedVerifier: sealed, redirectURI: redirectURI, expiresAt: expires
            ))
        }
        var items = components.queryItems ?? []
        items += [
            URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: clientID),
            URLQueryItem(name: "redirect_uri", value: redirectURI), URLQueryItem(name: "state", value: state),
            URLQueryItem(name: "code_challenge", value: challenge), URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        if let scope = settings.scope { items.append(URLQueryItem(name: "scope", value: scope)) }
        items += settings.authorizationParams.map { URLQueryItem(name: $0.0, value: $0.1) }
        components.queryItems = items
        return Authorization(url: components.string ?? base, state: state, expiresAt: expires)
    }

    /// Completes the flow from the provider's redirect: the state is consumed (once, before expiry), the
    /// code exchanged with the PKCE verifier, the tokens stored; returns the organization and integration.
    func complete(state: String, code: String, load: (UUID, UUID) async throws -> OutboundIntegration, endpoint: TokenEndpoint) async throws -> (UUID, UUID) {
        let now = clock.now()
        let hash = Hex.encode(SHA256.hash(data: Array(state.utf8)))
        guard let pending = try await database.write({ db in try await OAuthStateStore(db).consume(stateHash: hash, now: now) }) else {
            throw PortalError(.malformedRequest, "the state is unknown, expired or already used; start again from /oauth/authorize")
        }
        let integration = try await load(pending.integrationID, pending.organizationID)
        let settings = try OAuthSettings(integration)
        let verifier = try await database.read { db in
            String(decoding: try await vault.open(pending.sealedVerifier, organizationID: pending.organizationID, context: VaultContext.oauthState(pending.integrationID), in: db), as: UTF8.self)
        }
        guard let clientID = integration.credentials["clientId"] else { throw PortalError(.configuration, "an oauth2 integration needs credentials.clientId") }
        var form: [(String, String)] = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", pending.redirectURI), ("code_verifier", verifier)]
        let basic = try Self.authenticateClient(integration, clientID: clientID, settings: settings, now: now, form: &form)
        let (status, body) = try await endpoint(settings.tokenURL, form, basic)
        guard (200..<300).contains(status), body.objectValue?["access_token"]?.stringValue?.isEmpty == false else {
            let reason = "the token endpoint answered HTTP \(status)\(body.objectValue?["error"]?.stringValue.map { " (\($0))" } ?? "") to the authorization code"
            _ = try await fail(integration, settings: settings, row: nil, reason: reason, db: nil)
            throw PortalError(.upstreamFailed, reason)
        }
        _ = try await save(
            integration, answer: body, grant: "authorization_code", previousRefreshToken: nil, scope: settings.scope,
            actor: pending.tokenID.uuidString.lowercased(), db: nil
        )
        return (pending.organizationID, pending.integrationID)
    }

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return base64URL((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Base64URL.encode(bytes)
    }

    /// Records a failed grant (backoff, `token.refresh_failed`, status `error` once exhausted) and throws.
    ///
    /// A `transient` failure (the endpoint unreachable, a 5xx or a 429) backs off like any other but never
    /// exhausts the integration: an identity provider's outage of a minute must not leave every OAuth
    /// integration in `error` until an administrator notices. Only refusals count towards `maxRefreshFailures`.
    private func fail(
        _ integration: OutboundIntegration, settings: OAuthSettings, row: IntegrationTokenRecord?, reason: String, transient: Bool = false, db: Transaction?
    ) async throws -> Result<String, PortalError> {
        let now = clock.now()
        let failures = (row?.refreshFailures ?? 0) + 1
        // An outage is retried at least every 30 s, so calls resume soon after the provider is back.
        let next = now.addingTimeInterval(min(transient ? 30 : 300, pow(2, Double(min(failures, 20) - 1))))
        let exhausted = !transient && failures >= settings.maxFailures
        try await write(db) { tx in
            try await IntegrationTokenStore(tx).upsert(IntegrationTokenRecord(
                integrationID: integration.id, organizationID: integration.organizationID, sealed: row?.sealed ?? [:],
                tokenType: row?.tokenType ?? "none", scope: row?.scope, expiresAt: row?.expiresAt,
                refreshFailures: failures, nextAttemptAt: next, updatedAt: now
            ))
            try await audit.record(AuditEvent(
                organizationID: integration.organizationID, type: .tokenRefreshFailed, actor: AuditEvent.system("gateway"),
                integrationID: integration.id, data: ["reason": .string(reason), "failures": .int(Int64(failures)), "exhausted": exhausted ? 1 : 0, "transient": transient ? 1 : 0], time: now
            ), in: tx)
            if exhausted {
                try await IntegrationStore(tx).markFailed(
                    id: integration.id, organizationID: integration.organizationID, message: "token refresh failed \(failures) times: \(reason)", at: now
                )
            }
        }
        audit.wake()
        observer.observe(.tokenRefresh(organizationID: integration.organizationID, integrationID: integration.id, success: false))
        if exhausted { invalidate(integration.id) }
        return .failure(PortalError(.upstreamFailed, "could not obtain an access token: \(reason)"))
    }

    private func write(_ db: Transaction?, _ body: @Sendable (Transaction) async throws -> Void) async throws {
        if let db { try await body(db) } else { try await database.write { tx in try await body(tx) } }
    }
}

/// One holder at a time per key; waiters in arrival order.
final class KeyedLock: Sendable {
    private let locks = Mutex<[UUID: AsyncLock]>([:])

    func withLock<T: Sendable>(_ key: UUID, _ body: () async throws -> T) async throws -> T {
        let lock = locks.withLock { locks -> AsyncLock in
            if let existing = locks[key] { return existing }
            let made = AsyncLock()
            locks[key] = made
            return made
        }
        return try await lock.withLock(body)
    }
}

/// A FIFO async mutex.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(continuation)
                return false
            }
            if acquired { continuation.resume() }
        }
        defer {
            let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if s.waiters.isEmpty { s.locked = false; return nil }
                return s.waiters.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
