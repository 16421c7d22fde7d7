package import Foundation

/// A tenant. Every resource belongs to exactly one organization, and every query is scoped by its id.
package struct Organization: Sendable, Equatable, Codable {
    package var id: UUID
    /// Immutable, lowercase; names the organization in URLs (ledger origin, webhook paths).
    package var slug: String
    package var name: String
    package var createdAt: Date

    package init(id: UUID, slug: String, name: String, createdAt: Date) {
        self.id = id
        self.slug = slug
        self.name = name
        self.createdAt = createdAt
    }

    /// The slug of the platform ledger, for events that belong to no organization; never a tenant's slug.
    package static let platformSlug = "_platform"
    /// The id of the platform ledger's organizations row.
    package static let platformID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    /// Checks that `slug` is 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter or digit.
    package static func validateSlug(_ slug: String) throws(PortalError) {
        let bytes = Array(slug.utf8)
        func allowed(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D }
        guard !bytes.isEmpty, bytes.count <= 63, bytes[0] != 0x2D, bytes.allSatisfy(allowed) else {
            throw PortalError(
                .validationFailed,
                "an organization slug is 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'"
            )
        }
    }
}
