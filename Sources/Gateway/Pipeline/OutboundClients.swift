import AsyncHTTPClient
import Foundation
import PortalCore
import Synchronization

/// The gateway's HTTP clients. A call whose host name the policy resolved goes through a client pinned to
/// the vetted address: async-http-client's `dnsOverride` (a client-wide setting, hence one client per host
/// and address) makes the connection to that address without resolving the name again, while the name stays
/// the `Host` header, the TLS SNI and the name the certificate is verified against. Address literals and
/// allow-listed names go through one client that connects by name.
final class OutboundClients: Sendable {
    /// A pinned client's identity: the host exactly as async-http-client reads it from the URL, and the address.
    struct Key: Hashable {
        var host: String
        var address: String
    }

    /// A pinned client and its use.
    private struct Entry {
        var client: HTTPClient
        /// Calls using the client now; only an unused client is evicted.
        var leases: Int
        var lastUsed: UInt64
        /// When it was made (its lease ticket): a release after a shutdown does not count against a new client.
        var made: UInt64
    }

    /// The clients made so far.
    private struct State {
        var byName: HTTPClient?
        var pinned: [Key: Entry] = [:]
        var tick: UInt64 = 0
    }

    private let state = Mutex(State())
    let configuration: HTTPClient.Configuration
    /// Pinned clients kept at most (unused ones beyond it are shut down, least recently used first).
    let capacity: Int

    init(configuration: HTTPClient.Configuration, capacity: Int = 64) {
        self.configuration = configuration
        self.capacity = capacity
    }

    /// The configuration of a client that connects to `address` whenever a URL names `host`.
    static func pinned(_ configuration: HTTPClient.Configuration, host: String, to address: IPAddress) -> HTTPClient.Configuration {
        var pinned = configuration
        pinned.dnsOverride = [host: address.description]
        return pinned
    }

    /// Runs `body` with the client for `request`: pinned to `destination`'s vetted address when it has one.
    /// Refuses a request whose host is not the destination's (it was vetted for another host).
    func with<T>(
        _ request: HTTPClient.Request, to destination: OutboundPolicy.Destination, _ body: (HTTPClient) async throws -> T
    ) async throws -> T {
        guard destination.covers(request.url) else {
            throw PortalError(.refused, "the request's host is not the one the outbound policy checked")
        }
        guard let address = destination.address else { return try await body(byName()) }
        let key = Key(host: request.host, address: address.description)
        let (client, made, retired) = lease(key, address: address)
        defer { release(key, made: made) }
        // Evicted clients were unused and are no longer handed out: closing them waits for no call.
        for old in retired { try? await old.shutdown() }
        return try await body(client)
    }

    /// The client that connects by name, made on first use.
    private func byName() -> HTTPClient {
        state.withLock { state in
            if let client = state.byName { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            state.byName = made
            return made
        }
    }

    /// The pinned client for `key` (made when missing), counted as in use; and the unused clients evicted
    /// to stay within the capacity, for the caller to shut down.
    private func lease(_ key: Key, address: IPAddress) -> (HTTPClient, made: UInt64, retired: [HTTPClient]) {
        state.withLock { state in
            state.tick += 1
            if var entry = state.pinned[key] {
                entry.leases += 1
                entry.lastUsed = state.tick
                state.pinned[key] = entry
                return (entry.client, entry.made, [])
            }
            var retired: [HTTPClient] = []
            while state.pinned.count >= capacity,
                let idle = state.pinned.filter({ $0.value.leases == 0 }).min(by: { $0.value.lastUsed < $1.value.lastUsed })
            {
                retired.append(idle.value.client)
                state.pinned[idle.key] = nil
            }
            let client = HTTPClient(
                eventLoopGroupProvider: .singleton, configuration: Self.pinned(configuration, host: key.host, to: address)
            )
            state.pinned[key] = Entry(client: client, leases: 1, lastUsed: state.tick, made: state.tick)
            return (client, state.tick, retired)
        }
    }

    /// Ends one use of the pinned client for `key`.
    private func release(_ key: Key, made: UInt64) {
        state.withLock { state in
            guard var entry = state.pinned[key], entry.made == made else { return }
            entry.leases -= 1
            state.pinned[key] = entry
        }
    }

    /// How many pinned clients are kept (tests).
    var pinnedCount: Int { state.withLock { $0.pinned.count } }

    /// Shuts every client down (idempotent; a later call makes new ones).
    func shutdown() async throws {
        let clients = state.withLock { state -> [HTTPClient] in
            defer { state = State(tick: state.tick) }
            return (state.byName.map { [$0] } ?? []) + state.pinned.values.map(\.client)
        }
        var failure: (any Error)?
        for client in clients {
            do { try await client.shutdown() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}
