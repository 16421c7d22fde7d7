import Crypto
package import Foundation
import PortalCore
package import Storage
import Synchronization

/// The platform-wide `/metrics` token (DESIGN section 6): `PORTAL_METRICS_TOKEN` when set; otherwise one
/// generated on first start, printed once, and kept only as its SHA-256 in `platform_secrets`. Compared in
/// constant time.
package final class MetricsTokenAuthority: Sendable {
    static let secretName = "metrics-token"
    let database: Database
    let configuredDigest: [UInt8]?
    private let stored = Mutex<[UInt8]?>(nil)

    package init(database: Database, configured: String?) {
        self.database = database
        configuredDigest = configured.map { Array(SHA256.hash(data: Array($0.utf8))) }
    }

    /// On first start without a configured token: makes one, stores its digest, and returns it (to print
    /// once). Returns nil when a token is configured or one was made before. One write transaction, so
    /// two instances starting together make one.
    package func ensure(at now: Date) async throws -> String? {
        guard configuredDigest == nil else { return nil }
        return try await database.write { db -> String? in
            let store = PlatformSecretStore(db)
            if try await store.digest(name: Self.secretName) != nil { return nil }
            var bytes = [UInt8](repeating: 0, count: 32)
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
            let token = "pmt_" + Base64URL.encode(bytes)
            try await store.insert(name: Self.secretName, digest: Array(SHA256.hash(data: Array(token.utf8))), at: now)
            return token
        }
    }

    /// Whether `presented` is the metrics token.
    package func check(_ presented: String) async throws -> Bool {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        if let configuredDigest { return ConstantTime.equals(digest, configuredDigest) }
        var expected = stored.withLock { $0 }
        if expected == nil {
            expected = try await database.read { db in try await PlatformSecretStore(db).digest(name: Self.secretName) }
            if let expected { stored.withLock { $0 = expected } }
        }
        guard let expected else { return false }
        return ConstantTime.equals(digest, expected)
    }
}
