public import Crypto
import Foundation
public import Ledger
import Logging
public import PortalCore
public import ServiceLifecycle
import Synchronization

/// Aggregates unauthenticated requests (401s) per minute into `auth.failures` entries of the platform
/// ledger: count, route templates, and source addresses as keyed hashes (HMAC-SHA256 under a key derived
/// from the master key), never the addresses themselves.
public final class AuthFailureRecorder: Service {
    private struct Minute {
        var start: Int64
        var count = 0
        var routes: Set<String> = []
        var sources: Set<String> = []
    }

    private let audit: any AuditTrail
    private let key: SymmetricKey
    private let clock: any WallClock
    private let current = Mutex<Minute?>(nil)

    public init(audit: any AuditTrail, key: SymmetricKey, clock: any WallClock) {
        self.audit = audit
        self.key = key
        self.clock = clock
    }

    /// Counts one 401 on `route` from `address`.
    public func note(route: String, address: String?) {
        let minute = Int64(clock.now().timeIntervalSince1970 / 60)
        let source = address.map { Hex.encode(HMAC<SHA256>.authenticationCode(for: Data($0.utf8), using: key)).prefix(16) }.map(String.init)
        current.withLock { state in
            if state == nil { state = Minute(start: minute) }
            state!.count += 1
            if state!.routes.count < 50 { state!.routes.insert(route) }
            if let source, state!.sources.count < 200 { state!.sources.insert(source) }
        }
    }

    /// Appends the aggregate of every minute that has ended (all of them when `force`).
    public func flush(force: Bool = false) async throws {
        let minuteNow = Int64(clock.now().timeIntervalSince1970 / 60)
        let finished = current.withLock { state -> Minute? in
            guard let s = state, force || s.start < minuteNow else { return nil }
            state = nil
            return s
        }
        guard let finished, finished.count > 0 else { return }
        let start = Date(timeIntervalSince1970: TimeInterval(finished.start * 60))
        try await audit.append([AuditEvent(
            organizationID: Organization.platformID, type: "auth.failures", actor: AuditEvent.system("auth"),
            data: [
                "minute": .string(Timestamp.rfc3339(start)), "count": .int(Int64(finished.count)),
                "routes": .array(finished.routes.sorted().map(JSONValue.string)),
                "sources": .array(finished.sources.sorted().map(JSONValue.string)),
            ],
            time: start
        )])
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            try? await flush()
        }
        try? await flush(force: true)
    }
}
