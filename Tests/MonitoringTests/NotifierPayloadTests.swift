import Foundation
import Gateway
import PortalCore
import Testing
@testable import Monitoring

/// The receivers' messages: Alertmanager's webhook payload, Slack blocks, a Teams Adaptive Card, a SendGrid
/// mail, and the Standard Webhooks headers; and receiver bodies refused with the field named.
@Suite struct NotifierPayloadTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func group(status: String = "firing") -> AlertGroup {
        let labels = ["alertname": "IntegrationFailing", "severity": "critical", "organization": "acme", "integration": "i-1", "integration_name": "CRM"]
        var alert = AlertInstance(
            fingerprint: AlertEngine.fingerprint(labels), rule: "IntegrationFailing", labels: labels,
            annotations: ["summary": "CRM is failing", "description": "7 calls in a row failed <b>"], state: status == "firing" ? .firing : .resolved,
            value: 7, activeAt: now, firedAt: now, lastSeenAt: now
        )
        if status == "resolved" { alert.resolvedAt = now.addingTimeInterval(600) }
        return AlertGroup(status: status, alerts: [alert], organizationSlug: "acme")
    }

    @Test func alertmanagerPayloadVersion4() throws {
        let payload = try #require(AlertNotifier.alertmanagerPayload(Self.group(status: "resolved"), receiver: "oncall", externalURL: "https://portal.example.com").objectValue)
        #expect(Set(payload.keys) == ["version", "receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "groupKey", "truncatedAlerts"])
        #expect(payload["version"] == "4" && payload["status"] == "resolved" && payload["groupKey"] == #"{}:{alertname="IntegrationFailing"}"#)
        let alert = try #require(payload["alerts"]?.arrayValue?.first?.objectValue)
        #expect(Set(alert.keys) == ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"])
        #expect(alert["endsAt"] == .string(Timestamp.rfc3339(Self.now.addingTimeInterval(600))))
        #expect(alert["generatorURL"] == "https://portal.example.com/portal/integrations/i-1/metrics?window=5m")
        #expect(payload["commonLabels"]?.objectValue?["severity"] == "critical")
    }

    @Test func slackTeamsAndSendGrid() throws {
        let slack = try #require(AlertNotifier.slackPayload(Self.group(), externalURL: "https://p").objectValue)
        #expect(slack["text"]?.stringValue?.hasPrefix("[FIRING:1] IntegrationFailing (critical) in acme") == true)
        #expect(slack["blocks"]?.arrayValue?.first?.objectValue?["type"] == "header")

        let teams = try #require(AlertNotifier.teamsPayload(Self.group(), externalURL: "https://p").objectValue)
        #expect(teams["type"] == "message")
        let attachment = try #require(teams["attachments"]?.arrayValue?.first?.objectValue)
        #expect(attachment["contentType"] == "application/vnd.microsoft.card.adaptive")
        let card = try #require(attachment["content"]?.objectValue)
        #expect(card["type"] == "AdaptiveCard" && card["version"] == "1.4" && card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json")
        #expect(card["body"]?.arrayValue?.contains { $0.objectValue?["type"] == "FactSet" } == true)

        let receiver = AlertReceiver(id: UUID(), organizationID: UUID(), name: "mail", kind: .sendgrid, url: "", apiKey: "SG.key-1234567890", to: ["oncall@example.com"], from: "alerts@example.com")
        let request = try AlertNotifier.request(Self.group(), receiver: receiver, externalURL: "https://p", now: Self.now, id: UUID())
        #expect(request.url.absoluteString == "https://api.sendgrid.com/v3/mail/send" && request.header("Authorization") == "Bearer SG.key-1234567890")
        let mail = try #require(try JSONValue.parse(Data(request.body)).objectValue)
        #expect(mail["personalizations"]?.arrayValue?.first?.objectValue?["to"]?.arrayValue?.first?.objectValue?["email"] == "oncall@example.com")
        #expect(mail["from"]?.objectValue?["email"] == "alerts@example.com" && mail["subject"]?.stringValue?.contains("IntegrationFailing") == true)
        let html = mail["content"]?.arrayValue?.last?.objectValue?["value"]?.stringValue ?? ""
        #expect(html.contains("&lt;b&gt;") && !html.contains("<b>"), "annotations are escaped in HTML mail")
        #expect(request.header("webhook-signature") == nil, "only webhook receivers with a secret sign")
    }

    @Test func receiverBodiesAreChecked() {
        func problems(_ json: JSONValue) -> [String] {
            do {
                _ = try AlertReceivers.parse(json)
                return []
            } catch {
                return error.fieldErrors.map(\.pointer)
            }
        }
        #expect(problems(["name": "a", "kind": "webhook", "url": "https://x.example/h"]).isEmpty)
        #expect(problems(["name": "a", "kind": "pager"]) == ["/kind"])
        #expect(problems(["name": "a b", "kind": "slack"]) == ["/name", "/url"])
        #expect(problems(["name": "a", "kind": "slack", "url": "ftp://x"]) == ["/url"])
        #expect(problems(["name": "a", "kind": "webhook", "url": "https://x.example/h", "secret": "short"]) == ["/secret"])
        #expect(problems(["name": "a", "kind": "slack", "url": "https://x.example/h", "secret": "whsec_AAAAAAAAAAAAAAAAAAAAAA=="]) == ["/secret"])
        #expect(problems(["name": "a", "kind": "sendgrid"]) == ["/apiKey", "/to", "/from"])
        #expect(problems(["name": "a", "kind": "teams", "url": "https://x.example/h", "colour": "red"]) == ["/colour"])
    }
}
