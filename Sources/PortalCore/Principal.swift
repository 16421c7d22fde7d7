public import Foundation

/// Who is calling: the API token presented, its organization and role.
public struct Principal: Sendable, Equatable {
    public var tokenID: UUID
    public var organizationID: UUID
    public var organizationSlug: String
    public var role: Role
    /// The person the token was issued to.
    public var owner: String

    public init(tokenID: UUID, organizationID: UUID, organizationSlug: String, role: Role, owner: String) {
        self.tokenID = tokenID
        self.organizationID = organizationID
        self.organizationSlug = organizationSlug
        self.role = role
        self.owner = owner
    }

    /// Throws `forbidden` unless the role allows `permission`.
    public func require(_ permission: Permission) throws(PortalError) {
        guard role.allows(permission) else {
            throw PortalError(.forbidden, "the \(role.rawValue) role may not do this (\(permission.rawValue))")
        }
    }
}
