package import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A provider's user directory on 127.0.0.1 (port 0) for sync tests and the sync benchmark: users change
/// between syncs, and the same list is served with the three pagination styles.
///
/// - `GET /cursor/users?limit=&after=&updated_since=`: `{"data": [...], "meta": {"next": cursor|null}}`.
/// - `GET /page/users?page=&per_page=&updated_since=`: `{"items": [...], "total": n}`; a short page is the last.
/// - `GET /link/users?page=&per_page=&updated_since=`: a bare array, with `Link: <...>; rel="next"`.
///
/// Users are ordered by id; `before` keeps the ids before it; `updated_since` keeps those updated after it (each change moves the provider's
/// clock a second on). ``throttle(_:)`` makes the
/// next requests answer 429 with `Retry-After: 1`.
package final class FakeProvider: Sendable {
    package struct User: Sendable {
        package var id: String
        package var email: String
        package var name: String
        package var plan: String
        package var updatedAt: Date
    }

    struct State {
        var users: [String: User] = [:]
        var throttled = 0
        var throttleFrom = 0
        var seeded = 0
        /// The users ordered by id, rebuilt after a change (pages of a large list stay cheap).
        var ordered: [User]?
        var requests = 0
        var throttledAnswers = 0
        /// How long each cursor page takes to answer, in milliseconds.
        var delay = 0
    }

    /// The provider's data, shared with its request handlers.
    final class Store: Sendable {
        let state = Mutex(State())
        let clock = Mutex(Date(timeIntervalSince1970: 1_790_000_000))
    }

    package let port: Int
    let store: Store

    init(port: Int, store: Store) {
        self.port = port
        self.store = store
    }

    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Adds `count` users `u-000001`... (continuing the numbering).
    package func seed(_ count: Int) {
        let now = tick()
        store.state.withLock { s in
            let start = s.seeded
            s.seeded += count
            s.ordered = nil
            for n in start..<(start + count) {
                let id = String(format: "u-%06d", n + 1)
                s.users[id] = User(id: id, email: "user\(n + 1)@example.test", name: "User \(n + 1)", plan: "free", updatedAt: now)
            }
        }
    }

    /// Changes a user's plan (and its `updated_at`).
    package func update(_ id: String, plan: String, name: String? = nil) {
        let now = tick()
        store.state.withLock { s in
            s.ordered = nil
            s.users[id]?.plan = plan
            if let name { s.users[id]?.name = name }
            s.users[id]?.updatedAt = now
        }
    }

    package func delete(_ id: String) {
        store.state.withLock { s in
            s.ordered = nil
            s.users.removeValue(forKey: id)
        }
    }

    /// `count` requests get 429, starting with request number `from` (the next one by default).
    package func throttle(_ count: Int, from: Int? = nil) {
        store.state.withLock { s in
            s.throttled = count
            s.throttleFrom = from ?? (s.requests + 1)
        }
    }

    /// Makes every cursor page take `milliseconds` to answer (a slow provider).
    package func slow(_ milliseconds: Int) {
        store.state.withLock { $0.delay = milliseconds }
    }

    package var requests: Int { store.state.withLock { $0.requests } }
    package var throttledAnswers: Int { store.state.withLock { $0.throttledAnswers } }

    /// Every user as a sync stores it without a mapping.
    package func snapshot() -> [String: [String: String]] {
        store.state.withLock { s in s.users.mapValues { FakeProvider.fields($0) } }
    }

    /// Each change moves the provider's clock one second on, so `updated_since` separates them.
    private func tick() -> Date {
        store.clock.withLock { d in
            d = d.addingTimeInterval(1)
            return d
        }
    }

    static func fields(_ user: User) -> [String: String] {
        ["id": user.id, "email": user.email, "name": user.name, "plan": user.plan, "updated_at": FakeProvider.format(user.updatedAt)]
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// Runs `body` with a running provider, then stops it.
    package static func with<T: Sendable>(_ body: @Sendable (FakeProvider) async throws -> T) async throws -> T {
        let store = Store()
        let router = Router()
        let handler = Handler(store: store)
        router.get("/cursor/users", use: handler.cursor)
        router.get("/page/users", use: handler.page)
        router.get("/link/users", use: handler.link)
        return try await LoopbackServer.run(router, label: "fake-provider") { port in
            try await body(FakeProvider(port: port, store: store))
        }
    }

    private struct Handler: Sendable {
        let store: Store

        /// The users after `updated_since`, ordered by id; nil when this request is throttled.
        func users(_ request: Request) -> [User]? {
            let since = request.uri.queryParameters.get("updated_since").flatMap { ISO8601DateFormatter().date(from: $0) }
            let before: String? = request.uri.queryParameters.get("before").map { String($0) }
            return store.state.withLock { s -> [User]? in
                s.requests += 1
                if s.throttled > 0, s.requests >= s.throttleFrom {
                    s.throttled -= 1
                    s.throttledAnswers += 1
                    return nil
                }
                if s.ordered == nil { s.ordered = s.users.values.sorted { $0.id < $1.id } }
                guard since != nil || before != nil else { return s.ordered! }
                return s.ordered!.filter { (since == nil || $0.updatedAt > since!) && (before == nil || $0.id < before!) }
            }
        }

        func json(_ value: Any, headers: HTTPFields = [:]) throws -> Response {
            var fields = headers
            fields[.contentType] = "application/json"
            return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]))))
        }

        var tooMany: Response {
            Response(status: .tooManyRequests, headers: [.retryAfter: "1", .contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"error":"slow down"}"#)))
        }

        @Sendable func cursor(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
            let delay = store.state.withLock { $0.delay }
            if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
            guard let all = users(request) else { return tooMany }
            let limit = min(request.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100, 1000)
            let after = request.uri.queryParameters.get("after")
            var rest = all[...]
            if let after {
                // The first user after the cursor, by binary search (ids are ordered).
                var low = 0, high = all.count
                while low < high {
                    let mid = (low + high) / 2
                    if all[mid].id <= after { low = mid + 1 } else { high = mid }
                }
                rest = all[low...]
            }
            let page = Array(rest.prefix(limit))
            let next: Any = rest.count > limit ? page.last!.id : NSNull()
            return try json(["data": page.map(FakeProvider.fields), "meta": ["next": next]])
        }

        @Sendable func page(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
            guard let all = users(request) else { return tooMany }
            let size = min(request.uri.queryParameters.get("per_page").flatMap { Int($0) } ?? 100, 1000)
            let number = max(request.uri.queryParameters.get("page").flatMap { Int($0) } ?? 1, 1)
            let page = Array(all.dropFirst((number - 1) * size).prefix(size))
            return try json(["items": page.map(FakeProvider.fields), "total": all.count])
        }

        @Sendable func link(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
            guard let all = users(request) else { return tooMany }
            let size = min(request.uri.queryParameters.get("per_page").flatMap { Int($0) } ?? 100, 1000)
            let number = max(request.uri.queryParameters.get("page").flatMap { Int($0) } ?? 1, 1)
            let page = Array(all.dropFirst((number - 1) * size).prefix(size))
            var headers: HTTPFields = [:]
            if number * size < all.count {
                let host = request.head.authority ?? "127.0.0.1"
                var query = "page=\(number + 1)&per_page=\(size)"
                if let since = request.uri.queryParameters.get("updated_since") {
                    query += "&updated_since=" + (since.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? since)
                }
                headers[.init("Link")!] = "<http://\(host)/link/users?\(query)>; rel=\"next\", <http://\(host)/link/users?page=1&per_page=\(size)>; rel=\"first\""
            }
            return try json(page.map(FakeProvider.fields), headers: headers)
        }
    }
}
