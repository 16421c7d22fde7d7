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
    /// Source addresses the organization's tokens may call the API and open the console from; empty: any.
    package var apiAllowList: [IPNetwork] = []
    /// Requests a second one token may make to the API (nil: the service's default, `PORTAL_API_TOKEN_RATE`).
    package var tokenRate: Int?
    /// Requests a second all the organization's tokens together may make (nil: `PORTAL_API_ORG_RATE`).
    package var organizationRate: Int?

    /// The most a policy may set a rate to.
    package static let maxRate = 100_000
    /// The most ranges an allow-list holds.
    package static let maxAllowList = 100

    package init(approvals: Approvals = .required, whileChangePending: WhileChangePending = .serveApproved) {
        self.approvals = approvals
        self.whileChangePending = whileChangePending
    }

    /// The policy as stored and returned.
    package var json: JSONValue {
        var m: [String: JSONValue] = [
            "approvals": .string(approvals.rawValue), "whileChangePending": .string(whileChangePending.rawValue),
            "apiAllowList": .array(apiAllowList.map { .string($0.description) }),
        ]
        var rates: [String: JSONValue] = [:]
        if let tokenRate { rates["perToken"] = .int(Int64(tokenRate)) }
        if let organizationRate { rates["perOrganization"] = .int(Int64(organizationRate)) }
        m["apiRateLimits"] = .object(rates)
        return .object(m)
    }

    /// Whether `address` may use the API (an empty list allows every address; an unknown address none).
    package func allows(_ address: String?) -> Bool {
        guard !apiAllowList.isEmpty else { return true }
        guard let address = address.flatMap(IPAddress.init) else { return false }
        return apiAllowList.contains { $0.contains(address) }
    }

    /// Reads a stored policy over `defaults` (members it lacks keep the default's value).
    package static func stored(_ json: JSONValue?, defaults: OrganizationPolicy) -> OrganizationPolicy {
        var policy = defaults
        let m = json?.objectValue ?? [:]
        if let v = m["approvals"]?.stringValue.flatMap(Approvals.init(rawValue:)) { policy.approvals = v }
        if let v = m["whileChangePending"]?.stringValue.flatMap(WhileChangePending.init(rawValue:)) { policy.whileChangePending = v }
        policy.apiAllowList = (m["apiAllowList"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(IPNetwork.init) }
        let rates = m["apiRateLimits"]?.objectValue ?? [:]
        if case .int(let n)? = rates["perToken"] { policy.tokenRate = Int(n) }
        if case .int(let n)? = rates["perOrganization"] { policy.organizationRate = Int(n) }
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
            case "apiAllowList":
                do { policy.apiAllowList = try IPNetwork.list(value, pointer: "/apiAllowList", limit: maxAllowList) } catch { errors += error.fieldErrors }
            case "apiRateLimits":
                guard case .object(let rates) = value else {
                    errors.append(.init(pointer: "/apiRateLimits", message: "must be an object with perToken and perOrganization"))
                    continue
                }
                for (name, rate) in rates.sorted(by: { $0.key < $1.key }) {
                    let pointer = "/apiRateLimits/\(jsonPointerEscape(name))"
                    let parsed: Int?? = switch rate {
                    case .null: .some(nil)
                    case .int(let n) where n >= 1 && n <= Int64(maxRate): .some(Int(n))
                    default: nil
                    }
                    guard let parsed else {
                        errors.append(.init(pointer: pointer, message: "must be requests a second from 1 to \(maxRate), or null for the service's default"))
                        continue
                    }
                    switch name {
                    case "perToken": policy.tokenRate = parsed
                    case "perOrganization": policy.organizationRate = parsed
                    default: errors.append(.init(pointer: pointer, message: "is not a rate limit (perToken, perOrganization)"))
                    }
                }
            default:
                errors.append(.init(pointer: "/\(jsonPointerEscape(key))", message: "is not a policy setting"))
            }
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }
        return policy
    }
}
