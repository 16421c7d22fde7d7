import Foundation
package import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A real HTTP server on 127.0.0.1 (port 0) standing in for a provider: it echoes requests, fails,
/// delays, rate-limits and counts the calls it saw, so gateway tests assert on what reached the wire.
///
/// - `ANY /echo/**`: 200 with `{method, path, query, headers, body}` (header names lowercased).
/// - `ANY /status/{code}`: that status; `?retryAfter=N` adds `Retry-After: N`.
/// - `ANY /flaky/{key}/{n}`: 503 for the first `n` calls with that key, then 200.
/// - `ANY /limited/{key}`: 429 with `Retry-After: 1` on the first call with that key, then 200.
/// - `ANY /auth401/{key}`: 401 on the first call with that key, then 200 echoing the `Authorization` header.
/// - `ANY /key/{expected}`: 200 when `X-API-Key` is `expected`, else 401.
/// - `GET /slow/{ms}`: 200 after `ms` milliseconds.
/// - `GET /big/{bytes}`: 200 with that many bytes.
/// - `GET /html`: 200 `text/html` with a script, and its own lax `Content-Security-Policy`,
///   `X-Content-Type-Options` and `Cross-Origin-Resource-Policy` (for the proxy to replace).
/// - `POST /token/{key}`: an OAuth token endpoint that issues `tok-{key}-{n}` for an hour and keeps the
///   form and `Authorization` header it was sent (`tokenRequests`), for the test to verify.
package final class TestUpstream: Sendable {
    package let port: Int
    private let counter: CallCounter

    init(port: Int, counter: CallCounter) {
        self.port = port
        self.counter = counter
    }

    /// `http://127.0.0.1:<port>`.
    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Calls seen whose path starts with `prefix`.
    package func calls(_ prefix: String) -> Int {
        counter.counts.withLock { $0.filter { $0.key.hasPrefix(prefix) }.values.reduce(0, +) }
    }

    /// The requests `POST /token/{key}` received: form fields and the `Authorization` header.
    package func tokenRequests(_ key: String) -> [(form: [String: String], authorization: String?)] {
        counter.tokenRequests.withLock { $0[key] ?? [] }
    }

    /// Runs `body` with a running upstream, then stops it.
    package static func with<T: Sendable>(_ body: @Sendable (TestUpstream) async throws -> T) async throws -> T {
        let counter = CallCounter()
        let state = UpstreamState(counter: counter)
        let router = Router()
        router.on("/echo/**", method: .get, use: state.echo)
        router.on("/echo/**", method: .post, use: state.echo)
        router.on("/echo/**", method: .put, use: state.echo)
        router.on("/echo/**", method: .patch, use: state.echo)
        router.on("/echo/**", method: .delete, use: state.echo)
        for method in [HTTPRequest.Method.get, .post] {
            router.on("/status/{code}", method: method, use: state.status)
            router.on("/flaky/{key}/{n}", method: method, use: state.flaky)
            router.on("/limited/{key}", method: method, use: state.limited)
            router.on("/auth401/{key}", method: method, use: state.unauthorizedOnce)
            router.on("/key/{expected}", method: method, use: state.keyed)
        }
        router.post("/token/{key}", use: state.token)
        router.get("/slow/{ms}", use: state.slow)
        router.get("/big/{bytes}", use: state.big)
        router.get("/html", use: state.html)
        return try await LoopbackServer.run(router, label: "upstream") { port in
            try await body(TestUpstream(port: port, counter: counter))
        }
    }
}

/// Runs a Hummingbird router on 127.0.0.1 (port 0) while `body` runs with the port, then stops it.
package enum LoopbackServer {
    package static func run<T: Sendable>(
        _ router: Router<BasicRequestContext>, label: String, _ body: @Sendable (Int) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: label)
        // Stopping the server mid-connection logs cancellation errors that mean nothing here.
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else { throw CancellationError() }
            do {
                let result = try await body(port)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}

final class CallCounter: Sendable {
    let counts = Mutex<[String: Int]>([:])
    let tokenRequests = Mutex<[String: [(form: [String: String], authorization: String?)]]>([:])
}

private struct UpstreamState: Sendable {
    let counter: CallCounter

    func count(_ request: Request) -> Int {
        counter.counts.withLock { c in
            c[request.uri.path, default: 0] += 1
            return c[request.uri.path]!
        }
    }

    @Sendable func echo(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        let body = try await request.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
        let document: [String: Any] = [
            "method": request.method.rawValue, "path": request.uri.path, "query": request.uri.query ?? "",
            "headers": headers, "body": String(buffer: body),
        ]
        let data = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An HTML page that would run script if served as is, with the upstream's own lax security headers.
    @Sendable func html(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        let headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8",
            HTTPFields.Element.Name("Content-Security-Policy")!: "script-src * 'unsafe-inline'",
            HTTPFields.Element.Name("X-Content-Type-Options")!: "sniff-away",
            HTTPFields.Element.Name("Cross-Origin-Resource-Policy")!: "cross-origin",
        ]
        let page = "<!doctype html><html><body><script>document.title = document.cookie</script></body></html>"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    @Sendable func status(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        let code = Int(context.parameters.get("code") ?? "") ?? 500
        var headers: HTTPFields = [.contentType: "application/json"]
        if let after = request.uri.queryParameters.get("retryAfter") { headers[.retryAfter] = after }
        return Response(status: .init(code: code), headers: headers, body: .init(byteBuffer: ByteBuffer(string: #"{"status":\#(code)}"#)))
    }

    @Sendable func flaky(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let seen = count(request)
        let failures = Int(context.parameters.get("n") ?? "") ?? 1
        return Response(status: seen <= failures ? .serviceUnavailable : .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"call":\#(seen)}"#)))
    }

    @Sendable func limited(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let seen = count(request)
        if seen == 1 { return Response(status: .tooManyRequests, headers: [.retryAfter: "1"]) }
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"call":\#(seen)}"#)))
    }

    @Sendable func unauthorizedOnce(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let seen = count(request)
        if seen == 1 { return Response(status: .unauthorized) }
        let authorization = request.headers[.authorization] ?? ""
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"authorization":"\#(authorization)"}"#)))
    }

    @Sendable func keyed(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        let expected = context.parameters.get("expected") ?? ""
        return Response(status: request.headers[.init("X-API-Key")!] == expected ? .ok : .unauthorized)
    }

    @Sendable func token(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let seen = count(request)
        let key = context.parameters.get("key") ?? ""
        let body = String(buffer: try await request.body.collect(upTo: 64 << 10))
        var form: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
            form[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        let authorization = request.headers[.authorization]
        counter.tokenRequests.withLock { $0[key, default: []].append((form, authorization)) }
        let answer = #"{"access_token":"tok-\#(key)-\#(seen)","token_type":"Bearer","expires_in":3600}"#
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
    }

    @Sendable func slow(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        try await Task.sleep(for: .milliseconds(Int(context.parameters.get("ms") ?? "") ?? 100))
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "{}")))
    }

    @Sendable func big(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = count(request)
        let bytes = Int(context.parameters.get("bytes") ?? "") ?? 0
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: bytes)))
    }
}
