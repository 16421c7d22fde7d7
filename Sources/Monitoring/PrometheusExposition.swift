package import Foundation
import Integrations
import PortalCore
package import Storage

/// Prometheus text exposition format 0.0.4, written directly (see docs/decisions.md: the series are
/// derived per scrape from the collector and the database and filtered per organization, which
/// swift-prometheus's process-global, push-style registry cannot do without keeping a second copy of every
/// series). Families come in a fixed order and series sorted, so two scrapes of the same state are equal.
package struct PrometheusText: Sendable {
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    package private(set) var text = ""

    package init() {}

    package mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    package mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{"
            for (i, (key, v)) in labels.enumerated() {
                if i > 0 { text += "," }
                text += key
                text += "=\""
                text += Self.escape(v)
                text += "\""
            }
            text += "}"
        }
        text += " "
        text += Self.format(value)
        text += "\n"
    }

    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// Writes the portal's metric families from a scrape's state, the collector's snapshots, the ledger
/// verifications seen, and the alert rule names. Only bounded label values: organization slug, integration
/// id, outcome class, error category, status, operation, window, rule name.
package enum PortalExposition {
    package static func render(
        state: ScrapeState, snapshots: [UUID: MetricsCollector.Snapshot], verifications: [UUID: LedgerVerificationStatus], ruleNames: [String], now: Date
    ) -> String {
        var out = PrometheusText()
        let slugs = Dictionary(uniqueKeysWithValues: state.organizations.map { ($0.id, $0.slug) })
        // Every live integration has series, seen or not; integrations seen but deleted since drop out.
        let integrations = state.integrations.compactMap { i in slugs[i.organizationID].map { (id: i.id, org: $0, key: i.id.uuidString.lowercased()) } }
            .sorted { ($0.org, $0.key) < ($1.org, $1.key) }
        let empty = MetricsCollector.Snapshot(
            organizationID: UUID(), totals: ActivityStats(), buckets: [UInt64](repeating: 0, count: MetricsCollector.histogramBounds.count + 1),
            consecutiveFailures: 0, lastError: nil, quota: nil, last5m: ActivityStats(), last1h: ActivityStats()
        )
        func each(_ body: (_ labels: [(String, String)], _ snapshot: MetricsCollector.Snapshot) -> Void) {
            for i in integrations { body([("organization", i.org), ("integration", i.key)], snapshots[i.id] ?? empty) }
        }

        out.family("portal_integration_requests_total", "counter", "Calls through the gateway by outcome class (throttled and refused: refused by the portal, not upstream calls).")
        each { labels, s in for o in CallOutcome.allCases { out.sample("portal_integration_requests_total", labels + [("outcome", o.rawValue)], Double(s.totals[o])) } }
        out.family("portal_integration_errors_total", "counter", "Failed calls through the gateway by error category.")
        each { labels, s in for c in ErrorCategory.allCases { out.sample("portal_integration_errors_total", labels + [("category", c.rawValue)], Double(s.totals[c])) } }
        out.family("portal_integration_request_duration_seconds", "histogram", "Duration of upstream calls, all attempts included.")
        each { labels, s in
            var cumulative: UInt64 = 0
            for (i, bound) in MetricsCollector.histogramBounds.enumerated() {
                cumulative += s.buckets[i]
                out.sample("portal_integration_request_duration_seconds_bucket", labels + [("le", "\(bound)")], Double(cumulative))
            }
            cumulative += s.buckets[MetricsCollector.histogramBounds.count]
            out.sample("portal_integration_request_duration_seconds_bucket", labels + [("le", "+Inf")], Double(cumulative))
            out.sample("portal_integration_request_duration_seconds_sum", labels, Double(s.totals.durationMicros) / 1_000_000)
            out.sample("portal_integration_request_duration_seconds_count", labels, Double(cumulative))
        }
        // Service level objectives (config.slo), for the recording and alerting rules in dashboards/prometheus.
        let objectives = integrations.compactMap { i -> (labels: [(String, String)], slo: IntegrationConfiguration.ServiceLevelObjectives, snapshot: MetricsCollector.Snapshot)? in
            guard let json = state.objectives[i.id], let slo = IntegrationConfiguration.stored(["slo": json]).slo else { return nil }
            return ([("organization", i.org), ("integration", i.key)], slo, snapshots[i.id] ?? empty)
        }
        out.family("portal_integration_slo_objective", "gauge", "The integration's service level objective by indicator (availability, latency), as a share of good events.")
        for o in objectives {
            for (indicator, objective) in ServiceLevels.objectives(o.slo) { out.sample("portal_integration_slo_objective", o.labels + [("sli", indicator.rawValue)], objective) }
        }
        out.family("portal_integration_slo_latency_threshold_seconds", "gauge", "The latency objective's threshold.")
        for o in objectives { if let ms = o.slo.latencyThresholdMs { out.sample("portal_integration_slo_latency_threshold_seconds", o.labels, Double(ms) / 1_000) } }
        out.family(
            "portal_integration_slo_latency_good_total", "counter",
            "Upstream calls within the latency objective's threshold, counted at the largest duration bucket bound not above it (so never more than the true count)."
        )
        for o in objectives {
            guard let ms = o.slo.latencyThresholdMs else { continue }
            let limit = Double(ms) / 1_000
            var good: UInt64 = 0
            for (i, bound) in MetricsCollector.histogramBounds.enumerated() where bound <= limit { good += o.snapshot.buckets[i] }
            out.sample("portal_integration_slo_latency_good_total", o.labels, Double(good))
        }
        out.family("portal_integration_response_time_p95_seconds", "gauge", "95th percentile of upstream call durations over the window, as seen by this instance (0 without calls).")
        each { labels, s in
            out.sample("portal_integration_response_time_p95_seconds", labels + [("window", "1h")], (s.last1h.latency.quantile(0.95) ?? 0) / 1_000_000)
            out.sample("portal_integration_response_time_p95_seconds", labels + [("window", "5m")], (s.last5m.latency.quantile(0.95) ?? 0) / 1_000_000)
        }
        out.family("portal_integration_error_ratio", "gauge", "Failed upstream calls over all upstream calls in the window, as seen by this instance (0 without calls).")
        each { labels, s in
            for (window, stats) in [("1h", s.last1h), ("5m", s.last5m)] {
                let calls = stats.upstreamCalls
                out.sample("portal_integration_error_ratio", labels + [("window", window)], calls == 0 ? 0 : 1 - Double(stats.successfulCalls) / Double(calls))
            }
        }
        out.family("portal_integration_quota_remaining_ratio", "gauge", "The provider's remaining quota over its limit, from its rate-limit headers (1 while unknown).")
        each { labels, s in out.sample("portal_integration_quota_remaining_ratio", labels, s.quota ?? 1) }
        out.family("portal_token_refreshes_total", "counter", "OAuth 2.0 and JWT token requests of integrations by result.")
        each { labels, s in
            out.sample("portal_token_refreshes_total", labels + [("result", "failure")], Double(s.totals.tokenRefreshFailures))
            out.sample("portal_token_refreshes_total", labels + [("result", "success")], Double(s.totals.tokenRefreshes - s.totals.tokenRefreshFailures))
        }
        out.family("portal_webhook_events_total", "counter", "Inbound webhook deliveries and queue outcomes by status.")
        each { labels, s in for w in Activity.WebhookStatus.allCases { out.sample("portal_webhook_events_total", labels + [("status", w.rawValue)], Double(s.totals[w])) } }
        out.family("portal_sync_records_total", "counter", "Records handled by syncs and webhook-driven upserts, by operation.")
        each { labels, s in for o in Activity.SyncOperation.allCases { out.sample("portal_sync_records_total", labels + [("operation", o.rawValue)], Double(s.totals[sync: o])) } }

        let orgs = state.organizations
        out.family("portal_webhook_queue_depth", "gauge", "Webhook events waiting to be processed or retried.")
        for o in orgs { out.sample("portal_webhook_queue_depth", [("organization", o.slug)], Double(state.queueDepth[o.id] ?? 0)) }
        out.family("portal_webhook_oldest_pending_age_seconds", "gauge", "Age of the oldest webhook event waiting (0 when none).")
        for o in orgs { out.sample("portal_webhook_oldest_pending_age_seconds", [("organization", o.slug)], state.oldestPending[o.id].map { max(0, now.timeIntervalSince($0)) } ?? 0) }
        out.family("portal_webhook_dead_letters", "gauge", "Webhook events in the dead letter (failed after their retries).")
        for o in orgs { out.sample("portal_webhook_dead_letters", [("organization", o.slug)], Double(state.deadLetters[o.id] ?? 0)) }
        out.family("portal_sync_jobs", "gauge", "Sync jobs by state.")
        for o in orgs {
            for s in ["cancelled", "completed", "failed", "pending", "running"] { out.sample("portal_sync_jobs", [("organization", o.slug), ("state", s)], Double(state.syncJobs[o.id]?[s] ?? 0)) }
        }
        out.family("portal_ledger_entries", "gauge", "Entries in the organization's audit ledger (its tree size).")
        for o in orgs { out.sample("portal_ledger_entries", [("organization", o.slug)], Double(state.ledgerSize[o.id] ?? 0)) }
        out.family("portal_ledger_last_checkpoint_timestamp_seconds", "gauge", "When the ledger's last checkpoint was signed (Unix seconds; 0 when none).")
        for o in orgs { out.sample("portal_ledger_last_checkpoint_timestamp_seconds", [("organization", o.slug)], state.lastCheckpoint[o.id].map { $0.timeIntervalSince1970.rounded(.down) } ?? 0) }
        out.family("portal_ledger_last_verification_success", "gauge", "Whether the last verification of the ledger passed (1 until the first run).")
        for o in orgs { out.sample("portal_ledger_last_verification_success", [("organization", o.slug)], verifications[o.id].map { $0.passed ? 1 : 0 } ?? 1) }
        out.family("portal_ledger_last_verification_timestamp_seconds", "gauge", "When the ledger was last verified (Unix seconds; 0 when never).")
        for o in orgs { out.sample("portal_ledger_last_verification_timestamp_seconds", [("organization", o.slug)], verifications[o.id].map { $0.at.timeIntervalSince1970.rounded(.down) } ?? 0) }
        out.family("portal_alerts", "gauge", "Alerts by rule and state.")
        for o in orgs {
            for rule in ruleNames.sorted() {
                for s in ["firing", "pending"] { out.sample("portal_alerts", [("alertname", rule), ("organization", o.slug), ("state", s)], Double(state.alerts[o.id]?[rule]?[s] ?? 0)) }
            }
        }
        return out.text
    }
}

/// The last verification of one ledger.
package struct LedgerVerificationStatus: Sendable, Equatable {
    package var passed: Bool
    package var at: Date
    package var size: Int64
    package var message: String?

    package init(passed: Bool, at: Date, size: Int64, message: String?) {
        self.passed = passed
        self.at = at
        self.size = size
        self.message = message
    }
}
