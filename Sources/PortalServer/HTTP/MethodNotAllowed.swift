import HTTPTypes
import Hummingbird
import PortalCore

/// Answers 405 `method_not_allowed` with an `Allow` header when the path is one the API serves but not with
/// the request's method (RFC 9110 section 15.5.6); Hummingbird's router itself answers 404 for both.
///
/// Added to the router after every route, so it wraps only the router's not-found responder: a request
/// that matched a route never passes through it.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext

    /// One documented path: its segments and the methods it is served with.
    struct PathMethods: Sendable {
        var segments: [Segment]
        var methods: [String]
    }

    /// One segment of a documented path.
    enum Segment: Sendable, Equatable {
        case literal(String)
        /// `{name}`: any one non-empty segment.
        case parameter
        /// A final `{path}`: the rest of the path, one segment or more (the routes registered with `**`).
        case rest
    }

    let paths: [PathMethods]

    /// The middleware for `routes`, the router's table (paths as in `openapi.json`).
    init(routes: [APIRoute]) {
        var methods: [String: [String]] = [:]
        var order: [String] = []
        for route in routes {
            if methods[route.path] == nil { order.append(route.path) }
            if !(methods[route.path] ?? []).contains(route.method) { methods[route.path, default: []].append(route.method) }
        }
        paths = order.map { path in
            PathMethods(segments: Self.segments(of: path), methods: Self.ordered(methods[path] ?? []))
        }
    }

    /// Answers 405 when the path is documented without this method; passes anything else on (to the 404).
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let allowed = allowedMethods(for: request.uri.path), !allowed.contains(request.method.rawValue) else {
            return try await next(request, context)
        }
        let error = PortalError(
            .methodNotAllowed, "\(request.method.rawValue) is not allowed here; the path accepts \(allowed.joined(separator: ", "))"
        )
        var response = Problem.response(for: error, requestID: context.requestID)
        response.headers[.allow] = allowed.joined(separator: ", ")
        return response
    }

    /// The methods of the most specific documented path that matches `path` (a literal segment wins over a
    /// parameter, as in the router and in OpenAPI path matching), or nil when no documented path matches.
    func allowedMethods(for path: String) -> [String]? {
        let given = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var best: (rank: [Int], methods: [String])?
        for candidate in paths {
            guard let rank = Self.rank(of: candidate.segments, matching: given) else { continue }
            if let current = best, !rank.lexicographicallyPrecedes(current.rank) { continue }
            best = (rank, candidate.methods)
        }
        return best?.methods
    }

    /// How specifically `segments` matches `given` (per segment: 0 literal, 1 parameter, 2 rest; smaller is
    /// more specific), or nil when it does not match.
    static func rank(of segments: [Segment], matching given: [String]) -> [Int]? {
        var rank: [Int] = []
        for (index, segment) in segments.enumerated() {
            switch segment {
            case .literal(let text):
                guard index < given.count, given[index] == text else { return nil }
                rank.append(0)
            case .parameter:
                guard index < given.count else { return nil }
                rank.append(1)
            case .rest:
                guard index < given.count else { return nil }
                rank.append(2)
                return rank
            }
        }
        return segments.count == given.count ? rank : nil
    }

    /// The segments of a documented path such as `/portal/integrations/{id}/proxy/{path}`.
    static func segments(of path: String) -> [Segment] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return parts.enumerated().map { index, part in
            guard part.hasPrefix("{"), part.hasSuffix("}") else { return .literal(part) }
            return index == parts.count - 1 && part == "{path}" ? .rest : .parameter
        }
    }

    /// `methods` in the order of RFC 9110's method table, others after them.
    static func ordered(_ methods: [String]) -> [String] {
        let known = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return methods.sorted { (known.firstIndex(of: $0) ?? known.count, $0) < (known.firstIndex(of: $1) ?? known.count, $1) }
    }
}
