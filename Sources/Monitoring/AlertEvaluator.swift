package import Foundation
import Integrations
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage
import Synchronization

/// Evaluates the alert rules on an interval (the rule file's `evaluationInterval`), one instance at a time
/// (a `service_leases` lease), with the injected clock: gathers what each rule kind looks at per
/// organization, runs ``AlertEngine/step(rules:samples:previous:silences:now:)``, stores the states in
/// `alert_states` with `alert.firing` / `alert.resolved` in the same transaction (SOC 2 CC7.2 evidence),
/// then notifies the organization's receivers.
package final class AlertEvaluator: Service, Sendable {
    package let rules: AlertRuleSet
    let database: Database
    let monitor: IntegrationMonitor
    let notifier: AlertNotifier
    let receivers: AlertReceivers
    let audit: any AuditTrail
    let clock: any WallClock
    let logger: Logger
    let owner: String
    /// Each integration's 7-day p95 (latency baselines), kept for 10 minutes.
    private let baselines = BaselineCache()

    package init(
        rules: AlertRuleSet, database: Database, monitor: IntegrationMonitor, notifier: AlertNotifier, receivers: AlertReceivers, audit: any AuditTrail,
        clock: any WallClock, logger: Logger, owner: String
    ) {
        self.rules = rules
        self.database = database
        self.monitor = monitor
        self.notifier = notifier
        self.receivers = receivers
        self.audit = audit
        self.clock = clock
        self.logger = logger
        self.owner = owner
    }

    package func run() async throws {
        let interval = Duration.milliseconds(Int64(rules.evaluationIntervalSeconds * 1000))
        await LeasedLoop(name: "alert-evaluator", owner: owner, database: database, clock: clock, logger: logger)
            .run(every: interval, first: interval) { try await self.evaluateAll() }
    }

    /// Evaluates every organization once; returns each organization's step (by slug).
    @discardableResult
    package func evaluateAll() async throws -> [String: AlertStep] {
        let organizations = try await database.read { db in try await OrganizationStore(db).list() }.map { ($0.id, $0.slug) }
        var steps: [String: AlertStep] = [:]
        for (id, slug) in organizations { steps[slug] = try await evaluate(organizationID: id, slug: slug) }
        return steps
    }

    /// One organization's evaluation.
    package func evaluate(organizationID: UUID, slug: String) async throws -> AlertStep {
        let now = clock.now()
        let samples = try await samples(organizationID: organizationID, slug: slug, now: now)
        let (previous, silences) = try await database.read { db in
            (try await AlertStore(db).states(organizationID: organizationID, resolvedSince: now), try await AlertStore(db).silences(organizationID: organizationID, activeAt: now))
        }
        let matchers = silences.filter { $0.startsAt <= now }.compactMap { try? SilenceMatcher.parse($0.matchers, limits: nil).get() }
        let step = AlertEngine.step(rules: rules.rules, samples: samples, previous: previous.map(Self.instance), silences: matchers, now: now)
        var events: [AuditEvent] = []
        for (type, list) in [(AuditEventType.alertFiring, step.fired), (.alertResolved, step.resolved)] {
            for alert in list {
                var data: [String: JSONValue] = [
                    "rule": .string(alert.rule), "fingerprint": .string(alert.fingerprint), "labels": AlertNotifier.labelsOf(alert.labels),
                    "value": .string(AlertTemplate.format(alert.value)), "activeAt": .string(Timestamp.rfc3339(alert.activeAt)),
                ]
                if let summary = alert.annotations["summary"] { data["summary"] = .string(String(summary.prefix(300))) }
                let integration = alert.labels["integration"].flatMap(UUID.init(uuidString:))
                events.append(AuditEvent(organizationID: organizationID, type: type, actor: AuditEvent.system("alert-evaluator"), integrationID: integration, data: .object(data), time: now))
            }
        }
        let keep = Set(step.instances.map(\.fingerprint))
        try await database.write { db in
            let store = AlertStore(db)
            // Pending alerts whose condition cleared are forgotten (as Prometheus does).
            for old in previous where old.state == "pending" && !keep.contains(old.fingerprint) {
                try await store.delete(organizationID: organizationID, fingerprint: old.fingerprint)
            }
            try await store.upsert(step.instances.map { Self.record($0, organizationID: organizationID) })
            try await store.pruneResolved(before: now.addingTimeInterval(-7 * 86_400))
            try await audit.record(events, in: db)
        }
        audit.wake()
        if !step.notify.isEmpty {
            let targets = try await receivers.opened(organizationID: organizationID)
            let groups = Dictionary(grouping: step.notify) { "\($0.rule)\u{0}\($0.state == .resolved ? "resolved" : "firing")" }
            for key in groups.keys.sorted() {
                let alerts = groups[key]!
                let group = AlertGroup(status: alerts[0].state == .resolved ? "resolved" : "firing", alerts: alerts, organizationSlug: slug)
                for receiver in targets { await notifier.send(group, to: receiver) }
            }
        }
        return step
    }

    // MARK: What the rules see

    func samples(organizationID: UUID, slug: String, now: Date) async throws -> [String: [AlertSample]] {
        let readsReviews = rules.rules.contains { $0.kind == .reviewDue }
        let (integrations, scrape, verification, reviews) = try await database.read { db in
            let integrations = try await IntegrationStore(db).all(organizationID: organizationID, includeDeleted: false)
            return (
                integrations, try await ScrapeState.read(organizationID: organizationID, in: db),
                try await LedgerVerificationStore(db).latest(organizationID: organizationID)[organizationID],
                readsReviews ? try await SecurityReviewStore(db).latest(organizationID: organizationID) : [:]
            )
        }
        var windows: [MetricsWindow: [UUID: ActivityStats]] = [:]
        for window in Set(rules.rules.map(\.window)) where rules.rules.contains(where: { $0.window == window && $0.kind.usesWindow }) {
            windows[window] = try await monitor.stats(organizationID: organizationID, window: window)
        }
        let baseline = rules.rules.contains { $0.kind == .latencyDegradation && $0.baselineFactor > 0 }
            ? try await baselines.get(organizationID, now: now) { try await monitor.stats(organizationID: organizationID, window: .sevenDays) }
            : [:]
        // The burn-rate rules' windows, read once per window for the integrations with objectives.
        var burnStats: [String: (ActivityStats, ActivityStats)] = [:]
        let withObjectives = integrations.filter { IntegrationConfiguration.stored($0.config).slo != nil }
        if !withObjectives.isEmpty {
            var byMinutes: [Int64: [UUID: ActivityStats]] = [:]
            for rule in rules.rules where rule.kind == .sloBurnRate {
                for minutes in [rule.longWindowMinutes, rule.shortWindowMinutes] where byMinutes[minutes] == nil {
                    byMinutes[minutes] = try await monitor.stats(organizationID: organizationID, minutes: minutes)
                }
                for integration in withObjectives {
                    burnStats["\(integration.id) \(rule.longWindowMinutes) \(rule.shortWindowMinutes)"] = (
                        byMinutes[rule.longWindowMinutes]?[integration.id] ?? ActivityStats(), byMinutes[rule.shortWindowMinutes]?[integration.id] ?? ActivityStats()
                    )
                }
            }
        }
        var out: [String: [AlertSample]] = [:]
        for rule in rules.rules {
            var samples: [AlertSample] = []
            let stats = windows[rule.window] ?? [:]
            for integration in integrations {
                let labels = ["organization": slug, "integration": integration.id.uuidString.lowercased(), "integration_name": integration.name]
                let s = stats[integration.id] ?? ActivityStats()
                let calls = s.upstreamCalls
                switch rule.kind {
                case .integrationFailure:
                    let failures = monitor.collector.live(integration.id)?.consecutiveFailures ?? 0
                    if failures >= rule.consecutiveFailures || integration.status == .error {
                        samples.append(AlertSample(labels: labels, value: Double(failures)))
                    }
                case .errorRate:
                    let ratio = calls == 0 ? 0 : 1 - Double(s.successfulCalls) / Double(calls)
                    if calls >= UInt64(max(1, rule.minRequests)), ratio > rule.threshold { samples.append(AlertSample(labels: labels, value: ratio)) }
                case .latencyDegradation:
                    guard calls >= UInt64(max(1, rule.minRequests)), let p95 = s.latency.quantile(0.95).map({ $0 / 1_000_000 }) else { continue }
                    let base = baseline[integration.id].flatMap { $0.upstreamCalls >= UInt64(max(1, rule.minRequests)) ? $0.latency.quantile(0.95) : nil }.map { $0 / 1_000_000 }
                    let overAbsolute = rule.threshold > 0 && p95 > rule.threshold
                    let overBaseline = rule.baselineFactor > 1 && base.map { p95 > rule.baselineFactor * $0 } == true
                    if overAbsolute || overBaseline { samples.append(AlertSample(labels: labels, value: p95)) }
                case .quotaExhaustion:
                    let quota = monitor.collector.live(integration.id)?.quota
                    let limited = s[.rateLimited]
                    if rule.rateLimitedCalls > 0, limited >= UInt64(rule.rateLimitedCalls) {
                        samples.append(AlertSample(labels: labels, value: 0))
                    } else if rule.threshold > 0, let quota, quota < rule.threshold {
                        samples.append(AlertSample(labels: labels, value: quota))
                    }
                case .tokenRefreshFailure:
                    if s.tokenRefreshFailures > 0 { samples.append(AlertSample(labels: labels, value: Double(s.tokenRefreshFailures))) }
                case .sloBurnRate:
                    guard let slo = IntegrationConfiguration.stored(integration.config).slo else { continue }
                    for (indicator, objective) in ServiceLevels.objectives(slo) {
                        let key = "\(integration.id) \(rule.longWindowMinutes) \(rule.shortWindowMinutes)"
                        guard let (long, short) = burnStats[key] else { continue }
                        let longBurn = ServiceLevels.burnRate(ServiceLevels.events(indicator, long, slo: slo), objective: objective) ?? 0
                        let shortBurn = ServiceLevels.burnRate(ServiceLevels.events(indicator, short, slo: slo), objective: objective) ?? 0
                        if longBurn > rule.threshold, shortBurn > rule.threshold {
                            samples.append(AlertSample(labels: labels.merging(["sli": indicator.rawValue]) { a, _ in a }, value: longBurn))
                        }
                    }
                case .reviewDue:
                    // Days past the date the latest review set for the next one.
                    if let due = reviews[integration.id]?.nextDue, due <= now {
                        samples.append(AlertSample(labels: labels, value: now.timeIntervalSince(due) / 86_400))
                    }
                case .webhookBacklog, .deadLetters, .ledgerVerificationFailure:
                    break
                }
            }
            let org = ["organization": slug]
            switch rule.kind {
            case .webhookBacklog:
                let age = scrape.oldestPending[organizationID].map { max(0, now.timeIntervalSince($0)) } ?? 0
                let depth = scrape.queueDepth[organizationID] ?? 0
                if age > rule.maxAgeSeconds || depth > rule.maxDepth { samples.append(AlertSample(labels: org, value: age)) }
            case .deadLetters:
                let count = scrape.deadLetters[organizationID] ?? 0
                if Double(count) > rule.threshold { samples.append(AlertSample(labels: org, value: Double(count))) }
            case .ledgerVerificationFailure:
                if let verification, !verification.passed {
                    samples.append(AlertSample(labels: org.merging(["reason": String((verification.message ?? "failed").prefix(200))]) { a, _ in a }, value: 1))
                }
            default: break
            }
            out[rule.name] = samples
        }
        return out
    }

    static func instance(_ r: AlertStateRecord) -> AlertInstance {
        AlertInstance(
            fingerprint: r.fingerprint, rule: r.rule, labels: r.labels, annotations: r.annotations, state: AlertInstance.State(rawValue: r.state) ?? .pending,
            value: r.value ?? 0, activeAt: r.activeAt, firedAt: r.firedAt, resolvedAt: r.resolvedAt, lastSeenAt: r.lastSeenAt, lastNotifiedAt: r.lastNotifiedAt
        )
    }

    static func record(_ a: AlertInstance, organizationID: UUID) -> AlertStateRecord {
        AlertStateRecord(
            organizationID: organizationID, fingerprint: a.fingerprint, rule: a.rule, labels: a.labels, annotations: a.annotations, state: a.state.rawValue,
            value: a.value.isFinite ? a.value : nil, activeAt: a.activeAt, firedAt: a.firedAt, resolvedAt: a.resolvedAt, lastSeenAt: a.lastSeenAt,
            lastNotifiedAt: a.lastNotifiedAt
        )
    }
}

extension AlertRule.Kind {
    /// Whether the kind reads the integration's stats over the rule's window.
    var usesWindow: Bool {
        switch self {
        case .errorRate, .latencyDegradation, .quotaExhaustion, .tokenRefreshFailure: true
        default: false
        }
    }
}

/// The 7-day stats of an organization's integrations, recomputed every 10 minutes.
final class BaselineCache: Sendable {
    private let entries = Mutex<[UUID: (at: Date, stats: [UUID: ActivityStats])]>([:])

    func get(_ organizationID: UUID, now: Date, compute: () async throws -> [UUID: ActivityStats]) async throws -> [UUID: ActivityStats] {
        if let hit = entries.withLock({ $0[organizationID] }), now.timeIntervalSince(hit.at) < 600 { return hit.stats }
        let stats = try await compute()
        entries.withLock { $0[organizationID] = (now, stats) }
        return stats
    }
}
