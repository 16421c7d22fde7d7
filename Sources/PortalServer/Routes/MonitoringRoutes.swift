import Foundation
import HTTPTypes
import Hummingbird
import Integrations
import Monitoring
import PortalCore
import Storage

/// Metrics (JSON windows and Prometheus exposition), alerts, silences, receivers and the notification log.
struct MonitoringRoutes {
    let alertReceivers: AlertReceivers
    let alertRules: AlertRuleSet
    let clock: any WallClock
    let database: Database
    let integrations: IntegrationRegistry
    let maxBodyBytes: Int
    let metricsToken: MetricsTokenAuthority
    let monitor: IntegrationMonitor

    func register(on router: Router<PortalRequestContext>, portal group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let monitor = self.monitor
        let alerts = self.alertReceivers
        table.open(router, .get, "/metrics") { request, _ in
            guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer "),
                  try await self.metricsToken.check(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces))
            else {
                throw PortalError(.unauthenticated, "/metrics needs the metrics token (Authorization: Bearer <PORTAL_METRICS_TOKEN>); organization tokens read /portal/metrics")
            }
            return try await exposition(organizationID: nil)
        }
        table.guarded(group, prefix: "/portal", .get, "/metrics", .readIntegrations) { _, _, principal in
            try await exposition(organizationID: principal.organizationID)
        }
        table.guarded(group, prefix: "/portal", .get, "/metrics/summary", .readIntegrations) { request, _, principal in
            let window = try Self.window(request)
            let only = try Self.ids(request)
            var integrations = try await self.database.read { db in
                try await IntegrationStore(db).all(organizationID: principal.organizationID, includeDeleted: false)
            }
            if let only { integrations = integrations.filter { only.contains($0.id) } }
            let (reports, totals, lastHour) = try await monitor.summary(
                organizationID: principal.organizationID, integrations: integrations.map { ($0.id, $0.status) }, only: only != nil, window: window
            )
            let names = Dictionary(uniqueKeysWithValues: integrations.map { ($0.id.uuidString.lowercased(), $0.name) })
            let calls = totals.upstreamCalls
            let items: [JSONValue] = try reports.map { report in
                var json = try JSONValue.parse(JSONOutput.encode(report))
                if case .object(var m) = json {
                    m["name"] = .string(names[report.integrationId] ?? "")
                    if only != nil, window == .oneHour {
                        let counts = UUID(uuidString: report.integrationId).flatMap { lastHour[$0] } ?? [UInt64](repeating: 0, count: 60)
                        m["lastHour"] = .array(counts.map { .int(Int64(clamping: $0)) })
                    }
                    json = .object(m)
                }
                return json
            }
            let health = Dictionary(grouping: reports, by: \.health).mapValues { JSONValue.int(Int64($0.count)) }
            return JSONOutput.response([
                "organization": .string(principal.organizationSlug), "window": .string(window.rawValue),
                "totals": [
                    "totalRequests": .int(Int64(calls)), "successfulRequests": .int(Int64(totals.successfulCalls)),
                    "errorRate": calls == 0 ? .null : .double(1 - Double(totals.successfulCalls) / Double(calls)),
                    "p95ResponseTime": totals.latency.quantile(0.95).map { .double(($0).rounded() / 1000) } ?? .null,
                ],
                "health": .object(health), "integrations": .array(items),
            ] as JSONValue)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/metrics", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let window = try Self.window(request)
            let status = try await self.integrations.status(id: id, organizationID: principal.organizationID)
            return JSONOutput.response(try await monitor.report(integrationID: id, organizationID: principal.organizationID, status: status.status, window: window))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/metrics/series", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let window = try Self.window(request)
            guard window != .thirtyDays else {
                throw PortalError.validation([.init(pointer: "?window", message: "a series covers 5m, 1h, 24h or 7d")])
            }
            _ = try await self.integrations.status(id: id, organizationID: principal.organizationID)
            return JSONOutput.response(try await monitor.series(organizationID: principal.organizationID, integrationID: id, window: window))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/slo", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let integration = try await self.integrations.get(id: id, organizationID: principal.organizationID)
            return JSONOutput.response(try await monitor.serviceLevels(organizationID: principal.organizationID, integrationID: id, config: integration.config))
        }
        table.guarded(group, prefix: "/portal", .get, "/alerts", .readIntegrations) { request, _, principal in
            let hours = try request.queryInteger("recentHours", default: 24, in: 1...168)
            let (active, recent) = try await alerts.alerts(by: principal, recentHours: hours)
            return JSONOutput.response(AlertsAnswer(active: active, recent: recent, silences: try await alerts.silences(by: principal)))
        }
        table.guarded(group, prefix: "/portal", .get, "/alerts/rules", .readIntegrations) { _, _, _ in
            JSONOutput.response(RulesAnswer(evaluationInterval: self.alertRules.evaluationIntervalSeconds, rules: self.alertRules.rules.map(RuleView.init)))
        }
        table.guarded(group, prefix: "/portal", .get, "/alerts/silences", .readIntegrations) { _, _, principal in
            JSONOutput.response(Page(items: try await alerts.silences(by: principal), nextCursor: nil))
        }
        table.guarded(group, prefix: "/portal", .post, "/alerts/silences", .manageIntegrations) { request, _, principal in
            JSONOutput.response(try await alerts.silence(try await request.jsonBody(limit: self.maxBodyBytes), by: principal), status: .created)
        }
        table.guarded(group, prefix: "/portal", .delete, "/alerts/silences/{id}", .manageIntegrations) { _, context, principal in
            try await alerts.expire(silenceID: try context.uuidParameter("id", what: "silence"), by: principal)
            return Response(status: .noContent)
        }
        table.guarded(group, prefix: "/portal", .get, "/alerts/receivers", .readIntegrations) { _, _, principal in
            JSONOutput.response(Page(items: try await alerts.list(by: principal), nextCursor: nil))
        }
        table.guarded(group, prefix: "/portal", .post, "/alerts/receivers", .manageIntegrations) { request, _, principal in
            JSONOutput.response(try await alerts.create(try await request.jsonBody(limit: self.maxBodyBytes), by: principal), status: .created)
        }
        table.guarded(group, prefix: "/portal", .delete, "/alerts/receivers/{id}", .manageIntegrations) { _, context, principal in
            try await alerts.delete(id: try context.uuidParameter("id", what: "receiver"), by: principal)
            return Response(status: .noContent)
        }
        table.guarded(group, prefix: "/portal", .get, "/alerts/notifications", .readIntegrations) { request, _, principal in
            let limit = try request.queryInteger("limit", default: 100, in: 1...1000)
            return JSONOutput.response(Page(items: try await alerts.notifications(by: principal, limit: limit), nextCursor: nil))
        }
    }

    /// The Prometheus text of one organization, or of all when nil.
    private func exposition(organizationID: UUID?) async throws -> Response {
        let state = try await self.database.read { db in try await ScrapeState.read(organizationID: organizationID, in: db) }
        let verifications = try await self.database.read { db in try await LedgerVerificationStore(db).latest(organizationID: organizationID) }
        let text = PortalExposition.render(
            state: state, snapshots: self.monitor.collector.snapshots(organizationID: organizationID),
            verifications: verifications.mapValues { LedgerVerificationStatus(passed: $0.passed, at: $0.at, size: $0.size, message: $0.message) },
            ruleNames: self.alertRules.rules.map(\.name), now: self.clock.now()
        )
        return Response(status: .ok, headers: [.contentType: PrometheusText.contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// `ids`: up to 200 integration ids, comma-separated (a page of a long list); nil when absent.
    static func ids(_ request: Request) throws(PortalError) -> Set<UUID>? {
        guard let text = request.queryString("ids") else { return nil }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let ids = parts.compactMap { UUID(uuidString: String($0)) }
        guard !parts.isEmpty, parts.count <= 200, ids.count == parts.count else {
            throw PortalError.validation([.init(pointer: "?ids", message: "must be 1 to 200 integration ids, comma-separated")])
        }
        return Set(ids)
    }

    static func window(_ request: Request) throws(PortalError) -> MetricsWindow {
        guard let text = request.queryString("window") else { return .oneHour }
        guard let window = MetricsWindow(rawValue: text) else {
            throw PortalError(.validationFailed, "window must be one of 5m, 1h, 24h, 7d, 30d", fieldErrors: [.init(pointer: "window", message: "must be one of 5m, 1h, 24h, 7d, 30d")])
        }
        return window
    }
}

struct AlertsAnswer: Encodable {
    var active: [AlertView]
    var recent: [AlertView]
    var silences: [SilenceView]
}

struct RulesAnswer: Encodable {
    var evaluationInterval: Double
    var rules: [RuleView]
}

struct RuleView: Encodable {
    var alert: String
    var kind: String
    var forSeconds: Double
    var keepFiringForSeconds: Double
    var repeatIntervalSeconds: Double
    var window: String
    var threshold: Double
    var minRequests: Int
    var labels: [String: String]
    var annotations: [String: String]

    init(_ rule: AlertRule) {
        alert = rule.name
        kind = rule.kind.rawValue
        forSeconds = rule.forSeconds
        keepFiringForSeconds = rule.keepFiringForSeconds
        repeatIntervalSeconds = rule.repeatIntervalSeconds
        window = rule.window.rawValue
        threshold = rule.threshold
        minRequests = rule.minRequests
        labels = rule.labels
        annotations = rule.annotations
    }
}
