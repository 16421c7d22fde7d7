/// The outcome classes of an outbound call (DESIGN section 7): what the gateway records, monitoring
/// counts and alerts on. One enum for all of them, in a fixed order (monitoring's count arrays use it).
package enum CallOutcome: String, Sendable, CaseIterable {
    case success, clientError = "client_error", rateLimited = "rate_limited", serverError = "server_error"
    case networkError = "network_error", throttled, refused

    /// The class of an upstream answer's status.
    package static func of(status: Int) -> CallOutcome {
        switch status {
        case 200..<400: .success
        case 429: .rateLimited
        case 400..<500: .clientError
        default: .serverError
        }
    }

    /// The error category (DESIGN section 7) of an upstream answer's status, or of no answer at all (nil:
    /// `network`); nil for a success.
    package static func category(status: Int?) -> String? {
        guard let status else { return "network" }
        switch status {
        case 200..<400: return nil
        case 401, 403: return "authentication"
        case 429: return "rate_limit"
        case 400, 413, 415, 422: return "data"
        case 400..<500: return "business"
        // The provider's own failure: it answered, so it is no network error (DNS, connect, timeout).
        default: return "server"
        }
    }

    /// Whether the portal refused the call itself (not an upstream call).
    package var isRefusedLocally: Bool { self == .throttled || self == .refused }

    /// The slot in count arrays (the order of `allCases`, without allocating it).
    package var index: Int {
        switch self {
        case .success: 0
        case .clientError: 1
        case .rateLimited: 2
        case .serverError: 3
        case .networkError: 4
        case .throttled: 5
        case .refused: 6
        }
    }
}
