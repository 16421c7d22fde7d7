package import Foundation
package import Logging
package import PortalCore
import Integrations
import ServiceLifecycle
package import Storage

/// The windows the metrics API answers.
package enum MetricsWindow: String, Sendable, CaseIterable {
    case fiveMinutes = "5m", oneHour = "1h", oneDay = "24h", sevenDays = "7d", thirtyDays = "30d"

    package var minutes: Int64 {
        switch self {
        case .fiveMinutes: 5
        case .oneHour: 60
        case .oneDay: 1_440
        case .sevenDays: 10_080
        case .thirtyDays: 43_200
        }
    }
}

/// An integration's activity over a window in equal steps (`GET /portal/integrations/{id}/metrics/series`).
package struct MetricsSeries: Sendable, Encodable {
    package struct Point: Sendable, Encodable {
        /// The step's start (RFC 3339).
        package var start: String
        /// Upstream calls, and those that failed.
        package var requests: UInt64
        package var errors: UInt64
        /// Latency quantiles in milliseconds; null without calls.
        package var p50: Double?
        package var p95: Double?
        package var p99: Double?
    }

    package var integrationId: String
    package var window: String
    package var stepSeconds: Int64
    package var points: [Point]
}

/// An integration's activity over a window, in the seed's `IntegrationMetrics` terms plus quantiles and
/// counts by outcome class and error category (DESIGN section 7: durations in milliseconds, rates 0...1).
package struct IntegrationMetricsReport: Sendable, Encodable {
    package var integrationId: String
    package var window: String
    package var from: String
    package var to: String
    /// Upstream calls (the portal's own refusals, `throttled` and `refused`, are in `byOutcome` only).
    package var totalRequests: UInt64
    package var successfulRequests: UInt64
    package var failedRequests: UInt64
    package var successRate: Double?
    package var errorRate: Double?
    package var averageResponseTime: Double?
    package var p50ResponseTime: Double?
    package var p95ResponseTime: Double?
    package var p99ResponseTime: Double?
    package var lastError: LastErrorView?
    package var byOutcome: [String: UInt64]
    package var byCategory: [String: UInt64]
    package var webhooks: [String: UInt64]
    package var sync: [String: UInt64]
    package var tokenRefreshes: TokenRefreshes
    /// `healthy`, `degraded`, `failing` or `idle` (see ``IntegrationMonitor/health(stats5m:live:status:)``).
    package var health: String
    package var consecutiveFailures: Int
    /// The provider's remaining quota as a fraction of its limit, when its headers said.
    package var quotaRemaining: Double?

    package struct LastErrorView: Sendable, Encodable, Equatable {
        package var timestamp: String
        package var message: String
        package var endpoint: String
    }

    package struct TokenRefreshes: Sendable, Encodable {
        package var total: UInt64
        package var failed: UInt64
    }

    enum CodingKeys: String, CodingKey {
        case integrationId, window, from, to, totalRequests, successfulRequests, failedRequests, successRate, errorRate, averageResponseTime
        case p50ResponseTime, p95ResponseTime, p99ResponseTime, lastError, byOutcome, byCategory, webhooks, sync, tokenRefreshes, health
        case consecutiveFailures, quotaRemaining
    }

    // Absent values are JSON null, so every field is always there.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(integrationId, forKey: .integrationId)
        try c.encode(window, forKey: .window)
        try c.encode(from, forKey: .from)
        try c.encode(to, forKey: .to)
        try c.encode(totalRequests, forKey: .totalRequests)
        try c.encode(successfulRequests, forKey: .successfulRequests)
        try c.encode(failedRequests, forKey: .failedRequests)
        try c.encode(successRate, forKey: .successRate)
        try c.encode(errorRate, forKey: .errorRate)
        try c.encode(averageResponseTime, forKey: .averageResponseTime)
        try c.encode(p50ResponseTime, forKey: .p50ResponseTime)
        try c.encode(p95ResponseTime, forKey: .p95ResponseTime)
        try c.encode(p99ResponseTime, forKey: .p99ResponseTime)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(byOutcome, forKey: .byOutcome)
        try c.encode(byCategory, forKey: .byCategory)
        try c.encode(webhooks, forKey: .webhooks)
        try c.encode(sync, forKey: .sync)
        try c.encode(tokenRefreshes, forKey: .tokenRefreshes)
        try c.encode(health, forKey: .health)
        try c.encode(consecutiveFailures, forKey: .consecutiveFailures)
        try c.encode(quotaRemaining, forKey: .quotaRemaining)
    }
}

/// Persists the collector's minutes and hours, prunes old rollups, and answers windows by merging stored
/// rollups (every instance's) with this instance's minutes not yet stored.
///
/// Windows of up to an hour merge minute rows; longer ones merge whole hours (the first hour of the window
/// counts entirely, so a 24 h window spans up to 25 h) plus the current hour's minutes. Minute rows are
/// kept 3 hours, hour rows 36 days.
package final class IntegrationMonitor: Service, Sendable {
    package let collector: MetricsCollector
    let database: Database
    let clock: any WallClock
    let logger: Logger
    /// Seconds between flushes (60 in production; tests flush by hand).
    let flushInterval: Duration

    package init(collector: MetricsCollector, database: Database, clock: any WallClock, logger: Logger, flushInterval: Duration = .seconds(60)) {
        self.collector = collector
        self.database = database
        self.clock = clock
        self.logger = logger
        self.flushInterval = flushInterval
    }

    package func run() async throws {
        var lastPrune = Int64.min
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Just past the next minute boundary, so the minute that ended is complete.
            let now = clock.now().timeIntervalSince1970
            let untilBoundary = 60 - now.truncatingRemainder(dividingBy: 60) + 1
            let wait = flushInterval == .seconds(60) ? Duration.milliseconds(Int64(untilBoundary * 1000)) : flushInterval
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                break
            }
            do {
                try await flush()
                let hour = MetricsCollector.minute(clock.now()) / 60
                if hour != lastPrune {
                    try await prune()
                    lastPrune = hour
                }
            } catch {
                logger.warning("metric rollups were not written; retrying next minute", metadata: ["portal.error": "\(error)"])
            }
        }
        // At shutdown, the minute in progress is written too.
        try? await flush(through: MetricsCollector.minute(clock.now()) + 1)
    }

    /// Writes every completed minute not yet written (and their hours).
    package func flush(through before: Int64? = nil) async throws {
        let pending = collector.pendingFlush(before: before)
        guard !pending.rows.isEmpty else { return }
        let rows = pending.rows.map {
            MetricRollupRow(
                organizationID: $0.organizationID, integrationID: $0.integrationID, resolution: $0.resolution, bucketStart: $0.bucketStart,
                instanceID: collector.instanceID, stats: $0.stats.encoded()
            )
        }
        try await database.write { db in try await MetricRollupStore(db).upsert(rows) }
        collector.markFlushed(pending)
    }

    package func prune() async throws {
        let now = Int64(clock.now().timeIntervalSince1970)
        try await database.write { db in
            try await MetricRollupStore(db).prune(resolution: 60, before: now - 3 * 3600)
            try await MetricRollupStore(db).prune(resolution: 3600, before: now - 36 * 86_400)
        }
    }

    // MARK: Windows

    /// Every integration of an organization (or one) over `window`, merged across instances.
    package func stats(organizationID: UUID, integrationID: UUID? = nil, among integrationIDs: [UUID]? = nil, window: MetricsWindow) async throws -> [UUID: ActivityStats] {
        try await stats(organizationID: organizationID, integrationID: integrationID, among: integrationIDs, minutes: window.minutes) { _, _, _ in }
    }

    /// The activity over the last `minutes` (the current one included), as ``stats(organizationID:integrationID:among:window:)``.
    package func stats(organizationID: UUID, integrationID: UUID? = nil, minutes: Int64) async throws -> [UUID: ActivityStats] {
        try await stats(organizationID: organizationID, integrationID: integrationID, among: nil, minutes: minutes) { _, _, _ in }
    }

    /// ``stats(organizationID:integrationID:among:window:)``, with each stored row also given to `row`
    /// (integration, bucket start in seconds, its activity) as it is merged.
    func stats(
        organizationID: UUID, integrationID: UUID?, among integrationIDs: [UUID]?, minutes: Int64,
        row rowHandler: (UUID, Int64, ActivityStats) -> Void
    ) async throws -> [UUID: ActivityStats] {
        let current = MetricsCollector.minute(clock.now())
        let windowStart = current - minutes + 1
        let currentHour = current - current % 60
        var rows: [(integrationID: UUID, bucketStart: Int64, stats: String)] = []
        try await database.read { db in
            let store = MetricRollupStore(db)
            if minutes <= 60 {
                rows = try await store.rows(organizationID: organizationID, integrationID: integrationID, among: integrationIDs, resolution: 60, from: windowStart * 60, to: current * 60 + 60)
            } else {
                let firstHour = windowStart - ((windowStart % 60) + 60) % 60
                rows = try await store.rows(organizationID: organizationID, integrationID: integrationID, among: integrationIDs, resolution: 3600, from: firstHour * 60, to: currentHour * 60)
                rows += try await store.rows(organizationID: organizationID, integrationID: integrationID, among: integrationIDs, resolution: 60, from: currentHour * 60, to: current * 60 + 60)
            }
        }
        var merged: [UUID: ActivityStats] = [:]
        for row in rows {
            guard let stats = ActivityStats.decode(row.stats) else {
                logger.warning("a metric rollup could not be read", metadata: ["portal.integration": "\(row.integrationID)"])
                continue
            }
            merged[row.integrationID, default: ActivityStats()].merge(stats)
            rowHandler(row.integrationID, row.bucketStart, stats)
        }
        // Minutes not stored yet are in no row, minute or hour: all of them in the window count.
        let localSince = windowStart
        if let integrationID {
            let local = collector.unflushed(integrationID, since: localSince)
            if !local.isEmpty { merged[integrationID, default: ActivityStats()].merge(local) }
        } else {
            let wanted = integrationIDs.map(Set.init)
            for (id, local) in collector.unflushed(organizationID: organizationID, since: localSince) where wanted?.contains(id) ?? true {
                merged[id, default: ActivityStats()].merge(local)
            }
        }
        return merged
    }

    /// The integration's service levels (`GET /portal/integrations/{id}/slo`): each objective's attainment
    /// and error budget over its window and the burn rates over 5 m, 30 m, 1 h and 6 h.
    package func serviceLevels(organizationID: UUID, integrationID: UUID, config: JSONValue) async throws -> JSONValue {
        guard let slo = IntegrationConfiguration.stored(config).slo else {
            return ["integrationId": .string(integrationID.uuidString.lowercased()), "configured": false, "objectives": []]
        }
        let objectives = ServiceLevels.objectives(slo)
        let window = try await stats(organizationID: organizationID, integrationID: integrationID, minutes: Int64(slo.windowDays) * 1_440)[integrationID] ?? ActivityStats()
        var burns: [String: ActivityStats] = [:]
        for w in ServiceLevels.burnWindows {
            burns[w.name] = try await stats(organizationID: organizationID, integrationID: integrationID, minutes: w.minutes)[integrationID] ?? ActivityStats()
        }
        return [
            "integrationId": .string(integrationID.uuidString.lowercased()), "configured": true, "checkedAt": .string(Timestamp.rfc3339(clock.now())),
            "objectives": .array(objectives.map { indicator, objective in
                ServiceLevels.report(
                    indicator, objective: objective, window: ServiceLevels.events(indicator, window, slo: slo),
                    burns: burns.mapValues { ServiceLevels.events(indicator, $0, slo: slo) }, slo: slo
                )
            }),
        ]
    }

    /// Each live integration's service level attainment over [start, end) from the hourly rollups (kept 36
    /// days: an older period counts from the first hour kept, which `coveredFrom` says), for the evidence
    /// bundles (SOC 2 A1.2 and CC7).
    package func attainment(organizationID: UUID, start: Date, end: Date) async throws -> JSONValue {
        let from = Int64(start.timeIntervalSince1970), to = Int64(end.timeIntervalSince1970)
        let (integrations, rows) = try await database.read { db in
            (
                try await IntegrationStore(db).all(organizationID: organizationID, includeDeleted: false),
                try await MetricRollupStore(db).rows(organizationID: organizationID, resolution: 3600, from: from - from % 3600, to: to)
            )
        }
        var merged: [UUID: ActivityStats] = [:]
        var first: Int64?
        for row in rows where row.bucketStart >= from - from % 3600 && row.bucketStart < to {
            guard let stats = ActivityStats.decode(row.stats) else { continue }
            merged[row.integrationID, default: ActivityStats()].merge(stats)
            first = min(first ?? row.bucketStart, row.bucketStart)
        }
        var items: [JSONValue] = []
        var met = 0, missed = 0
        for integration in integrations {
            guard let slo = IntegrationConfiguration.stored(integration.config).slo else { continue }
            let stats = merged[integration.id] ?? ActivityStats()
            let objectives: [JSONValue] = ServiceLevels.objectives(slo).map { indicator, objective in
                let events = ServiceLevels.events(indicator, stats, slo: slo)
                let attainment = events.total > 0 ? Double(events.good) / Double(events.total) : nil
                if let attainment { if attainment >= objective { met += 1 } else { missed += 1 } }
                return [
                    "indicator": .string(indicator.rawValue), "objective": .double(objective), "good": .int(Int64(clamping: events.good)),
                    "total": .int(Int64(clamping: events.total)), "attainment": attainment.map(JSONValue.double) ?? .null,
                    "met": attainment.map { .bool($0 >= objective) } ?? .null,
                ]
            }
            items.append(["integrationId": .string(integration.id.uuidString.lowercased()), "name": .string(integration.name), "objectives": .array(objectives)])
        }
        return [
            "description": "Service level attainment of each integration with objectives over the period, from the hourly metric rollups (SOC 2 A1.2, CC7).",
            "coveredFrom": first.map { .string(Timestamp.rfc3339(Date(timeIntervalSince1970: TimeInterval($0)))) } ?? .null,
            "integrations": .array(items), "objectivesMet": .int(Int64(met)), "objectivesMissed": .int(Int64(missed)),
        ]
    }

    /// One integration's activity over `window` in steps, oldest first, for charts: minutes for windows of up
    /// to an hour, hours beyond (the current hour from its minutes so far). Every step is present, empty
    /// ones too, merged across instances.
    package func series(organizationID: UUID, integrationID: UUID, window: MetricsWindow) async throws -> MetricsSeries {
        let current = MetricsCollector.minute(clock.now())
        let step: Int64 = window.minutes <= 60 ? 1 : 60
        let last = current - current % step
        let count = max(1, window.minutes / step)
        let first = last - (count - 1) * step
        var buckets: [Int64: ActivityStats] = [:]
        func add(_ minute: Int64, _ stats: ActivityStats) {
            let bucket = minute - ((minute % step) + step) % step
            guard bucket >= first else { return }
            buckets[bucket, default: ActivityStats()].merge(stats)
        }
        let rows = try await database.read { db -> [(Int64, String)] in
            let store = MetricRollupStore(db)
            var rows: [(Int64, String)] = []
            if step == 60 {
                rows += try await store.buckets(organizationID: organizationID, integrationID: integrationID, resolution: 3600, from: first * 60, to: last * 60)
                    .map { ($0.bucketStart, $0.stats) }
            }
            let minutesFrom = step == 60 ? last : first
            rows += try await store.buckets(organizationID: organizationID, integrationID: integrationID, resolution: 60, from: minutesFrom * 60, to: current * 60 + 60)
                .map { ($0.bucketStart, $0.stats) }
            return rows
        }
        for (start, text) in rows {
            guard let stats = ActivityStats.decode(text) else { continue }
            add(start / 60, stats)
        }
        for (minute, stats) in collector.unflushedMinutes(integrationID, since: step == 60 ? last : first) { add(minute, stats) }
        func ms(_ micros: Double?) -> Double? { micros.map { ($0 / 1000 * 1000).rounded() / 1000 } }
        let points = stride(from: first, through: last, by: Int(step)).map { bucket -> MetricsSeries.Point in
            let stats = buckets[bucket] ?? ActivityStats()
            let total = stats.upstreamCalls
            return MetricsSeries.Point(
                start: Timestamp.rfc3339(Date(timeIntervalSince1970: TimeInterval(bucket * 60))), requests: total,
                errors: total - stats.successfulCalls, p50: ms(stats.latency.quantile(0.5)), p95: ms(stats.latency.quantile(0.95)),
                p99: ms(stats.latency.quantile(0.99))
            )
        }
        return MetricsSeries(integrationId: integrationID.uuidString.lowercased(), window: window.rawValue, stepSeconds: step * 60, points: points)
    }

    /// The report of one integration over `window`; `status` is its lifecycle status (`error` is failing).
    package func report(integrationID: UUID, organizationID: UUID, status: IntegrationStatus, window: MetricsWindow) async throws -> IntegrationMetricsReport {
        let stats = try await self.stats(organizationID: organizationID, integrationID: integrationID, window: window)[integrationID] ?? ActivityStats()
        let recent = window == .fiveMinutes ? stats : (try await self.stats(organizationID: organizationID, integrationID: integrationID, window: .fiveMinutes)[integrationID] ?? ActivityStats())
        return report(integrationID: integrationID, stats: stats, recent: recent, status: status, window: window)
    }

    /// Reports of every integration given (id and lifecycle status) over `window`, with two queries.
    /// With `only`, the rollups of those integrations alone are read (a page of a long list); the totals
    /// are of the integrations given.
    /// With `only` and a window of an hour, each integration's upstream calls per minute of the hour are
    /// counted too (`lastHour`, oldest first: the list's sparklines), from the same rows.
    package func summary(
        organizationID: UUID, integrations: [(id: UUID, status: IntegrationStatus)], only: Bool = false, window: MetricsWindow
    ) async throws -> (reports: [IntegrationMetricsReport], totals: ActivityStats, lastHour: [UUID: [UInt64]]) {
        let among = only ? integrations.map(\.id) : nil
        let current = MetricsCollector.minute(clock.now())
        let first = current - 59
        let perMinute = only && window == .oneHour
        var lastHour: [UUID: [UInt64]] = [:]
        func count(_ id: UUID, _ minute: Int64, _ stats: ActivityStats) {
            guard perMinute, minute >= first, minute <= current else { return }
            lastHour[id, default: [UInt64](repeating: 0, count: 60)][Int(minute - first)] += stats.upstreamCalls
        }
        let all = try await stats(organizationID: organizationID, integrationID: nil, among: among, minutes: window.minutes) { id, start, stats in
            count(id, start / 60, stats)
        }
        if perMinute {
            for integration in integrations {
                for (minute, stats) in collector.unflushedMinutes(integration.id, since: first) { count(integration.id, minute, stats) }
            }
        }
        let recent = window == .fiveMinutes ? all : try await stats(organizationID: organizationID, among: among, window: .fiveMinutes)
        var totals = ActivityStats()
        for integration in integrations { if let s = all[integration.id] { totals.merge(s) } }
        let reports = integrations.map { report(integrationID: $0.id, stats: all[$0.id] ?? ActivityStats(), recent: recent[$0.id] ?? ActivityStats(), status: $0.status, window: window) }
        return (reports, totals, lastHour)
    }

    func report(integrationID: UUID, stats: ActivityStats, recent: ActivityStats, status: IntegrationStatus, window: MetricsWindow) -> IntegrationMetricsReport {
        let now = clock.now()
        let total = stats.upstreamCalls
        let ok = stats.successfulCalls
        let live = collector.live(integrationID)
        func ms(_ micros: Double?) -> Double? { micros.map { ($0 / 1000 * 1000).rounded() / 1000 } }
        return IntegrationMetricsReport(
            integrationId: integrationID.uuidString.lowercased(), window: window.rawValue,
            from: Timestamp.rfc3339(now.addingTimeInterval(-Double(window.minutes) * 60)), to: Timestamp.rfc3339(now),
            totalRequests: total, successfulRequests: ok, failedRequests: total - ok,
            successRate: total == 0 ? nil : Double(ok) / Double(total), errorRate: total == 0 ? nil : 1 - Double(ok) / Double(total),
            averageResponseTime: total == 0 ? nil : ms(Double(stats.durationMicros) / Double(total)),
            p50ResponseTime: ms(stats.latency.quantile(0.5)), p95ResponseTime: ms(stats.latency.quantile(0.95)), p99ResponseTime: ms(stats.latency.quantile(0.99)),
            lastError: live?.lastError.map { .init(timestamp: Timestamp.rfc3339($0.timestamp), message: $0.message, endpoint: $0.endpoint) },
            byOutcome: Dictionary(uniqueKeysWithValues: CallOutcome.allCases.map { ($0.rawValue, stats[$0]) }),
            byCategory: Dictionary(uniqueKeysWithValues: ErrorCategory.allCases.map { ($0.rawValue, stats[$0]) }),
            webhooks: Dictionary(uniqueKeysWithValues: Activity.WebhookStatus.allCases.map { ($0.rawValue, stats[$0]) }),
            sync: Dictionary(uniqueKeysWithValues: Activity.SyncOperation.allCases.map { ($0.rawValue, stats[sync: $0]) }),
            tokenRefreshes: .init(total: stats.tokenRefreshes, failed: stats.tokenRefreshFailures),
            health: Self.health(recent: recent, consecutiveFailures: live?.consecutiveFailures ?? 0, quota: live?.quota, status: status).rawValue,
            consecutiveFailures: live?.consecutiveFailures ?? 0, quotaRemaining: live?.quota
        )
    }

    package enum Health: String, Sendable {
        case healthy, degraded, failing, idle
    }

    /// Health from recent errors: `failing` when the integration's status is `error`, 5 or more upstream
    /// calls failed in a row, or at least half of the last 5 minutes' calls failed (of 5 or more);
    /// `degraded` when 10% or more failed, the 5-minute p95 is above 2 s, or under 10% of the provider's
    /// quota is left; `idle` without calls in the last 5 minutes; else `healthy`.
    package static func health(recent: ActivityStats, consecutiveFailures: Int, quota: Double?, status: IntegrationStatus) -> Health {
        let calls = recent.upstreamCalls
        let errorRate = calls == 0 ? 0 : 1 - Double(recent.successfulCalls) / Double(calls)
        if status == .error || consecutiveFailures >= 5 || (calls >= 5 && errorRate >= 0.5) { return .failing }
        if (calls >= 5 && errorRate >= 0.1) || (recent.latency.quantile(0.95) ?? 0) > 2_000_000 || (quota ?? 1) < 0.1 { return .degraded }
        return calls == 0 ? .idle : .healthy
    }
}
