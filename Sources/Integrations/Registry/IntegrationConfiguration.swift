import Foundation
package import PortalCore

/// An integration's `config`, read and checked: every member that the gateway, the authenticators, the
/// OAuth flows, the catalog and data-subject requests read, typed. ``parse(_:pointer:)`` names every
/// unknown member, wrong type and bad value in one 422 (a typo such as `regoin` is refused, never silently
/// replaced by the default region); ``stored(_:)`` reads a stored configuration leniently, with the
/// defaults where a member is missing, for rows written before the check.
package struct IntegrationConfiguration: Sendable, Equatable {
    /// Where an `api_key` integration sends its key.
    package enum KeyLocation: String, CaseIterable, Sendable {
        case header, query, body
    }

    package struct APIKey: Sendable, Equatable {
        package var location: KeyLocation = .header
        /// The header for `location` header (default `X-API-Key`), with an optional `prefix` (`Bearer`).
        package var header = "X-API-Key"
        package var prefix: String?
        /// The query parameter for `location` query.
        package var parameter = "api_key"
        /// The JSON body member for `location` body.
        package var field = "api_key"
    }

    /// The AWS scope of an `aws_sigv4` integration.
    package struct SigV4Scope: Sendable, Equatable {
        package var region = "us-east-1"
        package var service = "s3"

        package init(region: String = "us-east-1", service: String = "s3") {
            self.region = region
            self.service = service
        }
    }

    package enum GrantType: String, CaseIterable, Sendable {
        case clientCredentials = "client_credentials"
        case authorizationCode = "authorization_code"
        case refreshToken = "refresh_token"
        case jwtBearer = "jwt_bearer"
    }

    package enum ClientAuth: String, CaseIterable, Sendable {
        case basic, post
        case privateKeyJWT = "private_key_jwt"
    }

    /// `config.oauth`.
    package struct OAuth: Sendable, Equatable {
        package var tokenURL: String
        package var authorizationURL: String?
        package var revocationURL: String?
        package var redirectURI: String?
        /// Space-joined into the `scope` parameter (`scopes`, or one `scope` string).
        package var scopes: [String] = []
        package var grantType: GrantType = .clientCredentials
        package var clientAuth: ClientAuth = .basic
        package var tokenParameters: [(String, String)] = []
        package var authorizationParameters: [(String, String)] = []
        package var refreshEarlySeconds = 300
        package var maxRefreshFailures = 3

        package static func == (a: OAuth, b: OAuth) -> Bool {
            a.tokenURL == b.tokenURL && a.authorizationURL == b.authorizationURL && a.revocationURL == b.revocationURL
                && a.redirectURI == b.redirectURI && a.scopes == b.scopes && a.grantType == b.grantType && a.clientAuth == b.clientAuth
                && a.tokenParameters.elementsEqual(b.tokenParameters, by: ==) && a.authorizationParameters.elementsEqual(b.authorizationParameters, by: ==)
                && a.refreshEarlySeconds == b.refreshEarlySeconds && a.maxRefreshFailures == b.maxRefreshFailures
        }
    }

    package enum JWTAlgorithm: String, CaseIterable, Sendable {
        case rs256 = "RS256", es256 = "ES256", edDSA = "EdDSA", hs256 = "HS256"
    }

    /// `config.jwt`: the assertions the portal signs.
    package struct JWT: Sendable, Equatable {
        /// Nil: HS256 with a `secret` credential, RS256 otherwise.
        package var algorithm: JWTAlgorithm?
        package var issuer: String?
        package var subject: String?
        /// A string or an array of strings.
        package var audience: JSONValue?
        package var expiresIn = 300
        package var keyID: String?
        package var claims: [String: JSONValue] = [:]

        package init() {}
    }

    /// `config.cache`: responses of GET calls kept for `ttlSeconds`, for the endpoint templates listed (all
    /// when `endpoints` is absent).
    package struct Cache: Sendable, Equatable {
        package var ttlSeconds = 0
        package var endpoints: [String]?

        package init(ttlSeconds: Int = 0, endpoints: [String]? = nil) {
            self.ttlSeconds = ttlSeconds
            self.endpoints = endpoints
        }
    }

    /// `config.retry`: attempts and exponential backoff with full jitter, in milliseconds.
    package struct Retry: Sendable, Equatable {
        package var maxAttempts = 3
        package var baseDelay = 200
        package var maxDelay = 5_000
        package var retryNonIdempotent = false

        package init(maxAttempts: Int = 3, baseDelay: Int = 200, maxDelay: Int = 5_000, retryNonIdempotent: Bool = false) {
            self.maxAttempts = maxAttempts
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
            self.retryNonIdempotent = retryNonIdempotent
        }
    }

    /// `config.subjectDeletion`: how to ask the integration to delete a data subject.
    package struct SubjectDeletion: Sendable, Equatable {
        package var method = "DELETE"
        /// A path with `{subjectId}`.
        package var endpoint: String

        package init(method: String = "DELETE", endpoint: String) {
            self.method = method
            self.endpoint = endpoint
        }
    }

    package var apiKey = APIKey()
    /// The `custom` auth method's header templates (`{{field}}` replaced by that credential).
    package var headers: [String: String] = [:]
    package var sigV4 = SigV4Scope()
    package var oauth: OAuth?
    package var jwt: JWT?
    /// Checked by ``TransformFields``; applied by the gateway.
    package var transforms: JSONValue?
    /// Endpoint templates (`/v1/users/{id}`) the paths are recorded under.
    package var endpoints: [String] = []
    /// When set, the only templates a call may use.
    package var allowedPaths: [String]?
    /// Whether request and response bodies are kept with each request row.
    package var storeBodies = false
    package var cache: Cache?
    package var retry = Retry()
    package var testEndpoint = "/"
    /// `GET` or `POST`.
    package var testMethod = "GET"
    package var subjectDeletion: SubjectDeletion?
    /// The catalog preset the integration was made from.
    package var preset: String?
    /// Data minimization: the only fields outbound JSON bodies may carry (issue 21).
    package var minimization: Minimization?
    /// Service level objectives over a rolling window (issue 21).
    package var slo: ServiceLevelObjectives?

    /// The integration's service level objectives: availability (the share of upstream calls not failing by
    /// the provider's fault: 5xx answers, timeouts and connection failures) and latency (the share of upstream
    /// calls answered within a threshold), over a rolling 28 or 30 days.
    package struct ServiceLevelObjectives: Sendable, Equatable {
        package var availability: Double?
        package var latencyObjective: Double?
        package var latencyThresholdMs: Int?
        package var windowDays: Int

        package init(availability: Double? = nil, latencyObjective: Double? = nil, latencyThresholdMs: Int? = nil, windowDays: Int = 30) {
            self.availability = availability
            self.latencyObjective = latencyObjective
            self.latencyThresholdMs = latencyThresholdMs
            self.windowDays = windowDays
        }
    }

    /// The fields of outbound JSON bodies the integration may send, as JSON pointers (RFC 6901, with `*`
    /// for every member or element at that level); the gateway strips the rest, or refuses the call.
    package struct Minimization: Sendable, Equatable {
        package enum Mode: String, Sendable, CaseIterable {
            /// Send the body without the fields not listed, and count them.
            case strip
            /// Refuse the call (422) naming the fields not listed.
            case refuse
        }

        package var fields: [String]
        package var mode: Mode

        package init(fields: [String], mode: Mode = .strip) {
            self.fields = fields
            self.mode = mode
        }
    }

    package init() {}

    /// Reads a `config` object; every problem is reported with its pointer (a 422).
    package static func parse(_ value: JSONValue, pointer: String = "/config") throws(PortalError) -> IntegrationConfiguration {
        try JSONObjectReader.parse(value, pointer: pointer, read)
    }

    /// Checks a `config` object into `errors` (beside the rest of a request's problems).
    static func check(_ value: JSONValue, pointer: String, errors: ValidationErrors) {
        var r = JSONObjectReader(value, pointer: pointer, errors: errors)
        _ = read(&r)
        r.finish()
    }

    /// A stored configuration, read leniently: members that are missing, unknown or invalid (rows written
    /// before the check) take their defaults. New and changed configurations always pass ``parse(_:pointer:)``.
    package static func stored(_ value: JSONValue) -> IntegrationConfiguration {
        var r = JSONObjectReader(value, pointer: "/config", errors: ValidationErrors())
        return read(&r)
    }

    /// Reads the members of a `config` object into `r`'s error list.
    package static func read(_ r: inout JSONObjectReader) -> IntegrationConfiguration {
        var c = IntegrationConfiguration()
        c.apiKey.location = r.enumeration("keyLocation", KeyLocation.self) ?? .header
        if let header = headerName(&r, "keyHeader") { c.apiKey.header = header }
        c.apiKey.prefix = r.string("keyPrefix", maxLength: 100)
        if let parameter = r.string("keyParam", minLength: 1, maxLength: 100) { c.apiKey.parameter = parameter }
        if let field = r.string("keyField", minLength: 1, maxLength: 100) { c.apiKey.field = field }
        if let templates = r.object("headers") {
            if templates.count > 50 { r.reject("headers", "has \(templates.count) headers; at most 50") }
            for (name, value) in templates.sorted(by: { $0.key < $1.key }) {
                let pointer = r.pointer("headers") + "/" + jsonPointerEscape(name)
                guard isToken(name), name.count <= 100 else {
                    r.errorList.add(pointer, "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, at most 100)")
                    continue
                }
                guard case .string(let template) = value, template.count <= 2_000 else {
                    r.errorList.add(pointer, "must be a string of at most 2000 characters")
                    continue
                }
                c.headers[name] = template
            }
        }
        if let region = awsName(&r, "region") { c.sigV4.region = region }
        if let service = awsName(&r, "service") { c.sigV4.service = service }
        c.oauth = r.nested("oauth") { readOAuth(&$0) }
        c.jwt = r.nested("jwt") { readJWT(&$0) }
        c.transforms = r.value("transforms")
        c.endpoints = paths(&r, "endpoints") ?? []
        c.allowedPaths = paths(&r, "allowedPaths")
        c.storeBodies = r.bool("storeBodies") ?? false
        c.cache = r.nested("cache") { s in
            Cache(ttlSeconds: Int(s.integer("ttlSeconds", in: 0...86_400) ?? 0), endpoints: paths(&s, "endpoints"))
        }
        if let retry = r.nested("retry", { s in
            Retry(
                maxAttempts: Int(s.integer("maxAttempts", in: 1...10) ?? 3), baseDelay: Int(s.integer("baseDelay", in: 0...60_000) ?? 200),
                maxDelay: Int(s.integer("maxDelay", in: 0...300_000) ?? 5_000), retryNonIdempotent: s.bool("retryNonIdempotent") ?? false
            )
        }) { c.retry = retry }
        // A path under the base URL, or a suffix of it (Firebase's `.json`).
        if let test = r.string("testEndpoint", minLength: 1, maxLength: 2_000) { c.testEndpoint = test }
        if let method = r.string("testMethod") {
            if ["GET", "POST"].contains(method) { c.testMethod = method } else { r.reject("testMethod", "must be GET or POST") }
        }
        c.subjectDeletion = r.nested("subjectDeletion") { s in
            let method = s.string("method")?.uppercased() ?? "DELETE"
            if !["DELETE", "POST", "PUT", "PATCH"].contains(method) { s.reject("method", "must be DELETE, POST, PUT or PATCH") }
            guard let endpoint = s.string("endpoint", required: true, minLength: 1, maxLength: 2_000) else { return nil }
            guard endpoint.contains("{subjectId}") else {
                s.reject("endpoint", "must contain {subjectId}")
                return nil
            }
            return SubjectDeletion(method: method, endpoint: endpoint)
        }
        c.preset = r.string("preset", minLength: 1, maxLength: 100)
        c.slo = r.nested("slo") { s -> ServiceLevelObjectives? in
            func objective(_ reader: inout JSONObjectReader, _ key: String) -> Double? {
                guard let value = reader.value(key) else { return nil }
                let number: Double? = switch value {
                case .double(let d): d
                case .int(let i): Double(i)
                default: nil
                }
                guard let number, number >= 0.5, number <= 0.99999 else {
                    reader.reject(key, "must be a share from 0.5 to 0.99999 (0.999 is 99.9%)")
                    return nil
                }
                return number
            }
            var slo = ServiceLevelObjectives()
            slo.availability = objective(&s, "availability")
            if let latency = s.nested("latency", { l -> (Int, Double)? in
                let threshold = l.integer("thresholdMs", required: true, in: 1...600_000)
                let share = objective(&l, "objective")
                if share == nil, !l.has("objective") { l.reject("objective", "is required") }
                guard let threshold, let share else { return nil }
                return (Int(threshold), share)
            }) {
                slo.latencyThresholdMs = latency.0
                slo.latencyObjective = latency.1
            }
            if let window = s.string("window") {
                if window == "28d" || window == "30d" { slo.windowDays = window == "28d" ? 28 : 30 } else { s.reject("window", "must be 28d or 30d") }
            }
            if slo.availability == nil, slo.latencyObjective == nil, !s.has("availability"), !s.has("latency") {
                s.reject("availability", "give an availability objective, a latency objective, or both")
            }
            return slo
        }
        c.minimization = r.nested("minimization") { s -> Minimization? in
            let fields = s.strings("fields", required: true, maxLength: 500) ?? []
            if fields.count > 200 { s.reject("fields", "has \(fields.count) pointers; at most 200") }
            for (i, field) in fields.enumerated() where !field.hasPrefix("/") {
                s.errorList.add("\(s.pointer("fields"))/\(i)", "must be a JSON pointer starting with / (like /email or /items/*/sku)")
            }
            let mode = s.enumeration("mode", Minimization.Mode.self) ?? .strip
            return Minimization(fields: fields, mode: mode)
        }
        // Names of the seed's OAuth example, where a reader of the seed would put them: say where they go.
        for (key, oauthKey) in [("scope", "scopes"), ("scopes", "scopes"), ("authUrl", "authorizationUrl"), ("authorizationUrl", "authorizationUrl"), ("tokenUrl", "tokenUrl"), ("redirectUri", "redirectUri")]
        where r.has(key) {
            _ = r.value(key)
            r.reject(key, "belongs in config.oauth, as config.oauth.\(oauthKey)")
        }
        for key in ["clientId", "clientSecret", "apiKey", "password", "privateKey"] where r.has(key) {
            _ = r.value(key)
            r.reject(key, "is a credential: send it in credentials, where it is encrypted, never in config")
        }
        return c
    }

    private static func readOAuth(_ s: inout JSONObjectReader) -> OAuth? {
        let token = url(&s, "tokenUrl", required: true)
        var o = OAuth(tokenURL: token ?? "")
        o.authorizationURL = url(&s, "authorizationUrl")
        o.revocationURL = url(&s, "revocationUrl")
        o.redirectURI = url(&s, "redirectUri")
        if let scopes = s.strings("scopes", maxLength: 200) {
            o.scopes = scopes
            if s.has("scope") { s.reject("scope", "give scopes or scope, not both") }
        } else if let scope = s.string("scope", maxLength: 2_000) {
            o.scopes = scope.split(separator: " ").map(String.init)
        }
        o.grantType = s.enumeration("grantType", GrantType.self) ?? .clientCredentials
        o.clientAuth = s.enumeration("clientAuth", ClientAuth.self) ?? .basic
        o.tokenParameters = parameters(&s, "tokenParams")
        o.authorizationParameters = parameters(&s, "authorizationParams")
        o.refreshEarlySeconds = Int(s.integer("refreshEarlySeconds", in: 0...86_400) ?? 300)
        o.maxRefreshFailures = Int(s.integer("maxRefreshFailures", in: 1...100) ?? 3)
        return token == nil ? nil : o
    }

    private static func readJWT(_ s: inout JSONObjectReader) -> JWT? {
        var j = JWT()
        j.algorithm = s.enumeration("algorithm", JWTAlgorithm.self)
        j.issuer = s.string("issuer", minLength: 1, maxLength: 2_000)
        j.subject = s.string("subject", minLength: 1, maxLength: 2_000)
        if let audience = s.value("audience") {
            switch audience {
            case .string(let a) where !a.isEmpty && a.count <= 2_000: j.audience = audience
            case .array(let items) where !items.isEmpty && items.allSatisfy({ ($0.stringValue?.isEmpty == false) }): j.audience = audience
            default: s.reject("audience", "must be a non-empty string or an array of them")
            }
        }
        j.expiresIn = Int(s.integer("expiresIn", in: 1...86_400) ?? 300)
        j.keyID = s.string("keyId", minLength: 1, maxLength: 200)
        j.claims = s.object("claims") ?? [:]
        return j
    }

    /// An absolute http(s) URL with a host.
    private static func url(_ s: inout JSONObjectReader, _ key: String, required: Bool = false) -> String? {
        guard let text = s.string(key, required: required, minLength: 1, maxLength: 2_000) else { return nil }
        guard let components = URLComponents(string: text), ["http", "https"].contains(components.scheme?.lowercased() ?? ""),
              let host = components.host, !host.isEmpty
        else {
            s.reject(key, "must be an absolute http or https URL")
            return nil
        }
        return text
    }

    /// An object of string values, sorted by name (token request fields, authorization URL parameters).
    private static func parameters(_ s: inout JSONObjectReader, _ key: String) -> [(String, String)] {
        guard let members = s.object(key) else { return [] }
        if members.count > 20 { s.reject(key, "has \(members.count) parameters; at most 20") }
        var out: [(String, String)] = []
        for (name, value) in members.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, name.count <= 100, case .string(let text) = value, text.count <= 2_000 else {
                s.errorList.add(s.pointer(key) + "/" + jsonPointerEscape(name), "must be a string of at most 2000 characters under a name of 1 to 100")
                continue
            }
            out.append((name, text))
        }
        return out
    }

    /// A list of paths, each starting with `/`.
    private static func paths(_ s: inout JSONObjectReader, _ key: String) -> [String]? {
        guard let list = s.strings(key, maxLength: 2_000) else { return nil }
        if list.count > 500 { s.reject(key, "has \(list.count) paths; at most 500") }
        for (i, path) in list.enumerated() where !path.hasPrefix("/") {
            s.errorList.add("\(s.pointer(key))/\(i)", "must be a path starting with /")
        }
        return list
    }

    private static func headerName(_ s: inout JSONObjectReader, _ key: String) -> String? {
        guard let name = s.string(key, minLength: 1, maxLength: 100) else { return nil }
        guard isToken(name) else {
            s.reject(key, "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
            return nil
        }
        return name
    }

    /// An AWS region or service name: lowercase letters, digits and hyphens.
    private static func awsName(_ s: inout JSONObjectReader, _ key: String) -> String? {
        guard let name = s.string(key, minLength: 1, maxLength: 64) else { return nil }
        guard name.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }) else {
            s.reject(key, "must be lowercase letters, digits and hyphens (such as eu-west-1 or s3)")
            return nil
        }
        return name
    }

    /// An RFC 9110 token.
    private static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}
