package import Integrations
package import PortalCore

/// Service level objectives (issue 21), the pure part: the good and total events of each indicator from an
/// integration's activity, attainment, error budget and burn rates (the SRE workbook's definitions).
///
/// - Availability: of the upstream calls, those not failing by the provider's fault (a 5xx answer, a timeout
///   or a connection failure). A 4xx, a refused credential or the provider's rate limit is not its outage.
/// - Latency: of the upstream calls, those answered within the threshold (from the latency sketch, within
///   its accuracy).
package enum ServiceLevels {
    package enum Indicator: String, Sendable, CaseIterable {
        case availability, latency
    }

    /// Good and total events of an indicator.
    package struct Events: Sendable, Equatable {
        package var good: UInt64
        package var total: UInt64

        package var bad: UInt64 { total - min(good, total) }
    }

    /// The burn-rate windows reported (the workbook's pairs: 1 h with 5 m, 6 h with 30 m).
    package static let burnWindows: [(name: String, minutes: Int64)] = [("5m", 5), ("30m", 30), ("1h", 60), ("6h", 360)]

    /// The indicators an integration's objectives define, with their objective.
    package static func objectives(_ slo: IntegrationConfiguration.ServiceLevelObjectives) -> [(Indicator, Double)] {
        var list: [(Indicator, Double)] = []
        if let a = slo.availability { list.append((.availability, a)) }
        if let l = slo.latencyObjective, slo.latencyThresholdMs != nil { list.append((.latency, l)) }
        return list
    }

    package static func events(_ indicator: Indicator, _ stats: ActivityStats, slo: IntegrationConfiguration.ServiceLevelObjectives) -> Events {
        switch indicator {
        case .availability:
            let total = stats.upstreamCalls
            let bad = stats[ErrorCategory.server] + stats[ErrorCategory.network]
            return Events(good: total - min(bad, total), total: total)
        case .latency:
            let threshold = Double(slo.latencyThresholdMs ?? 0) * 1_000
            return Events(good: stats.latency.count(atMost: threshold), total: stats.latency.count)
        }
    }

    /// The rate the error budget is spent at: the bad share over the share the objective allows (1 spends
    /// it exactly over the window); nil without events.
    package static func burnRate(_ events: Events, objective: Double) -> Double? {
        guard events.total > 0, objective < 1 else { return nil }
        return (Double(events.bad) / Double(events.total)) / (1 - objective)
    }

    /// One indicator's report: objective, attainment and budget over the compliance window, burn rates.
    package static func report(
        _ indicator: Indicator, objective: Double, window: Events, burns: [String: Events], slo: IntegrationConfiguration.ServiceLevelObjectives
    ) -> JSONValue {
        let attainment = window.total > 0 ? Double(window.good) / Double(window.total) : nil
        let consumed = burnRate(window, objective: objective)
        var m: [String: JSONValue] = [
            "indicator": .string(indicator.rawValue), "objective": .double(objective), "window": .string("\(slo.windowDays)d"),
            "events": ["good": .int(Int64(clamping: window.good)), "total": .int(Int64(clamping: window.total))],
            "attainment": attainment.map(JSONValue.double) ?? .null,
            "met": attainment.map { .bool($0 >= objective) } ?? .null,
            "errorBudget": [
                "allowedBadShare": .double(1 - objective),
                "consumed": consumed.map(JSONValue.double) ?? .double(0),
                "remaining": .double(1 - (consumed ?? 0)),
            ],
            "burnRates": .object(Dictionary(uniqueKeysWithValues: burnWindows.map { w in
                (w.name, burnRate(burns[w.name] ?? Events(good: 0, total: 0), objective: objective).map(JSONValue.double) ?? .null)
            })),
        ]
        if indicator == .latency, let ms = slo.latencyThresholdMs { m["thresholdMs"] = .int(Int64(ms)) }
        return .object(m)
    }
}
