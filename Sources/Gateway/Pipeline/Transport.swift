import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
package import PortalCore

/// The pipeline's transport: one attempt sent to the address the destination policy vetted, through the
/// gateway's HTTP clients, its failures turned into `upstreamFailed` / `upstreamTimeout` with secret-free
/// messages. Also the alert notifier's delivery (``OutboundTransport/deliver(_:timeout:)``).
extension Gateway {
    /// The HTTP clients' configuration (clients are made on first use): no redirects (a 3xx goes back to the
    /// caller, so no redirect can lead past the destination policy), TLS 1.2 at least, a bounded pool per host.
    static func clientConfiguration() -> HTTPClient.Configuration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        var config = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10)))
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        // A refused connection fails the attempt at once; the gateway's own retry loop (with its
        // backoff and the call's timeout) decides what happens next, instead of the pool retrying
        // silently until the deadline.
        config.connectionPool.retryConnectionEstablishment = false
        config.decompression = .disabled
        return config
    }

    /// Sends one attempt; network failures and timeouts become `upstreamFailed` / `upstreamTimeout`.
    ///
    /// The response is collected by async-http-client's accumulating delegate (bounded by the response
    /// size limit) on the connection's event loop, with no event-loop preference, so any idle pooled
    /// connection serves the call. Issue 5's profile: pinning calls to the caller's event loop made the
    /// pool close and open connections all the time (a third of the CPU), and the streaming body API added
    /// a thread hop per chunk.
    ///
    /// The connection goes to the address the policy vetted (`destination`), never to a fresh DNS answer
    /// (DNS rebinding); the host name stays the `Host` header, the SNI and the certificate's checked name.
    func send(_ request: OutboundRequest, to destination: OutboundPolicy.Destination, deadline: ContinuousClock.Instant) async throws -> UpstreamResponse {
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { throw PortalError(.upstreamTimeout, "the call's timeout passed before the upstream answered") }
        let nanoseconds = Int64(remaining.components.seconds) * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000
        do {
            var headers = HTTPHeaders()
            headers.reserveCapacity(request.headers.count)
            for (name, value) in request.headers { headers.add(name: name, value: value) }
            let outgoing = try HTTPClient.Request(
                url: request.url, method: HTTPMethod(rawValue: request.method), headers: headers,
                body: request.body.isEmpty ? nil : .bytes(request.body)
            )
            let response = try await clients.with(outgoing, to: destination) { http in
                try await http.execute(
                    request: outgoing, delegate: ResponseAccumulator(request: outgoing, maxBodySize: configuration.maxResponseBytes),
                    eventLoop: .indifferent, deadline: .now() + .nanoseconds(nanoseconds), logger: nil
                ).futureResult.get()
            }
            return UpstreamResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                body: response.body.map { Array(buffer: $0) } ?? []
            )
        } catch is ResponseAccumulator.ResponseTooBigError {
            throw PortalError(.upstreamFailed, "the upstream's response is larger than \(configuration.maxResponseBytes) bytes")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw PortalError(.upstreamTimeout, "the upstream did not answer within the call's timeout")
        } catch let error as PortalError {
            throw error
        } catch {
            logger.debug("upstream call failed", metadata: ["portal.error_type": "\(type(of: error))"])
            throw PortalError(.upstreamFailed, "the upstream could not be reached (\(Self.describe(error)))")
        }
    }

    /// A fixed, secret-free description of a client error. Never the error's own text: the HTTP client's
    /// errors quote header values (an API key among them) and DNS answers, and this message is stored in
    /// `integration_requests` and shown to auditors as `lastError`.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .remoteConnectionClosed: return "connection closed by the upstream"
            default: break
            }
            // The case's name only: the text after it (header values, hosts) is never used.
            let name = String(describing: error).prefix { $0 != "(" }.lowercased()
            if name.contains("invalidheaderfield") { return "a header name or value is not allowed in HTTP" }
            if name.contains("tls") || name.contains("ssl") { return "TLS failure" }
            return "HTTP client failure"
        }
        let name = String(describing: type(of: error))
        if name.contains("SSL") || name.contains("TLS") { return "TLS failure" }
        if name.contains("Connection") || name.contains("IOError") || name.contains("ChannelError") { return "connection failed" }
        if name.contains("Resolution") || name.contains("DNS") { return "name resolution failed" }
        return "network failure"
    }

    /// Sends one notification (alert receivers): the destination policy applies, through the shared client,
    /// without a ledger entry of its own (the notifier logs it). Returns the status and up to 64 KiB of body.
    package func deliver(_ request: OutboundRequest, timeout: Duration)  async throws -> (status: Int, body: [UInt8]) {
        let destination = try await configuration.policy.check(request.url)
        let response = try await send(request, to: destination, deadline: ContinuousClock.now + timeout)
        return (response.status, Array(response.body.prefix(64 << 10)))
    }
}

/// One upstream answer.
struct UpstreamResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}
