package import Foundation
package import PortalCore
import Synchronization

/// The seed's `MetricsCollector`: every gateway call, webhook and sync reports here
/// (``ActivityObserver``), and the collector keeps, per integration:
///
/// - per-minute slots for the last hour (``ActivityStats``: counts and a latency sketch), which the flusher
///   persists as minute rows and hourly rollups in `metric_rollups` (so a restart loses at most the minute
///   in progress, and windows up to 30 days are answered without a month in memory);
/// - totals since start for the Prometheus counters and duration histogram;
/// - the run of consecutive failures, the last error, and the provider's quota as last reported.
///
/// Recording takes one lock of one of 16 shards (by integration) and touches a few counters: no I/O, no
/// allocation once the minute's slot exists.
package final class MetricsCollector: ActivityObserver, Sendable {
    /// Histogram bucket bounds (seconds), around the default latency alert's 2 s threshold.
    package static let histogramBounds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let slotCount = 60

    let clock: any WallClock
    /// Identifies this process's rollup rows (instances sharing a database each write their own).
    package let instanceID: String
    private let shards: [Shard]

    final class Shard: Sendable {
        let states = Mutex<[UUID: IntegrationState]>([:])
    }

    /// One integration's live state.
    struct IntegrationState {
        var organizationID: UUID
        var slots = [Slot?](repeating: nil, count: MetricsCollector.slotCount)
        var totals = ActivityStats()
        var buckets = [UInt64](repeating: 0, count: MetricsCollector.histogramBounds.count + 1)
        var consecutiveFailures = 0
        var lastError: LastError?
        var quota: Double?
        /// Minutes up to this one are persisted.
        var flushedThrough: Int64
        /// This instance's rollup of the hour being filled: (hour start minute, stats).
        var hour: (start: Int64, stats: ActivityStats)?

        init(organizationID: UUID, minute: Int64) {
            self.organizationID = organizationID
            flushedThrough = minute - 1
        }

        mutating func observe(_ minute: Int64, _ body: (inout IntegrationState, Int) -> Void) {
            body(&self, slot(minute))
        }

        mutating func slot(_ minute: Int64) -> Int {
            let index = Int(minute % Int64(MetricsCollector.slotCount))
            if slots[index]?.minute != minute { slots[index] = Slot(minute: minute) }
            return index
        }
    }

    struct Slot {
        var minute: Int64
        var stats = ActivityStats()
    }

    /// The seed's `lastError`.
    package struct LastError: Sendable, Equatable {
        package var timestamp: Date
        package var message: String
        package var endpoint: String
    }

    package init(clock: any WallClock = SystemWallClock(), instanceID: String = UUID().uuidString.lowercased()) {
        self.clock = clock
        self.instanceID = instanceID
        shards = (0..<16).map { _ in Shard() }
    }

    private func shard(_ id: UUID) -> Shard { shards[Int(id.uuid.15 & 15)] }

    static func minute(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / 60).rounded(.down)) }

    // MARK: Recording

    package func observe(_ activity: Activity) {
        let minute = Self.minute(clock.now())
        switch activity {
        case .call(let call):
            // Parsed once, outside the lock.
            let outcome = CallOutcome(rawValue: call.outcome) ?? .networkError
            let category = call.category.flatMap(ErrorCategory.init(rawValue:))
            let seconds = Double(call.durationMicros) / 1_000_000
            let bucket = Self.histogramBounds.firstIndex { seconds <= $0 } ?? Self.histogramBounds.count
            let quota: Double? = if let remaining = call.quotaRemaining, let limit = call.quotaLimit, limit > 0 {
                min(1, max(0, Double(remaining) / Double(limit)))
            } else { nil }
            update(call.integrationID, call.organizationID, minute) { state, slot in
                state.slots[slot]!.stats.record(call, outcome: outcome, category: category)
                state.totals.record(call, outcome: outcome, category: category, sketch: false)
                if !outcome.isRefusedLocally {
                    state.buckets[bucket] += 1
                    state.consecutiveFailures = outcome == .success ? 0 : state.consecutiveFailures + 1
                }
                if outcome != .success {
                    state.lastError = LastError(timestamp: call.at, message: call.error ?? outcome.rawValue, endpoint: call.endpoint)
                }
                if let quota { state.quota = quota }
            }
        case .webhook(let organizationID, let integrationID, let status):
            update(integrationID, organizationID, minute) { state, slot in
                state.slots[slot]!.stats.record(webhook: status)
                state.totals.record(webhook: status)
            }
        case .syncRecords(let organizationID, let integrationID, let counts):
            update(integrationID, organizationID, minute) { state, slot in
                state.slots[slot]!.stats.record(sync: counts)
                state.totals.record(sync: counts)
            }
        case .tokenRefresh(let organizationID, let integrationID, let success):
            update(integrationID, organizationID, minute) { state, slot in
                state.slots[slot]!.stats.record(tokenRefresh: success)
                state.totals.record(tokenRefresh: success)
            }
        }
    }

    private func update(_ id: UUID, _ organizationID: UUID, _ minute: Int64, _ body: (inout IntegrationState, Int) -> Void) {
        shard(id).states.withLock { states in
            // One hash lookup, and the state mutated in place.
            states[id, default: IntegrationState(organizationID: organizationID, minute: minute)].observe(minute, body)
        }
    }

    /// Forgets an integration (deleted): its series leave the exposition.
    package func forget(_ id: UUID) {
        _ = shard(id).states.withLock { $0.removeValue(forKey: id) }
    }

    // MARK: Reading

    /// What the exposition and the health check read of one integration.
    package struct Snapshot: Sendable {
        package var organizationID: UUID
        package var totals: ActivityStats
        /// Cumulative histogram counts, one per bound and +Inf last (not yet cumulative: per bucket).
        package var buckets: [UInt64]
        package var consecutiveFailures: Int
        package var lastError: LastError?
        package var quota: Double?
        /// This instance's last 5 minutes and last hour.
        package var last5m: ActivityStats
        package var last1h: ActivityStats
    }

    /// Snapshots of every integration seen (of one organization when given).
    package func snapshots(organizationID: UUID? = nil) -> [UUID: Snapshot] {
        let now = Self.minute(clock.now())
        var out: [UUID: Snapshot] = [:]
        for shard in shards {
            shard.states.withLock { states in
                for (id, state) in states where organizationID == nil || state.organizationID == organizationID {
                    var five = ActivityStats()
                    var hour = ActivityStats()
                    for case let slot? in state.slots where slot.minute > now - 60 && slot.minute <= now {
                        hour.merge(slot.stats)
                        if slot.minute > now - 5 { five.merge(slot.stats) }
                    }
                    out[id] = Snapshot(
                        organizationID: state.organizationID, totals: state.totals, buckets: state.buckets, consecutiveFailures: state.consecutiveFailures,
                        lastError: state.lastError, quota: state.quota, last5m: five, last1h: hour
                    )
                }
            }
        }
        return out
    }

    /// The integration's live facts (consecutive failures, last error, quota), or nil when not seen.
    package func live(_ id: UUID) -> (consecutiveFailures: Int, lastError: LastError?, quota: Double?)? {
        shard(id).states.withLock { states in
            states[id].map { ($0.consecutiveFailures, $0.lastError, $0.quota) }
        }
    }

    /// Minutes after `after` (this instance's, not yet persisted) of one integration, merged.
    func unflushed(_ id: UUID, since minute: Int64) -> ActivityStats {
        shard(id).states.withLock { states in
            var stats = ActivityStats()
            guard let state = states[id] else { return stats }
            for case let slot? in state.slots where slot.minute > state.flushedThrough && slot.minute >= minute { stats.merge(slot.stats) }
            return stats
        }
    }

    /// This instance's unpersisted minutes (since `minute`) of one integration, by minute.
    func unflushedMinutes(_ id: UUID, since minute: Int64) -> [Int64: ActivityStats] {
        shard(id).states.withLock { states in
            var out: [Int64: ActivityStats] = [:]
            guard let state = states[id] else { return out }
            for case let slot? in state.slots where slot.minute > state.flushedThrough && slot.minute >= minute { out[slot.minute, default: ActivityStats()].merge(slot.stats) }
            return out
        }
    }

    /// This instance's unpersisted minutes (since `minute`) of every integration of an organization, merged per integration.
    func unflushed(organizationID: UUID, since minute: Int64) -> [UUID: ActivityStats] {
        var out: [UUID: ActivityStats] = [:]
        for shard in shards {
            shard.states.withLock { states in
                for (id, state) in states where state.organizationID == organizationID {
                    var stats = ActivityStats()
                    for case let slot? in state.slots where slot.minute > state.flushedThrough && slot.minute >= minute { stats.merge(slot.stats) }
                    if !stats.isEmpty { out[id] = stats }
                }
            }
        }
        return out
    }

    // MARK: Persisting

    /// The rows that persist every completed minute not yet persisted (minutes before `before`), and the
    /// hours they belong to; ``markFlushed(_:)`` records that they were written.
    package struct Flush: Sendable {
        package var rows: [MetricRollupRowValue]
        var marks: [UUID: (through: Int64, hour: (start: Int64, stats: ActivityStats)?)]
    }

    /// A rollup row before it becomes a `MetricRollupRow` (Storage's type).
    package struct MetricRollupRowValue: Sendable {
        package var organizationID: UUID
        package var integrationID: UUID
        package var resolution: Int
        package var bucketStart: Int64
        package var stats: ActivityStats
    }

    package func pendingFlush(before minute: Int64? = nil) -> Flush {
        let current = minute ?? Self.minute(clock.now())
        var flush = Flush(rows: [], marks: [:])
        for shard in shards {
            shard.states.withLock { states in
                for (id, state) in states {
                    let done = state.slots.compactMap { $0 }.filter { $0.minute > state.flushedThrough && $0.minute < current }.sorted { $0.minute < $1.minute }
                    guard !done.isEmpty else { continue }
                    var hour = state.hour
                    var hoursTouched: [(start: Int64, stats: ActivityStats)] = []
                    for slot in done {
                        flush.rows.append(.init(organizationID: state.organizationID, integrationID: id, resolution: 60, bucketStart: slot.minute * 60, stats: slot.stats))
                        let start = slot.minute - slot.minute % 60
                        if hour?.start != start {
                            if let h = hour { hoursTouched.append(h) }
                            hour = (start, ActivityStats())
                        }
                        hour!.stats.merge(slot.stats)
                    }
                    if let h = hour { hoursTouched.append(h) }
                    for h in hoursTouched where !h.stats.isEmpty {
                        flush.rows.append(.init(organizationID: state.organizationID, integrationID: id, resolution: 3600, bucketStart: h.start * 60, stats: h.stats))
                    }
                    flush.marks[id] = (done.last!.minute, hour)
                }
            }
        }
        return flush
    }

    /// Records that `flush` was written.
    package func markFlushed(_ flush: Flush) {
        for (id, mark) in flush.marks {
            shard(id).states.withLock { states in
                guard states[id] != nil, states[id]!.flushedThrough < mark.through else { return }
                states[id]!.flushedThrough = mark.through
                states[id]!.hour = mark.hour
            }
        }
    }

    // MARK: Size

    /// Integrations tracked, and an estimate of the bytes their state holds.
    package func footprint() -> (integrations: Int, bytes: Int) {
        var count = 0
        var bytes = 0
        for shard in shards {
            shard.states.withLock { states in
                count += states.count
                for state in states.values {
                    bytes += MemoryLayout<IntegrationState>.size + 64
                    for case let slot? in state.slots { bytes += Self.bytes(slot.stats) }
                    bytes += Self.bytes(state.totals) + state.slots.capacity * MemoryLayout<Slot?>.stride
                    if let h = state.hour { bytes += Self.bytes(h.stats) }
                }
            }
        }
        return (count, bytes)
    }

    static func bytes(_ s: ActivityStats) -> Int {
        // Four counter arrays (with their headers) and the sketch's buckets.
        MemoryLayout<ActivityStats>.size + 4 * 32 + (s.outcomes.count + s.categories.count + s.webhooks.count + s.sync.count) * 8 + s.latency.bucketBytes
    }
}
