import Crypto
import CryptoExtras
import Foundation
import Integrations
import Ledger
import PortalCore
import Storage
import Synchronization

/// Bearer assertions the portal signs for `jwt` integrations: HS256 with `credentials.secret`,
/// RS256, ES256 or EdDSA with `credentials.privateKey` (PEM; PKCS#8 for Ed25519), claims from `config.jwt`
/// (`issuer`, `subject`, `audience`, `expiresIn` seconds (default 300), `keyId`, `claims`), plus `iat`,
/// `exp` and a random `jti`. Cached per integration and credentials until 30 seconds before expiry.
final class JWTAssertions: Sendable {
    private let cache = Mutex<[String: (token: String, expires: Date)]>([:])

    /// Whether the integration signs its own assertions (rather than sending a stored `token`).
    static func signs(_ integration: OutboundIntegration) -> Bool {
        integration.authMethod == .jwt && (integration.credentials["privateKey"] != nil || integration.credentials["secret"] != nil)
    }

    func assertion(for integration: OutboundIntegration, now: Date) throws(PortalError) -> String {
        let identity = integration.credentials.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        let key = integration.id.uuidString + "|" + Hex.encode(SHA256.hash(data: Array(identity.utf8)))
        if let cached = cache.withLock({ $0[key] }), cached.expires.timeIntervalSince(now) > 30 { return cached.token }
        let (token, expires) = try Self.sign(integration, now: now)
        cache.withLock { $0[key] = (token, expires) }
        return token
    }

    /// Signs an assertion. `defaults` are claims used where `config.jwt` names none (or, when `fixed`,
    /// always: a client assertion's `iss`, `sub` and `aud` are prescribed).
    static func sign(_ integration: OutboundIntegration, now: Date, defaults: [String: JSONValue] = [:], fixed: Bool = false) throws(PortalError) -> (String, Date) {
        let config = integration.configuration.jwt ?? IntegrationConfiguration.JWT()
        let secret = integration.credentials["secret"]
        let algorithm = config.algorithm?.rawValue ?? (secret != nil && integration.credentials["privateKey"] == nil ? "HS256" : "RS256")
        let lifetime = Int64(config.expiresIn)
        let issued = Int64(now.timeIntervalSince1970)
        var header: [String: JSONValue] = ["alg": .string(algorithm), "typ": "JWT"]
        if let kid = config.keyID { header["kid"] = .string(kid) }
        var claims = config.claims
        if let issuer = config.issuer { claims["iss"] = .string(issuer) }
        if let subject = config.subject { claims["sub"] = .string(subject) }
        if let audience = config.audience { claims["aud"] = audience }
        for (claim, value) in defaults where value != .null && (fixed || claims[claim] == nil) { claims[claim] = value }
        claims["iat"] = .int(issued)
        claims["exp"] = .int(issued + lifetime)
        claims["jti"] = .string(UUID().uuidString.lowercased())
        let input = base64URL(Array(JSONValue.encodeText(.object(header)).utf8)) + "." + base64URL(Array(JSONValue.encodeText(.object(claims)).utf8))
        let data = Array(input.utf8)
        let signature: [UInt8]
        do {
            switch algorithm {
            case "HS256":
                guard let secret else { throw PortalError(.configuration, "HS256 needs credentials.secret") }
                signature = Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Array(secret.utf8))))
            case "RS256":
                let key = try _RSA.Signing.PrivateKey(pemRepresentation: try privateKey(integration))
                signature = Array(try key.signature(for: data, padding: .insecurePKCS1v1_5).rawRepresentation)
            case "ES256":
                let key = try P256.Signing.PrivateKey(pemRepresentation: try privateKey(integration))
                signature = Array(try key.signature(for: data).rawRepresentation)
            case "EdDSA":
                let key = try Curve25519.Signing.PrivateKey(rawRepresentation: try ed25519Seed(try privateKey(integration)))
                signature = Array(try key.signature(for: data))
            default:
                throw PortalError(.configuration, "config.jwt.algorithm must be HS256, RS256, ES256 or EdDSA")
            }
        } catch let error as PortalError {
            throw error
        } catch {
            throw PortalError(.configuration, "the integration's private key cannot sign \(algorithm): \(type(of: error))")
        }
        return (input + "." + base64URL(signature), now.addingTimeInterval(TimeInterval(lifetime)))
    }

    static func privateKey(_ integration: OutboundIntegration) throws(PortalError) -> String {
        guard let pem = integration.credentials["privateKey"], !pem.isEmpty else {
            throw PortalError(.configuration, "signed JWT assertions need credentials.privateKey (PEM) or credentials.secret (HS256)")
        }
        return pem
    }

    /// The 32-byte seed of a PKCS#8 Ed25519 private key in PEM.
    static func ed25519Seed(_ pem: String) throws(PortalError) -> [UInt8] {
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
        guard let der = Data(base64Encoded: body).map(Array.init), der.count == 48, Array(der.prefix(16)) == prefix else {
            throw PortalError(.configuration, "credentials.privateKey is not a PKCS#8 Ed25519 key")
        }
        return Array(der.suffix(32))
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Base64URL.encode(bytes)
    }
}
