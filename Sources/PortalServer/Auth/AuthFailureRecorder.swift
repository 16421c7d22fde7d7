package import Crypto
import Foundation
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
import Synchronization
import Webhooks

/// Aggregates unauthenticated and refused traffic per key and minute, so that a flood of
/// bad requests costs a few ledger entries, not one each:
///
/// - 401s on authenticated routes: `auth.failures` in the platform ledger, one per minute (count, route
///   templates, hashed sources);
/// - refused webhook deliveries: `webhook.rejected` per endpoint, reason and status;
/// - uses of an expired API token: `apitoken.used_expired` per token;
/// - refusals by role (403) and cross-organization 404s: `access.denied` per token, route, method and status.
///
/// For the last three, a key's first refusal of a minute is appended at once (count 1), and the others of
/// that minute in one entry when the minute ends (`count`, `window`, `first`, `last`). Source addresses
/// are kept as keyed hashes (HMAC-SHA256 under a key derived from the master key), never the addresses.
/// Pending counts are flushed when their minute ends and on graceful shutdown; memory is bounded by
/// ``FailureAggregator/Limits``.
package final class AuthFailureRecorder: Service, WebhookRejectionRecorder {
    private let audit: any AuditTrail
    private let key: SymmetricKey
    /// The clock refusals are timed by.
    package let clock: any WallClock
    private let logger: Logger?
    private let interval: Duration
    private let state: Mutex<FailureAggregator>
    /// Aggregates whose append failed, retried at the next flush (bounded).
    private let unwritten = Mutex<[AuditEvent]>([])

    /// The most aggregates kept for a retry while the ledger cannot be written.
    static let unwrittenLimit = 10_000

    /// A recorder appending to `audit`, hashing sources under `key`, flushing ended minutes every `interval`.
    package init(
        audit: any AuditTrail, key: SymmetricKey, clock: any WallClock, limits: FailureAggregator.Limits = .init(),
        interval: Duration = .seconds(1), logger: Logger? = nil
    ) {
        self.audit = audit
        self.key = key
        self.clock = clock
        self.logger = logger
        self.interval = interval
        state = Mutex(FailureAggregator(limits: limits))
    }

    /// The keyed hash of a source address (16 hex digits).
    func source(_ address: String?) -> String? {
        address.map { String(Hex.encode(HMAC<SHA256>.authenticationCode(for: Data($0.utf8), using: key)).prefix(16)) }
    }

    /// Counts one 401 on `route` from `address`.
    package func note(route: String, address: String?) {
        let now = clock.now()
        let event = AuditEvent(
            organizationID: Organization.platformID, type: .authFailures, actor: AuditEvent.system("auth"),
            data: ["minute": .string(Timestamp.rfc3339(FailureAggregator.start(FailureAggregator.minute(now))))], time: now
        )
        var collect = ["routes": route]
        if let source = source(address) { collect["sources"] = source }
        _ = state.withLock { $0.note(event, keyFields: [], collect: collect, immediateFirst: false) }
    }

    /// Records the refusal `event`, counted under the values of `keyFields` (and `sum`'s integers added
    /// up) with the others of its minute; appended at once when it is the key's first of the minute.
    /// `address` is the peer's, hashed (by default the one ``RequestSource`` carries for this request).
    package func refused(_ event: AuditEvent, keyFields: [String], sum: [String] = [], address: String? = RequestSource.address) async throws {
        let collect = source(address).map { ["sources": $0] } ?? [:]
        let outcome = state.withLock { $0.note(event, keyFields: keyFields, sum: sum, collect: collect, immediateFirst: true) }
        guard outcome == .first else { return }
        try await audit.append([FailureAggregator.single(event, collect: collect)])
    }

    /// A refused webhook delivery: counted per endpoint, reason and status, its body sizes added up.
    package func rejected(_ event: AuditEvent) async throws {
        try await refused(event, keyFields: ["endpoint", "reason", "status"], sum: ["bodyBytes"])
    }

    /// Refusals counted and not yet appended.
    package var pending: Int { state.withLock { $0.pending } }

    /// Appends the aggregates of every minute that has ended (all of them when `force`); an aggregate the
    /// ledger refuses is kept and retried at the next flush.
    package func flush(force: Bool = false) async throws {
        let minuteNow = FailureAggregator.minute(clock.now())
        let taken = state.withLock { $0.take(before: force ? nil : minuteNow) }
        let entries = unwritten.withLock { kept in
            defer { kept.removeAll() }
            return kept
        } + taken
        guard !entries.isEmpty else { return }
        do {
            try await audit.append(entries)
        } catch {
            let dropped = unwritten.withLock { kept in
                kept = entries + kept
                let excess = max(0, kept.count - Self.unwrittenLimit)
                kept.removeFirst(excess)
                return excess
            }
            logger?.warning("failure counts not yet appended to the ledger; retried at the next flush", metadata: [
                "portal.entries": "\(entries.count)", "portal.dropped": "\(dropped)",
            ])
            throw error
        }
    }

    /// Flushes ended minutes every `interval` until shutdown, then everything still pending.
    package func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                break
            }
            try? await flush()
        }
        // Graceful shutdown: the minute in progress too (the ledger sequencer stops after this service).
        try? await flush(force: true)
    }
}

/// The peer address of the request being served, for the refusals recorded while serving it (set by the
/// route table around open routes, such as the webhook receiver, whose services do not see the request).
package enum RequestSource {
    @TaskLocal package static var address: String?
}
