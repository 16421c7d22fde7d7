package import Foundation
package import PortalCore

/// Where the gateway may call (DESIGN section 6): HTTPS only, and never a private, loopback, link-local or
/// otherwise internal address, checked after resolving the host, unless the host or its address is
/// allow-listed (`--outbound-allow` / `PORTAL_OUTBOUND_ALLOW`), which also permits plain HTTP to it.
///
/// Redirects are not followed by the gateway (a 3xx goes back to the caller), so a redirect cannot lead a
/// call past this check. DNS rebinding: ``check(_:)`` returns the ``Destination`` it vetted, and the gateway
/// connects to that address (``OutboundClients``), so a DNS answer that changes after the check is never
/// consulted. Refusals name the host the caller gave, never an address a DNS answer gave.
package struct OutboundPolicy: Sendable {
    /// One allow-list item: a host name (exact, case-insensitive) or an address range.
    package enum Rule: Sendable, Equatable {
        case host(String)
        case network(IPAddress, prefix: Int)
    }

    /// Resolves a host name to its addresses (empty when it does not resolve).
    package typealias Resolver = @Sendable (String) async -> [IPAddress]

    /// What ``check(_:)`` vetted: where the call may connect.
    package struct Destination: Sendable, Equatable {
        /// The URL's host, lowercased, without IPv6 brackets.
        package let host: String
        /// The vetted address to connect to, instead of resolving `host` again; nil when the host is itself an
        /// address, or a name the allow-list names (the operator trusts it, and it is connected to by name).
        package let address: IPAddress?

        /// Whether `url` has the host this destination was vetted for.
        package func covers(_ url: URL) -> Bool { OutboundPolicy.host(of: url) == host }
    }

    package let rules: [Rule]
    /// How host names are resolved: getaddrinfo, or a test's own answers.
    let resolver: Resolver

    package init(rules: [Rule] = [], resolver: @escaping Resolver = OutboundPolicy.systemResolve) {
        self.rules = rules
        self.resolver = resolver
    }

    /// Parses a comma-separated list of host names, addresses and CIDR ranges.
    package init(allowList: String, resolver: @escaping Resolver = OutboundPolicy.systemResolve) throws(PortalError) {
        var rules: [Rule] = []
        for item in allowList.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            let parts = item.split(separator: "/", maxSplits: 1).map(String.init)
            if let address = IPAddress(parts[0]) {
                let bits = address.bytes.count * 8
                let prefix = parts.count == 2 ? Int(parts[1]) : bits
                guard let prefix, (0...bits).contains(prefix) else {
                    throw PortalError(.configuration, "outbound allow-list: '\(item)' has a bad prefix length")
                }
                rules.append(.network(address, prefix: prefix))
            } else {
                guard parts.count == 1, item.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }) else {
                    throw PortalError(.configuration, "outbound allow-list: '\(item)' is neither a host name, an address nor a CIDR range")
                }
                rules.append(.host(item.lowercased()))
            }
        }
        self.rules = rules
        self.resolver = resolver
    }

    /// The host of `url` as the policy compares it: lowercased, without IPv6 brackets.
    static func host(of url: URL) -> String? {
        guard let host = url.host?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]")), !host.isEmpty else { return nil }
        return host
    }

    /// Checks a destination before a call: its scheme, and every address its host resolves to (resolved
    /// once). Returns where the call may connect; throws a `refused` error naming the reason, never an
    /// address a DNS answer gave.
    @discardableResult
    package func check(_ url: URL) async throws(PortalError) -> Destination {
        guard let scheme = url.scheme?.lowercased(), let host = Self.host(of: url) else {
            throw PortalError(.refused, "the destination URL has no scheme or host")
        }
        guard scheme == "https" || scheme == "http" else { throw PortalError(.refused, "only HTTPS destinations are allowed, not \(scheme)") }
        if rules.contains(.host(host)) { return Destination(host: host, address: nil) }
        let literal = IPAddress(host)
        let addresses: [IPAddress]
        if let literal {
            addresses = [literal]
        } else {
            addresses = await resolver(host)
            guard !addresses.isEmpty else { throw PortalError(.refused, "the destination host \(host) does not resolve") }
        }
        let destination = Destination(host: host, address: literal == nil ? addresses[0] : nil)
        let allowed = addresses.allSatisfy { address in rules.contains { rule in rule.matches(address) } }
        if allowed { return destination }
        if addresses.contains(where: \.isInternal) {
            throw literal == nil
                ? PortalError(.refused, "the destination host \(host) resolves to an internal address; allow-list it with --outbound-allow to call it")
                : PortalError(.refused, "the destination \(host) is an internal address; allow-list it with --outbound-allow to call it")
        }
        guard scheme == "https" else { throw PortalError(.refused, "plain HTTP is allowed only to allow-listed destinations; use https") }
        return destination
    }

    /// The host's addresses from getaddrinfo, in its order (RFC 6724), off the cooperative pool.
    package static let systemResolve: Resolver = { host in await resolve(host) }

    /// The host's addresses (getaddrinfo, off the cooperative pool).
    static func resolve(_ host: String) async -> [IPAddress] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var result: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else {
                    continuation.resume(returning: [])
                    return
                }
                defer { freeaddrinfo(first) }
                var addresses: [IPAddress] = []
                var cursor: UnsafeMutablePointer<addrinfo>? = first
                while let info = cursor {
                    if info.pointee.ai_family == AF_INET, let raw = info.pointee.ai_addr {
                        raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                            withUnsafeBytes(of: sin.pointee.sin_addr) { addresses.append(IPAddress(bytes: Array($0))) }
                        }
                    } else if info.pointee.ai_family == AF_INET6, let raw = info.pointee.ai_addr {
                        raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                            withUnsafeBytes(of: sin6.pointee.sin6_addr) { addresses.append(IPAddress(bytes: Array($0))) }
                        }
                    }
                    cursor = info.pointee.ai_next
                }
                continuation.resume(returning: addresses)
            }
        }
    }
}

extension OutboundPolicy.Rule {
    func matches(_ address: IPAddress) -> Bool {
        guard case .network(let network, let prefix) = self else { return false }
        return IPNetwork(address: network, prefix: prefix).contains(address)
    }
}

