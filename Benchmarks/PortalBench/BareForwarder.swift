import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// The second reference point: a bare Hummingbird route forwarding to the upstream through
/// async-http-client with its defaults (no auth, rate limit, ledger or metrics), in this process.
/// Whatever the gateway costs beyond it is the pipeline's own.
enum BareForwarder {
    /// Runs the forwarder on `port` until `body` returns.
    static func with<T: Sendable>(port: Int, upstream: String, _ body: @Sendable () async throws -> T) async throws -> T {
        let router = Router()
        router.get("/**") { request, _ -> Response in
            let outgoing = HTTPClientRequest(url: upstream + request.uri.path)
            let response = try await HTTPClient.shared.execute(outgoing, timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 10 << 20)
            var headers = HTTPFields()
            if let type = response.headers.first(name: "content-type") { headers[.contentType] = type }
            return Response(status: .init(code: Int(response.status.code)), headers: headers, body: .init(byteBuffer: bytes))
        }
        var logger = Logger(label: "bare-forwarder")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            do {
                let result = try await body()
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}
