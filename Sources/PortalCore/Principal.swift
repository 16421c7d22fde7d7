package import Foundation

/// Who is calling: the API token presented, its organization and role.
package struct Principal: Sendable, Equatable {
    package var tokenID: UUID
    package var organizationID: UUID
    package var organizationSlug: String
    package var role: Role
    /// The person the token was issued to.
    package var owner: String

    package init(tokenID: UUID, organizationID: UUID, organizationSlug: String, role: Role, owner: String) {
        self.tokenID = tokenID
        self.organizationID = organizationID
        self.organizationSlug = organizationSlug
        self.role = role
        self.owner = owner
    }

    /// Throws `forbidden` unless the role allows `permission`.
    package func require(_ permission: Permission) throws(PortalError) {
        guard role.allows(permission) else {
            throw PortalError(.forbidden, "the \(role.rawValue) role may not do this (\(permission.rawValue))")
        }
    }
}
