import Foundation
package import PortalCore

package enum ErrorCategory: String, Sendable, CaseIterable {
    /// The seed's five, and `server`: the provider answered 5xx (its own failure, which is no network
    /// error: on-call engineers read `network` as DNS, connect and timeouts).
    case authentication, rateLimit = "rate_limit", network, data, business, server

    var index: Int {
        switch self {
        case .authentication: 0
        case .rateLimit: 1
        case .network: 2
        case .data: 3
        case .business: 4
        case .server: 5
        }
    }
}

extension Activity.WebhookStatus {
    var index: Int {
        switch self {
        case .received: 0
        case .rejected: 1
        case .duplicate: 2
        case .processed: 3
        case .failed: 4
        case .deadLettered: 5
        }
    }
}

extension Activity.SyncOperation {
    var index: Int {
        switch self {
        case .fetched: 0
        case .created: 1
        case .updated: 2
        case .unchanged: 3
        case .deleted: 4
        case .conflicts: 5
        case .rejected: 6
        }
    }
}

/// What happened to one integration during a span of time (a minute slot, an hour's rollup, or a window
/// merged from them): counts by outcome, category, webhook status and sync operation, token refreshes, and
/// the latency sketch of its upstream calls. Merging two is exact.
package struct ActivityStats: Sendable, Equatable {
    package var outcomes = [UInt64](repeating: 0, count: CallOutcome.allCases.count)
    package var categories = [UInt64](repeating: 0, count: ErrorCategory.allCases.count)
    package var webhooks = [UInt64](repeating: 0, count: Activity.WebhookStatus.allCases.count)
    package var sync = [UInt64](repeating: 0, count: Activity.SyncOperation.allCases.count)
    package var tokenRefreshes: UInt64 = 0
    package var tokenRefreshFailures: UInt64 = 0
    /// Sum of upstream call durations, in microseconds.
    package var durationMicros: UInt64 = 0
    package var latency = LatencySketch()

    package init() {}

    package subscript(outcome: CallOutcome) -> UInt64 { outcomes[outcome.index] }
    package subscript(category: ErrorCategory) -> UInt64 { categories[category.index] }
    package subscript(webhook: Activity.WebhookStatus) -> UInt64 { webhooks[webhook.index] }
    package subscript(sync operation: Activity.SyncOperation) -> UInt64 { sync[operation.index] }

    /// Upstream calls: every outcome but the portal's own refusals.
    package var upstreamCalls: UInt64 {
        outcomes.reduce(0, +) - outcomes[CallOutcome.throttled.index] - outcomes[CallOutcome.refused.index]
    }

    package var successfulCalls: UInt64 { self[.success] }

    package var isEmpty: Bool {
        outcomes.allSatisfy { $0 == 0 } && webhooks.allSatisfy { $0 == 0 } && sync.allSatisfy { $0 == 0 } && tokenRefreshes == 0
    }

    mutating func record(_ call: Activity.Call, sketch: Bool = true) {
        record(call, outcome: CallOutcome(rawValue: call.outcome) ?? .networkError, category: call.category.flatMap(ErrorCategory.init(rawValue:)), sketch: sketch)
    }

    mutating func record(_ call: Activity.Call, outcome: CallOutcome, category: ErrorCategory?, sketch: Bool = true) {
        outcomes[outcome.index] += 1
        if outcome != .success, let category { categories[category.index] += 1 }
        if !outcome.isRefusedLocally {
            durationMicros += UInt64(max(0, call.durationMicros))
            if sketch { latency.add(micros: Double(call.durationMicros)) }
        }
    }

    mutating func record(webhook status: Activity.WebhookStatus) {
        webhooks[status.index] += 1
    }

    mutating func record(sync counts: [Activity.SyncOperation: Int]) {
        for (operation, n) in counts where n > 0 { sync[operation.index] += UInt64(n) }
    }

    mutating func record(tokenRefresh success: Bool) {
        tokenRefreshes += 1
        if !success { tokenRefreshFailures += 1 }
    }

    package mutating func merge(_ other: ActivityStats) {
        for i in outcomes.indices { outcomes[i] += other.outcomes[i] }
        for i in categories.indices { categories[i] += other.categories[i] }
        for i in webhooks.indices { webhooks[i] += other.webhooks[i] }
        for i in sync.indices { sync[i] += other.sync[i] }
        tokenRefreshes += other.tokenRefreshes
        tokenRefreshFailures += other.tokenRefreshFailures
        durationMicros += other.durationMicros
        latency.merge(other.latency)
    }

    // MARK: Stored form

    /// Version 1: a version byte, then varints: each count array (length-prefixed, so later versions can
    /// add outcomes or statuses), token counts, duration sum, then the sketch. Base64 in `metric_rollups`.
    package func encoded() -> String {
        var out: [UInt8] = [1]
        for array in [outcomes, categories, webhooks, sync] {
            Varint.write(UInt64(array.count), into: &out)
            for v in array { Varint.write(v, into: &out) }
        }
        Varint.write(tokenRefreshes, into: &out)
        Varint.write(tokenRefreshFailures, into: &out)
        Varint.write(durationMicros, into: &out)
        latency.encode(into: &out)
        return Data(out).base64EncodedString()
    }

    package static func decode(_ text: String) -> ActivityStats? {
        guard let data = Data(base64Encoded: text), data.first == 1 else { return nil }
        var reader = Varint.Reader(Array(data))
        reader.position = 1
        do {
            var stats = ActivityStats()
            func array(into target: inout [UInt64]) throws(Varint.Malformed) {
                let n = Int(try reader.next())
                guard n <= 64 else { throw Varint.Malformed() }
                for i in 0..<n {
                    let v = try reader.next()
                    if i < target.count { target[i] = v }
                }
            }
            try array(into: &stats.outcomes)
            try array(into: &stats.categories)
            try array(into: &stats.webhooks)
            try array(into: &stats.sync)
            stats.tokenRefreshes = try reader.next()
            stats.tokenRefreshFailures = try reader.next()
            stats.durationMicros = try reader.next()
            stats.latency = try LatencySketch.decode(from: &reader)
            return stats
        } catch {
            return nil
        }
    }
}
