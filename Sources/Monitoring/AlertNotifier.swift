package import Foundation
import Integrations
package import Logging
package import PortalCore
package import Storage

/// A receiver as the notifier uses it: its kind, settings and opened secrets.
package struct AlertReceiver: Sendable {
    package enum Kind: String, Sendable, CaseIterable {
        case webhook, slack, teams, sendgrid
    }

    package var id: UUID
    package var organizationID: UUID
    package var name: String
    package var kind: Kind
    /// webhook, slack, teams: where to post. sendgrid: the API's base URL (default https://api.sendgrid.com).
    package var url: String
    /// webhook: a Standard Webhooks secret (`whsec_...`): when set, each delivery is signed.
    package var signingSecret: String?
    /// sendgrid: the API key.
    package var apiKey: String?
    /// sendgrid: recipients and sender.
    package var to: [String]
    package var from: String?

    package init(id: UUID, organizationID: UUID, name: String, kind: Kind, url: String, signingSecret: String? = nil, apiKey: String? = nil, to: [String] = [], from: String? = nil) {
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.kind = kind
        self.url = url
        self.signingSecret = signingSecret
        self.apiKey = apiKey
        self.to = to
        self.from = from
    }
}

/// A group of alerts notified together: one rule's alerts that fired (or resolved) in one evaluation.
package struct AlertGroup: Sendable {
    /// `firing` or `resolved`.
    package var status: String
    package var alerts: [AlertInstance]
    package var organizationSlug: String

    package init(status: String, alerts: [AlertInstance], organizationSlug: String) {
        self.status = status
        self.alerts = alerts
        self.organizationSlug = organizationSlug
    }
}

/// Builds each receiver kind's message and sends it through the gateway's client (the destination policy
/// applies), signed with Standard Webhooks when the receiver has a secret, retried with backoff, and
/// logged in `alert_notifications`.
package struct AlertNotifier: Sendable {
    let gateway: any OutboundTransport
    let database: Database
    let clock: any WallClock
    let ids: IdentifierGenerator
    let logger: Logger
    /// The portal's public URL (Alertmanager's `externalURL`).
    let externalURL: String
    let attempts: Int
    let sleep: @Sendable (Duration) async throws -> Void

    package init(
        gateway: any OutboundTransport, database: Database, clock: any WallClock, ids: IdentifierGenerator, logger: Logger, externalURL: String, attempts: Int = 3,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.gateway = gateway
        self.database = database
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.externalURL = externalURL
        self.attempts = attempts
        self.sleep = sleep
    }

    /// Sends `group` to `receiver` and logs the outcome; never throws (a failed notification is logged).
    @discardableResult
    package func send(_ group: AlertGroup, to receiver: AlertReceiver) async -> AlertNotificationRecord {
        var status: Int?
        var error: String?
        var made = 0
        do {
            let request = try Self.request(group, receiver: receiver, externalURL: externalURL, now: clock.now(), id: ids.next())
            while made < attempts {
                made += 1
                do {
                    let answer = try await gateway.deliver(request)
                    status = answer.status
                    if (200..<300).contains(answer.status) {
                        error = nil
                        break
                    }
                    error = "HTTP \(answer.status)"
                    // A client error other than 408 and 429 will not change with a retry.
                    if (400..<500).contains(answer.status), answer.status != 408, answer.status != 429 { break }
                } catch let failure as PortalError {
                    error = failure.message
                    if failure.code == .refused { break }
                }
                if made < attempts { try? await sleep(.milliseconds(500 << (made - 1))) }
            }
        } catch let failure as PortalError {
            error = failure.message
        } catch let other {
            error = "\(type(of: other))"
        }
        let record = AlertNotificationRecord(
            id: ids.next(), organizationID: receiver.organizationID, receiverID: receiver.id, fingerprint: group.alerts.map(\.fingerprint).joined(separator: ","),
            status: group.status, attempts: made, delivered: error == nil, httpStatus: status, error: error.map { String($0.prefix(500)) }, createdAt: clock.now()
        )
        do {
            try await database.write { db in try await AlertStore(db).insert(record) }
        } catch {
            logger.warning("an alert notification could not be logged", metadata: ["portal.receiver": "\(receiver.id)"])
        }
        if let error {
            logger.warning("alert notification failed", metadata: ["portal.receiver": "\(receiver.name)", "portal.error": "\(error)", "portal.attempts": "\(made)"])
        }
        return record
    }

    // MARK: Messages

    /// The HTTP request that notifies `receiver` of `group`.
    package static func request(_ group: AlertGroup, receiver: AlertReceiver, externalURL: String, now: Date, id: UUID) throws(PortalError) -> OutboundRequest {
        let body: JSONValue
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        var target = receiver.url
        switch receiver.kind {
        case .webhook: body = alertmanagerPayload(group, receiver: receiver.name, externalURL: externalURL)
        case .slack: body = slackPayload(group, externalURL: externalURL)
        case .teams: body = teamsPayload(group, externalURL: externalURL)
        case .sendgrid:
            body = sendgridPayload(group, receiver: receiver, externalURL: externalURL)
            target = (receiver.url.isEmpty ? "https://api.sendgrid.com" : receiver.url).trimmingSuffix("/") + "/v3/mail/send"
            headers.append(("Authorization", "Bearer \(receiver.apiKey ?? "")"))
        }
        guard let url = URL(string: target), url.host != nil else { throw PortalError(.configuration, "the receiver's URL is not an absolute URL") }
        let bytes = Array(body.sortedText.utf8)
        if let secret = receiver.signingSecret, let signed = StandardWebhooks.headers(secret: secret, id: "msg_" + id.uuidString.lowercased(), body: bytes, now: now) {
            headers += signed
        }
        return OutboundRequest(method: "POST", url: url, headers: headers, body: bytes)
    }

    static func generatorURL(_ alert: AlertInstance, externalURL: String) -> String {
        if let integration = alert.labels["integration"] { return "\(externalURL)/portal/integrations/\(integration)/metrics?window=5m" }
        return "\(externalURL)/portal/alerts"
    }

    static func labelsOf(_ map: [String: String]) -> JSONValue { .object(map.mapValues(JSONValue.string)) }

    /// Labels (or annotations) every alert of the group shares.
    static func common(_ maps: [[String: String]]) -> [String: String] {
        guard var shared = maps.first else { return [:] }
        for map in maps.dropFirst() { shared = shared.filter { map[$0.key] == $0.value } }
        return shared
    }

    /// Alertmanager's webhook payload, version 4.
    package static func alertmanagerPayload(_ group: AlertGroup, receiver: String, externalURL: String) -> JSONValue {
        let alerts: [JSONValue] = group.alerts.map { a in
            [
                "status": .string(a.state == .resolved ? "resolved" : "firing"), "labels": labelsOf(a.labels), "annotations": labelsOf(a.annotations),
                "startsAt": .string(Timestamp.rfc3339(a.firedAt ?? a.activeAt)),
                "endsAt": .string(a.resolvedAt.map(Timestamp.rfc3339) ?? "0001-01-01T00:00:00Z"),
                "generatorURL": .string(generatorURL(a, externalURL: externalURL)), "fingerprint": .string(a.fingerprint),
            ]
        }
        let groupLabels = ["alertname": group.alerts.first?.rule ?? ""]
        return [
            "version": "4", "receiver": .string(receiver), "status": .string(group.status), "alerts": .array(alerts),
            "groupLabels": labelsOf(groupLabels), "commonLabels": labelsOf(common(group.alerts.map(\.labels))),
            "commonAnnotations": labelsOf(common(group.alerts.map(\.annotations))), "externalURL": .string(externalURL),
            "groupKey": .string("{}:{alertname=\"\(groupLabels["alertname"]!)\"}"), "truncatedAlerts": 0,
        ]
    }

    static func title(_ group: AlertGroup) -> String {
        let severity = common(group.alerts.map(\.labels))["severity"].map { " (\($0))" } ?? ""
        return "[\(group.status.uppercased()):\(group.alerts.count)] \(group.alerts.first?.rule ?? "alert")\(severity) in \(group.organizationSlug)"
    }

    static func lines(_ group: AlertGroup) -> [String] {
        group.alerts.map { a in
            let summary = a.annotations["summary"] ?? a.rule
            let description = a.annotations["description"].map { ": \($0)" } ?? ""
            return "\(summary)\(description)"
        }
    }

    /// A Slack incoming-webhook message: `text` (the fallback) and Block Kit `blocks`.
    package static func slackPayload(_ group: AlertGroup, externalURL: String) -> JSONValue {
        let title = title(group)
        var blocks: [JSONValue] = [["type": "header", "text": ["type": "plain_text", "text": .string(String(title.prefix(150)))]]]
        for (alert, line) in zip(group.alerts.prefix(20), lines(group)) {
            blocks.append(["type": "section", "text": ["type": "mrkdwn", "text": .string(String("\(line)\n<\(generatorURL(alert, externalURL: externalURL))|Open in the portal>".prefix(3000)))]])
        }
        blocks.append(["type": "context", "elements": [["type": "mrkdwn", "text": .string("portal alerting · \(externalURL)")]]])
        return ["text": .string(([title] + lines(group)).joined(separator: "\n")), "blocks": .array(blocks)]
    }

    /// A Microsoft Teams workflow message carrying an Adaptive Card.
    package static func teamsPayload(_ group: AlertGroup, externalURL: String) -> JSONValue {
        var body: [JSONValue] = [[
            "type": "TextBlock", "text": .string(title(group)), "weight": "Bolder", "size": "Medium", "wrap": true,
            "color": .string(group.status == "resolved" ? "Good" : "Attention"),
        ]]
        for (alert, line) in zip(group.alerts.prefix(20), lines(group)) {
            body.append(["type": "TextBlock", "text": .string(line), "wrap": true])
            body.append(["type": "FactSet", "facts": .array(alert.labels.keys.sorted().map { ["title": .string($0), "value": .string(alert.labels[$0]!)] })])
        }
        let card: JSONValue = [
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": .array(body),
            "actions": [["type": "Action.OpenUrl", "title": "Open in the portal", "url": .string("\(externalURL)/portal/alerts")]],
        ]
        return ["type": "message", "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": .null, "content": card]]]
    }

    /// A SendGrid v3 mail/send request.
    package static func sendgridPayload(_ group: AlertGroup, receiver: AlertReceiver, externalURL: String) -> JSONValue {
        let text = (lines(group) + ["", "\(externalURL)/portal/alerts"]).joined(separator: "\n")
        let html = "<h2>\(escape(title(group)))</h2><ul>" + lines(group).map { "<li>\(escape($0))</li>" }.joined() + "</ul><p><a href=\"\(escape(externalURL))/portal/alerts\">Open in the portal</a></p>"
        return [
            "personalizations": [["to": .array(receiver.to.map { ["email": .string($0)] })]],
            "from": ["email": .string(receiver.from ?? "alerts@localhost")],
            "subject": .string(title(group)),
            "content": [["type": "text/plain", "value": .string(text)], ["type": "text/html", "value": .string(html)]],
        ]
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var s = self
        while s.hasSuffix(suffix) { s.removeLast(suffix.count) }
        return s
    }
}
