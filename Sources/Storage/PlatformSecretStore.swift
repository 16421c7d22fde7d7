package import Foundation
import SQLKit

/// The `platform_secrets` table: digests of platform-wide secrets (the generated `/metrics` token), never
/// the secrets themselves.
package struct PlatformSecretStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// The stored digest of `name`, if one was made.
    package func digest(name: String) async throws -> [UInt8]? {
        try await db.raw("SELECT digest FROM platform_secrets WHERE name = \(bind: name)").first()
            .map { Array(try $0.decode(column: "digest", as: Data.self)) }
    }

    /// Stores the digest of `name`.
    package func insert(name: String, digest: [UInt8], at time: Date) async throws {
        try await db.raw("""
            INSERT INTO platform_secrets (name, digest, created_at) VALUES (\(bind: name), \(bind: Data(digest)), \(bind: time))
            """).run()
    }
}
