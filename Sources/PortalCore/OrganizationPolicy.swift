/// An organization's governance policy (issue 21), set by its administrators over `PUT /portal/policy`
/// and ledgered as `policy.updated`. Organizations that never set one follow the service's defaults
/// (`PORTAL_APPROVALS`).
package struct OrganizationPolicy: Sendable, Equatable {
    /// Whether a new integration, or a change to where or how one sends data, waits for an approval.
    package enum Approvals: String, Sendable, CaseIterable {
        /// Pending until a token of another owner with `approve_integrations` approves it.
        case required
        /// In force at once; the evidence bundles flag each such change as made without approval.
        case off
    }

    /// What an approved integration does while a change to it waits for approval.
    package enum WhileChangePending: String, Sendable, CaseIterable {
        /// The approved configuration keeps serving calls; the change applies once approved.
        case serveApproved = "serve_approved"
        /// The integration makes no call until the change is approved or rejected.
        case suspend
    }

    package var approvals: Approvals
    package var whileChangePending: WhileChangePending

    package init(approvals: Approvals = .required, whileChangePending: WhileChangePending = .serveApproved) {
        self.approvals = approvals
        self.whileChangePending = whileChangePending
    }

    /// The policy as stored and returned.
    package var json: JSONValue {
        ["approvals": .string(approvals.rawValue), "whileChangePending": .string(whileChangePending.rawValue)]
    }

    /// Reads a stored policy over `defaults` (members it lacks keep the default's value).
    package static func stored(_ json: JSONValue?, defaults: OrganizationPolicy) -> OrganizationPolicy {
        var policy = defaults
        let m = json?.objectValue ?? [:]
        if let v = m["approvals"]?.stringValue.flatMap(Approvals.init(rawValue:)) { policy.approvals = v }
        if let v = m["whileChangePending"]?.stringValue.flatMap(WhileChangePending.init(rawValue:)) { policy.whileChangePending = v }
        return policy
    }

    /// Applies a request body over `current`: only the members given change; unknown members and values
    /// are 422s naming them.
    package static func patch(_ body: JSONValue, over current: OrganizationPolicy) throws(PortalError) -> OrganizationPolicy {
        guard case .object(let m) = body else {
            throw PortalError.validation([.init(pointer: "", message: "must be an object")])
        }
        var policy = current
        var errors: [PortalError.FieldError] = []
        for (key, value) in m.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "approvals":
                if let v = value.stringValue.flatMap(Approvals.init(rawValue:)) { policy.approvals = v } else {
                    errors.append(.init(pointer: "/approvals", message: "must be one of \(Approvals.allCases.map(\.rawValue).joined(separator: ", "))"))
                }
            case "whileChangePending":
                if let v = value.stringValue.flatMap(WhileChangePending.init(rawValue:)) { policy.whileChangePending = v } else {
                    errors.append(.init(
                        pointer: "/whileChangePending", message: "must be one of \(WhileChangePending.allCases.map(\.rawValue).joined(separator: ", "))"
                    ))
                }
            default:
                errors.append(.init(pointer: "/\(jsonPointerEscape(key))", message: "is not a policy setting"))
            }
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }
        return policy
    }
}
