package import Foundation

/// The outbound side as the other capabilities see it (syncs fetch pages, data-subject erasure calls the
/// provider, alert notifications are delivered): implemented by `Gateway`, injected by `PortalServer`, so
/// that no capability imports another.
package protocol OutboundTransport: Sendable {
    /// One call to an integration's API through the whole pipeline: policy, rate limit, cache, auth,
    /// retries, transforms, and its `integration_requests` row and ledger entry.
    func perform(_ call: GatewayCall, integrationID: UUID, by principal: Principal) async throws -> GatewayResult
    /// One notification to a receiver's URL: the destination policy applies, no ledger entry of its own.
    /// Returns the status and up to 64 KiB of body.
    func deliver(_ request: OutboundRequest, timeout: Duration) async throws -> (status: Int, body: [UInt8])
}

extension OutboundTransport {
    /// ``deliver(_:timeout:)`` with ten seconds.
    package func deliver(_ request: OutboundRequest) async throws -> (status: Int, body: [UInt8]) {
        try await deliver(request, timeout: .seconds(10))
    }
}

/// An outbound HTTP request as the gateway builds it, before and after authentication.
package struct OutboundRequest: Sendable, Equatable {
    package var method: String
    /// The absolute URL, query included.
    package var url: URL
    /// Header names as given; several values of one name are separate entries.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    package init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    package static func == (a: OutboundRequest, b: OutboundRequest) -> Bool {
        a.method == b.method && a.url == b.url && a.body == b.body
            && a.headers.map { "\($0.name.lowercased()):\($0.value)" } == b.headers.map { "\($0.name.lowercased()):\($0.value)" }
    }

    /// The first value of header `name` (case-insensitive).
    package func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Replaces every value of header `name` with `value`.
    package mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
        headers.append((name, value))
    }

    /// Adds or replaces query parameter `name`.
    package mutating func setQueryItem(_ name: String, _ value: String) throws(PortalError) {
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

/// One call for ``OutboundTransport/perform(_:integrationID:by:)``: raw bytes, as the proxy forwards them.
package struct GatewayCall: Sendable {
    package var method: String
    /// Path below the base URL, with its query.
    package var endpoint: String
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]
    package var timeoutMs: Int?
    /// The body as JSON, kept in `integration_requests` when the integration asks for bodies.
    package var storedBody: JSONValue?
    /// Data subjects the call discloses (their commitments go into the call's ledger entry).
    package var dataSubjects: [String]

    package init(
        method: String, endpoint: String, headers: [(name: String, value: String)], body: [UInt8], timeoutMs: Int? = nil, storedBody: JSONValue? = nil,
        dataSubjects: [String] = []
    ) {
        self.dataSubjects = dataSubjects
        self.method = method
        self.endpoint = endpoint
        self.headers = headers
        self.body = body
        self.timeoutMs = timeoutMs
        self.storedBody = storedBody
    }
}

/// The upstream's answer (or the cache's), with what the gateway did.
package struct GatewayResult: Sendable {
    package var status: Int
    /// Without hop-by-hop headers.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]
    package var attempts: Int
    package var outcome: CallOutcome
    package var cacheStatus: String
    package var durationMs: Int
    /// The call's record (`integration_requests` row and ledger entry `callId`); nil for a test of an unsaved
    /// configuration, which is recorded nowhere.
    package var callID: UUID?

    package init(
        status: Int, headers: [(name: String, value: String)], body: [UInt8], attempts: Int, outcome: CallOutcome, cacheStatus: String, durationMs: Int,
        callID: UUID?
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.attempts = attempts
        self.outcome = outcome
        self.cacheStatus = cacheStatus
        self.durationMs = durationMs
        self.callID = callID
    }
}
