package import Foundation
package import PortalCore
import SQLKit

/// Organizations: the tenants every other row belongs to.
package struct OrganizationStore {
    private let db: any SQLDatabase

    /// A store over one transaction's connection.
    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Inserts a new organization; a taken slug is a `conflict`.
    package func insert(_ organization: Organization) async throws {
        try Organization.validateSlug(organization.slug)
        try await db.raw("""
            INSERT INTO organizations (id, slug, name, created_at)
            VALUES (\(bind: organization.id), \(bind: organization.slug), \(bind: organization.name), \(bind: organization.createdAt))
            """).run()
    }

    /// The organization with this slug, if any.
    package func find(slug: String) async throws -> Organization? {
        try await db.raw("SELECT id, slug, name, created_at FROM organizations WHERE slug = \(bind: slug)")
            .first().map(Self.decode)
    }

    /// The organization with this id, if any.
    package func find(id: UUID) async throws -> Organization? {
        try await db.raw("SELECT id, slug, name, created_at FROM organizations WHERE id = \(bind: id)")
            .first().map(Self.decode)
    }

    /// Every tenant organization, oldest first (the platform ledger's row is not one).
    package func list() async throws -> [Organization] {
        try await db.raw("SELECT id, slug, name, created_at FROM organizations WHERE id <> \(bind: Organization.platformID) ORDER BY id")
            .all().map(Self.decode)
    }

    /// Every ledger's owner by slug: the tenant organizations and the platform's own row (`_platform`).
    package func ledgerOwners() async throws -> [(id: UUID, slug: String)] {
        try await db.raw("SELECT id, slug FROM organizations ORDER BY slug").all().map {
            (try $0.decode(column: "id", as: UUID.self), try $0.decode(column: "slug", as: String.self))
        }
    }

    /// The organization with `slug`, created with `name` if it does not exist yet.
    package func findOrCreate(slug: String, name: String, id: UUID, at time: Date) async throws -> (Organization, created: Bool) {
        if let existing = try await find(slug: slug) { return (existing, false) }
        let organization = Organization(id: id, slug: slug, name: name, createdAt: time)
        try await insert(organization)
        return (organization, true)
    }

    private static func decode(_ row: any SQLRow) throws -> Organization {
        Organization(
            id: try row.decode(column: "id", as: UUID.self),
            slug: try row.decode(column: "slug", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            createdAt: try row.decode(column: "created_at", as: Date.self)
        )
    }
}
