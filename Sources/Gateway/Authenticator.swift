import Crypto
package import Foundation
package import Integrations
import Ledger
package import PortalCore
import Storage

/// Signs an outbound request with an integration's credentials, by its `authMethod`: runs inside
/// the retry loop, after transforms, so time-bound signatures (SigV4 dates) are fresh on every attempt.
package enum Authenticator {
    /// Applies `integration`'s authentication to `request` at `now`.
    /// `bearer`: the OAuth 2.0 access token obtained for this attempt (oauth2 only).
    package static func apply(_ integration: OutboundIntegration, to request: inout OutboundRequest, now: Date, bearer: String? = nil) throws(PortalError) {
        let credentials = integration.credentials
        let config = integration.configuration
        func credential(_ name: String) throws(PortalError) -> String {
            guard let value = credentials[name], !value.isEmpty else {
                throw PortalError(.configuration, "the integration's credentials lack '\(name)' for \(integration.authMethod.rawValue)")
            }
            return value
        }
        switch integration.authMethod {
        case .apiKey:
            let key = try credential("apiKey")
            switch config.apiKey.location {
            case .query:
                try request.setQueryItem(config.apiKey.parameter, key)
            case .body:
                let field = config.apiKey.field
                var object: [String: JSONValue] = [:]
                if !request.body.isEmpty {
                    guard case .object(let existing)? = try? JSONValue.parse(Data(request.body)) else {
                        throw PortalError(.validationFailed, "the API key goes into the JSON body, so the body must be a JSON object")
                    }
                    object = existing
                }
                object[field] = .string(key)
                request.body = Array(JSONValue.encodeText(.object(object)).utf8)
                request.setHeader("Content-Type", "application/json")
            case .header:
                let prefix = config.apiKey.prefix.map { $0 + " " } ?? ""
                request.setHeader(config.apiKey.header, prefix + key)
            }
        case .basicAuth:
            let pair = try credential("username") + ":" + credential("password")
            request.setHeader("Authorization", "Basic " + Data(pair.utf8).base64EncodedString())
        case .custom:
            guard !config.headers.isEmpty else {
                throw PortalError(.configuration, "a custom integration names its headers in config.headers, e.g. {\"Authorization\": \"Token {{apiKey}}\"}")
            }
            for (name, template) in config.headers.sorted(by: { $0.key < $1.key }) {
                request.setHeader(name, try render(template, credentials: credentials))
            }
        case .awsSigV4:
            try SigV4.sign(
                &request,
                credentials: .init(accessKeyID: credential("accessKeyId"), secretAccessKey: credential("secretAccessKey"), sessionToken: credentials["sessionToken"]),
                region: config.sigV4.region,
                service: config.sigV4.service,
                date: now
            )
        case .jwt:
            // An assertion the gateway signed (`bearer`), or a token issued elsewhere stored as credentials.token.
            guard let token = bearer ?? credentials["token"], !token.isEmpty else {
                throw PortalError(.configuration, "a jwt integration needs credentials.privateKey, credentials.secret or credentials.token")
            }
            request.setHeader("Authorization", "Bearer " + token)
        case .oauth2:
            guard let token = bearer ?? credentials["accessToken"], !token.isEmpty else {
                throw PortalError(.configuration, "the oauth2 integration has no access token: set config.oauth.tokenUrl, or credentials.accessToken")
            }
            request.setHeader("Authorization", "Bearer " + token)
        }
    }

    /// Replaces `{{field}}` with the credential of that name; an unknown field is a configuration error.
    static func render(_ template: String, credentials: [String: String]) throws(PortalError) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw PortalError(.configuration, "a header template has '{{' without '}}'")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let value = credentials[name] else {
                throw PortalError(.configuration, "a header template names '\(name)', which is not among the credentials")
            }
            out += value
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    /// Every credential value long enough to be recognizable, for redaction.
    static func secrets(of integration: OutboundIntegration) -> [String] {
        integration.credentials.values.filter { $0.count >= 4 }
    }
}

/// AWS Signature Version 4 (header form), checked against the AWS test suite's vectors.
package enum SigV4 {
    package struct Credentials: Sendable {
        package var accessKeyID: String
        package var secretAccessKey: String
        package var sessionToken: String?

        package init(accessKeyID: String, secretAccessKey: String, sessionToken: String?) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }
    }

    /// Adds `X-Amz-Date` (and for S3 `X-Amz-Content-Sha256`, with a session token `X-Amz-Security-Token`)
    /// and the `Authorization` header, signing every header of the request and the `Host`.
    package static func sign(_ request: inout OutboundRequest, credentials: Credentials, region: String, service: String, date: Date) throws(PortalError) {
        guard let host = request.url.host else { throw PortalError(.validationFailed, "the request URL has no host") }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let amzDate = formatter.string(from: date)
        let day = String(amzDate.prefix(8))
        let payloadHash = Hex.encode(SHA256.hash(data: request.body))
        request.headers.removeAll { ["authorization", "x-amz-date"].contains($0.name.lowercased()) }
        request.setHeader("X-Amz-Date", amzDate)
        if service == "s3" { request.setHeader("X-Amz-Content-Sha256", payloadHash) }
        if let token = credentials.sessionToken { request.setHeader("X-Amz-Security-Token", token) }

        let port = request.url.port.map { ":\($0)" } ?? ""
        var canonicalHeaders: [String: [String]] = ["host": [host.lowercased() + port]]
        for (name, value) in request.headers where name.lowercased() != "host" {
            // Trim, and collapse runs of spaces, as the specification requires.
            let trimmed = value.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            canonicalHeaders[name.lowercased(), default: []].append(trimmed)
        }
        let signedHeaders = canonicalHeaders.keys.sorted()
        let headerBlock = signedHeaders.map { "\($0):\(canonicalHeaders[$0]!.joined(separator: ","))\n" }.joined()
        let canonicalRequest = [
            request.method.uppercased(), canonicalPath(request.url, doubleEncode: service != "s3"), canonicalQuery(request.url),
            headerBlock, signedHeaders.joined(separator: ";"), payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Hex.encode(SHA256.hash(data: Array(canonicalRequest.utf8))))"
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let signature = Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
        request.setHeader(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders.joined(separator: ";")), Signature=\(signature)"
        )
    }

    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    static func canonicalPath(_ url: URL, doubleEncode: Bool) -> String {
        let path = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? "/"
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false).map { segment -> String in
            let decoded = String(segment).removingPercentEncoding ?? String(segment)
            let once = encode(decoded)
            return doubleEncode ? encode(once) : once
        }.joined(separator: "/")
    }

    static func canonicalQuery(_ url: URL) -> String {
        let items = URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []
        let pairs: [(name: String, value: String)] = items.map { (encode($0.name), encode($0.value ?? "")) }
        let sorted = pairs.sorted { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }
}
