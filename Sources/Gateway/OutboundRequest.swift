public import Foundation
public import PortalCore

/// An outbound HTTP request as the gateway builds it, before and after authentication.
public struct OutboundRequest: Sendable, Equatable {
    public var method: String
    /// The absolute URL, query included.
    public var url: URL
    /// Header names as given; several values of one name are separate entries.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    public static func == (a: OutboundRequest, b: OutboundRequest) -> Bool {
        a.method == b.method && a.url == b.url && a.body == b.body
            && a.headers.map { "\($0.name.lowercased()):\($0.value)" } == b.headers.map { "\($0.name.lowercased()):\($0.value)" }
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Replaces every value of header `name` with `value`.
    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
        headers.append((name, value))
    }

    /// Adds or replaces query parameter `name`.
    public mutating func setQueryItem(_ name: String, _ value: String) throws(PortalError) {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else {
            throw PortalError(.validationFailed, "the request URL cannot carry query parameters")
        }
        var items = (components.queryItems ?? []).filter { $0.name != name }
        items.append(URLQueryItem(name: name, value: value))
        components.queryItems = items
        guard let next = components.url else { throw PortalError(.validationFailed, "the request URL cannot carry query parameters") }
        url = next
    }
}
