import Crypto
import Foundation
import Integrations
import Ledger
import PortalCore
import Synchronization

/// Cached GET responses (DESIGN section 7: off unless `config.cache` `{ttlSeconds, endpoints}` turns it
/// on), keyed on method, URL and the credential identity, so two integrations, or one after its
/// credentials change, never share an entry. Bounded in entries and body size; in memory per instance.
final class ResponseCache: Sendable {
    struct Entry: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var expires: Date
    }

    /// What `config.cache` asks for.
    struct Policy {
        var ttl: TimeInterval
        /// Endpoint templates cached; empty means none (the cache is off).
        var endpoints: [String]
        var all: Bool

        init(_ cache: IntegrationConfiguration.Cache?) {
            ttl = TimeInterval(cache?.ttlSeconds ?? 0)
            endpoints = cache?.endpoints ?? []
            all = cache?.endpoints == nil && ttl > 0
        }

        func covers(_ template: String) -> Bool {
            ttl > 0 && (all || endpoints.contains(template))
        }
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var order: [String] = []
    }

    private let capacity: Int
    private let maxBodyBytes: Int
    private let state = Mutex(State())

    init(capacity: Int, maxBodyBytes: Int) {
        self.capacity = capacity
        self.maxBodyBytes = maxBodyBytes
    }

    static func key(method: String, url: URL, integration: OutboundIntegration) -> String {
        let identity = integration.credentials.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        let credentialDigest = Hex.encode(SHA256.hash(data: Array(identity.utf8)))
        return "\(integration.id.uuidString)|\(credentialDigest)|\(method)|\(url.absoluteString)"
    }

    func get(_ key: String, now: Date) -> Entry? {
        state.withLock { s in
            guard let entry = s.entries[key] else { return nil }
            guard entry.expires > now else {
                s.entries[key] = nil
                return nil
            }
            return entry
        }
    }

    func put(_ key: String, _ entry: Entry) {
        guard capacity > 0, entry.body.count <= maxBodyBytes else { return }
        state.withLock { s in
            if s.entries[key] == nil {
                s.order.append(key)
                if s.order.count > capacity { s.entries[s.order.removeFirst()] = nil }
            }
            s.entries[key] = entry
        }
    }
}
