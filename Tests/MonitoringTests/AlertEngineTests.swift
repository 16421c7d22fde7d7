import Foundation
import Testing
@testable import Monitoring
import PortalCore

/// Prometheus' alerting semantics with an injected clock: pending -> firing after `for`, `keep_firing_for`,
/// resolution, repeat interval, silences, deduplication by fingerprint, and templated annotations.
@Suite struct AlertEngineTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func rule(for forSeconds: TimeInterval = 120, keep: TimeInterval = 0, repeatEvery: TimeInterval = 3600) -> AlertRule {
        var rule = AlertRule(name: "IntegrationErrorRateHigh", kind: .errorRate)
        rule.forSeconds = forSeconds
        rule.keepFiringForSeconds = keep
        rule.repeatIntervalSeconds = repeatEvery
        rule.labels = ["severity": "warning"]
        rule.annotations = ["summary": "{{ $labels.integration_name }} failing at {{ $value | humanizePercentage }}"]
        return rule
    }

    static let breach = ["IntegrationErrorRateHigh": [AlertSample(labels: ["organization": "acme", "integration": "i-1", "integration_name": "CRM"], value: 0.5)]]
    static let clear: [String: [AlertSample]] = ["IntegrationErrorRateHigh": []]

    /// Runs evaluations at the given offsets (seconds from t0) with the given samples; returns each step.
    static func run(_ rule: AlertRule, _ script: [(TimeInterval, [String: [AlertSample]])], silences: [[SilenceMatcher]] = []) -> [AlertStep] {
        var states: [AlertInstance] = []
        var steps: [AlertStep] = []
        for (offset, samples) in script {
            let step = AlertEngine.step(rules: [rule], samples: samples, previous: states, silences: silences, now: t0.addingTimeInterval(offset))
            states = step.instances
            steps.append(step)
        }
        return steps
    }

    @Test func pendingThenFiringAfterForThenResolved() {
        let steps = Self.run(Self.rule(), [(0, Self.breach), (60, Self.breach), (120, Self.breach), (150, Self.breach), (180, Self.clear)])
        #expect(steps[0].instances.map(\.state) == [.pending])
        #expect(steps[0].fired.isEmpty && steps[0].notify.isEmpty)
        #expect(steps[1].instances.map(\.state) == [.pending])
        #expect(steps[2].instances.map(\.state) == [.firing], "fires once `for` (120 s) has passed")
        #expect(steps[2].fired.count == 1 && steps[2].notify.count == 1)
        #expect(steps[2].notify[0].annotations["summary"] == "CRM failing at 50%")
        #expect(steps[2].notify[0].labels["alertname"] == "IntegrationErrorRateHigh" && steps[2].notify[0].labels["severity"] == "warning")
        #expect(steps[3].notify.isEmpty, "no repeat before the repeat interval")
        #expect(steps[4].resolved.count == 1 && steps[4].instances.map(\.state) == [.resolved])
        #expect(steps[4].notify.map(\.state) == [.resolved], "the resolution is notified")
        #expect(steps[4].notify[0].resolvedAt == Self.t0.addingTimeInterval(180))
    }

    @Test func pendingThatClearsIsDroppedWithoutNotification() {
        let steps = Self.run(Self.rule(), [(0, Self.breach), (60, Self.clear), (90, Self.breach)])
        #expect(steps[1].instances.isEmpty && steps[1].resolved.isEmpty && steps[1].notify.isEmpty)
        #expect(steps[2].instances.first?.activeAt == Self.t0.addingTimeInterval(90), "a new pending period starts")
    }

    @Test func keepFiringForHoldsThenResolves() {
        let steps = Self.run(Self.rule(for: 0, keep: 120), [(0, Self.breach), (30, Self.clear), (100, Self.clear), (150, Self.clear)])
        #expect(steps[0].instances.map(\.state) == [.firing], "for: 0 fires at once")
        #expect(steps[1].instances.map(\.state) == [.firing] && steps[1].resolved.isEmpty)
        #expect(steps[2].instances.map(\.state) == [.firing], "still within keep_firing_for of the last breach (t=0)")
        #expect(steps[3].resolved.count == 1, "resolved once 120 s passed since the condition last held")
    }

    @Test func repeatIntervalRenotifies() {
        let steps = Self.run(Self.rule(for: 0, repeatEvery: 600), [(0, Self.breach), (300, Self.breach), (600, Self.breach), (900, Self.breach), (1200, Self.breach)])
        #expect(steps.map(\.notify.count) == [1, 0, 1, 0, 1])
        #expect(steps.map(\.fired.count) == [1, 0, 0, 0, 0], "fired (ledgered) once")
    }

    @Test func silenceHoldsNotificationsButNotState() {
        let silence = [[SilenceMatcher(name: "integration", value: "i-.*", isRegex: true)]]
        let steps = Self.run(Self.rule(for: 0), [(0, Self.breach), (60, Self.clear)], silences: silence)
        #expect(steps[0].fired.count == 1 && steps[0].notify.isEmpty && steps[0].silenced.count == 1)
        #expect(steps[0].instances.first?.lastNotifiedAt == nil)
        #expect(steps[1].resolved.count == 1 && steps[1].notify.isEmpty, "no resolution for a firing that was never sent")
        let other = [[SilenceMatcher(name: "integration", value: "i-2")]]
        #expect(Self.run(Self.rule(for: 0), [(0, Self.breach)], silences: other)[0].notify.count == 1)
        let negative = [[SilenceMatcher(name: "severity", value: "warning", isEqual: false)]]
        #expect(Self.run(Self.rule(for: 0), [(0, Self.breach)], silences: negative)[0].notify.count == 1)
    }

    @Test func deduplicatesByLabelFingerprint() {
        let twice = ["IntegrationErrorRateHigh": Self.breach["IntegrationErrorRateHigh"]! + Self.breach["IntegrationErrorRateHigh"]!]
        let step = Self.run(Self.rule(for: 0), [(0, twice)])[0]
        #expect(step.instances.count == 1 && step.notify.count == 1)
        let a = AlertEngine.fingerprint(["a": "1", "b": "2"])
        #expect(a == AlertEngine.fingerprint(["b": "2", "a": "1"]) && a.count == 16)
        #expect(a != AlertEngine.fingerprint(["a": "1", "b": "3"]))
    }

    @Test func templates() {
        #expect(AlertTemplate.render("{{ $value | humanizeDuration }}", labels: [:], value: 3725) == "1h 2m 5s")
        #expect(AlertTemplate.render("{{ $value | humanizeDuration }}", labels: [:], value: 0.25) == "250ms")
        #expect(AlertTemplate.render("{{ $value }} on {{$labels.x}}", labels: ["x": "y"], value: 5) == "5 on y")
        #expect(AlertTemplate.render("open {{ never closed", labels: [:], value: 1) == "open {{ never closed")
    }

    @Test func ruleFileErrorsNameTheRuleAndField() throws {
        let rules = try AlertRuleSet.load(path: nil)
        #expect(Set(rules.rules.map(\.kind.rawValue)) == Set(AlertRule.Kind.allCases.map(\.rawValue)), "the default file covers every kind")
        #expect(rules.evaluationIntervalSeconds == 30)
        let bad = """
            rules:
              - alert: A
                kind: error_rate
                threshold: 2
                for: soon
              - alert: A
                kind: nonsense
              - alert: B
                kind: dead_letters
                colour: red
            """
        #expect {
            try AlertRuleSet(yaml: bad, source: "test.yml")
        } throws: { error in
            let message = (error as? PortalError)?.message ?? ""
            return message.contains("rules[0] (A): threshold") && message.contains("rules[0] (A): for") && message.contains("rules[1] (A): the name is used twice")
                && message.contains("rules[1] (A): kind must be") && message.contains("rules[2] (B): unknown field colour")
        }
    }
}
