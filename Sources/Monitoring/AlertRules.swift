package import Foundation
import Crypto
import Integrations
import Ledger
package import PortalCore

/// One alert rule, Prometheus-style: a kind with its parameters, `for` (pending before firing),
/// `keepFiringFor`, `repeatInterval`, and labels and annotations (templates over `$labels` and `$value`).
package struct AlertRule: Sendable, Equatable {
    package enum Kind: String, Sendable, CaseIterable {
        case integrationFailure = "integration_failure", errorRate = "error_rate", latencyDegradation = "latency_degradation"
        case quotaExhaustion = "quota_exhaustion", webhookBacklog = "webhook_backlog", deadLetters = "dead_letters"
        case tokenRefreshFailure = "token_refresh_failure", ledgerVerificationFailure = "ledger_verification_failure"
        /// An integration's security review is due (its latest review's next-review date has passed).
        case reviewDue = "review_due"
        /// An integration's error budget burns faster than `threshold` times over both `longWindow` and
        /// `shortWindow` (the SRE workbook's multi-window, multi-burn-rate alert), per indicator.
        case sloBurnRate = "slo_burn_rate"
    }

    package var name: String
    package var kind: Kind
    /// Seconds the condition must hold before the alert fires.
    package var forSeconds: TimeInterval
    /// Seconds a firing alert keeps firing after its condition cleared.
    package var keepFiringForSeconds: TimeInterval
    /// Seconds between notifications of an alert that keeps firing.
    package var repeatIntervalSeconds: TimeInterval
    package var labels: [String: String]
    package var annotations: [String: String]
    /// The window the kind looks at (error_rate, latency_degradation, quota_exhaustion, token_refresh_failure).
    package var window: MetricsWindow
    /// error_rate: the ratio above which it fires; latency_degradation: p95 seconds; dead_letters: the count
    /// above which it fires; quota_exhaustion: the remaining fraction under which it fires.
    package var threshold: Double
    /// Fewest upstream calls in the window before error_rate or latency_degradation judge.
    package var minRequests: Int
    /// integration_failure: failed calls in a row.
    package var consecutiveFailures: Int
    /// latency_degradation: fire above this multiple of the integration's own 7-day p95 (0: off).
    package var baselineFactor: Double
    /// quota_exhaustion: also fire on this many 429s (`rate_limited` outcomes) in the window (0: off).
    package var rateLimitedCalls: Int
    /// webhook_backlog: oldest waiting event's age (seconds) and queue depth above which it fires.
    package var maxAgeSeconds: Double
    package var maxDepth: Int
    /// slo_burn_rate: the two windows, in minutes, both over `threshold` (the burn rate) to fire.
    package var longWindowMinutes: Int64
    package var shortWindowMinutes: Int64

    package init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
        forSeconds = 0
        keepFiringForSeconds = 0
        repeatIntervalSeconds = 4 * 3600
        labels = [:]
        annotations = [:]
        window = .fiveMinutes
        threshold = 0
        minRequests = 0
        consecutiveFailures = 5
        baselineFactor = 0
        rateLimitedCalls = 0
        maxAgeSeconds = 300
        maxDepth = 1000
        longWindowMinutes = 60
        shortWindowMinutes = 5
    }
}

/// A rule file: `evaluationInterval` and `rules`. The default (`Resources/alert-rules.yml`, the same rules
/// as `dashboards/prometheus/rules.yml`) is replaced by the file at `PORTAL_ALERT_RULES` when set.
package struct AlertRuleSet: Sendable, Equatable {
    package var evaluationIntervalSeconds: TimeInterval
    package var rules: [AlertRule]

    package init(evaluationIntervalSeconds: TimeInterval = 30, rules: [AlertRule]) {
        self.evaluationIntervalSeconds = evaluationIntervalSeconds
        self.rules = rules
    }

    package static func load(path: String?) throws(PortalError) -> AlertRuleSet {
        if let path, !path.isEmpty {
            guard let data = FileManager.default.contents(atPath: path) else { throw PortalError(.configuration, "cannot read the alert rules at \(path)") }
            return try AlertRuleSet(yaml: String(decoding: data, as: UTF8.self), source: path)
        }
        guard let url = Bundle.module.url(forResource: "alert-rules", withExtension: "yml"), let data = try? Data(contentsOf: url) else {
            throw PortalError(.internal, "the default alert rules are missing from the build")
        }
        return try AlertRuleSet(yaml: String(decoding: data, as: UTF8.self), source: "the default alert rules")
    }

    /// Parses and checks a rule file; every problem is named with its rule and field.
    package init(yaml: String, source: String) throws(PortalError) {
        let root = try YAMLDocument.parse(yaml, source: source)
        guard case .object(let top) = root, case .array(let entries)? = top["rules"] else {
            throw PortalError(.configuration, "\(source) must have a rules list")
        }
        var problems: [String] = []
        func duration(_ value: JSONValue?, _ field: String, default fallback: TimeInterval) -> TimeInterval {
            guard let value else { return fallback }
            guard let text = value.stringValue, let seconds = try? DurationText.seconds(text, field: field, allowZero: true) else {
                problems.append("\(field) must be a duration such as 30s, 5m or 4h")
                return fallback
            }
            return seconds
        }
        evaluationIntervalSeconds = duration(top["evaluationInterval"], "evaluationInterval", default: 30)
        var rules: [AlertRule] = []
        var names = Set<String>()
        let known: Set<String> = [
            "alert", "kind", "for", "keepFiringFor", "repeatInterval", "labels", "annotations", "window", "threshold", "minRequests",
            "consecutiveFailures", "baselineFactor", "rateLimitedCalls", "maxAge", "maxDepth", "longWindow", "shortWindow",
        ]
        for (index, entry) in entries.enumerated() {
            guard case .object(let m) = entry else {
                problems.append("rules[\(index)] must be a mapping")
                continue
            }
            let name = m["alert"]?.stringValue ?? ""
            let at = "rules[\(index)] (\(name.isEmpty ? "unnamed" : name))"
            for key in m.keys.sorted() where !known.contains(key) { problems.append("\(at): unknown field \(key)") }
            guard name.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil else {
                problems.append("\(at): alert must be a name of letters, digits and underscores")
                continue
            }
            if !names.insert(name).inserted { problems.append("\(at): the name is used twice") }
            guard let kind = m["kind"]?.stringValue.flatMap(AlertRule.Kind.init(rawValue:)) else {
                problems.append("\(at): kind must be one of \(AlertRule.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            var rule = AlertRule(name: name, kind: kind)
            rule.forSeconds = duration(m["for"], "\(at): for", default: 0)
            rule.keepFiringForSeconds = duration(m["keepFiringFor"], "\(at): keepFiringFor", default: 0)
            rule.repeatIntervalSeconds = duration(m["repeatInterval"], "\(at): repeatInterval", default: 4 * 3600)
            if let w = m["window"] {
                if let window = w.stringValue.flatMap(MetricsWindow.init(rawValue:)) { rule.window = window } else { problems.append("\(at): window must be 5m, 1h, 24h, 7d or 30d") }
            }
            func strings(_ key: String) -> [String: String] {
                guard let value = m[key] else { return [:] }
                guard case .object(let o) = value, o.values.allSatisfy({ $0.stringValue != nil }) else {
                    problems.append("\(at): \(key) must be a mapping of strings")
                    return [:]
                }
                return o.compactMapValues(\.stringValue)
            }
            rule.labels = strings("labels")
            rule.annotations = strings("annotations")
            func number(_ key: String) -> Double? {
                guard let value = m[key] else { return nil }
                switch value {
                case .int(let i): return Double(i)
                case .double(let d): return d
                default:
                    problems.append("\(at): \(key) must be a number")
                    return nil
                }
            }
            rule.threshold = number("threshold") ?? rule.threshold
            rule.minRequests = Int(number("minRequests") ?? 0)
            rule.consecutiveFailures = Int(number("consecutiveFailures") ?? 5)
            rule.baselineFactor = number("baselineFactor") ?? 0
            rule.rateLimitedCalls = Int(number("rateLimitedCalls") ?? 0)
            rule.maxAgeSeconds = duration(m["maxAge"], "\(at): maxAge", default: 300)
            rule.maxDepth = Int(number("maxDepth") ?? 1000)
            rule.longWindowMinutes = Int64(duration(m["longWindow"], "\(at): longWindow", default: 3600) / 60)
            rule.shortWindowMinutes = Int64(duration(m["shortWindow"], "\(at): shortWindow", default: 300) / 60)
            switch kind {
            case .sloBurnRate where rule.threshold <= 1:
                problems.append("\(at): threshold must be the burn rate above which it fires (more than 1, such as 14.4)")
            case .sloBurnRate where !(1...Int64(44_640)).contains(rule.shortWindowMinutes) || rule.longWindowMinutes <= rule.shortWindowMinutes || rule.longWindowMinutes > 44_640:
                problems.append("\(at): shortWindow and longWindow must be whole minutes, the short one shorter, the long one at most 31d")
            case .errorRate where !(0..<1).contains(rule.threshold):
                problems.append("\(at): threshold must be a ratio between 0 and 1")
            case .latencyDegradation where rule.threshold <= 0 && rule.baselineFactor <= 1:
                problems.append("\(at): give threshold (p95 seconds) or baselineFactor (above 1)")
            case .quotaExhaustion where rule.threshold <= 0 && rule.rateLimitedCalls <= 0:
                problems.append("\(at): give threshold (remaining fraction) or rateLimitedCalls")
            default: break
            }
            rules.append(rule)
        }
        guard problems.isEmpty else { throw PortalError(.configuration, "\(source): " + problems.joined(separator: "; ")) }
        self.rules = rules
    }
}

// MARK: - Evaluation (pure)

/// What one rule sees breaching now: one alert per label set, with its value.
package struct AlertSample: Sendable, Equatable {
    package var labels: [String: String]
    package var value: Double

    package init(labels: [String: String], value: Double) {
        self.labels = labels
        self.value = value
    }
}

/// The caps on silences: active silences per organization, matchers per silence, and the length of a
/// matcher's name and value (so the work of matching stays small for every organization).
package struct SilenceLimits: Sendable, Equatable {
    package var activeSilences: Int
    package var matchersPerSilence: Int
    /// In Unicode scalars.
    package var valueLength: Int

    package init(activeSilences: Int = 100, matchersPerSilence: Int = 16, valueLength: Int = 256) {
        self.activeSilences = activeSilences
        self.matchersPerSilence = matchersPerSilence
        self.valueLength = valueLength
    }

    package static let standard = SilenceLimits()
}

/// A silence: label matchers (Alertmanager's: equal, not equal, regex, negated regex) and an end. A regex is
/// compiled once, when the matcher is made, to a ``LabelPattern`` (linear-time, anchored at both ends).
package struct SilenceMatcher: Sendable, Equatable {
    package var name: String
    package var value: String { didSet { compile() } }
    package var isRegex: Bool { didSet { compile() } }
    package var isEqual: Bool
    /// The compiled regex (nil: not a regex, or one outside the supported syntax, which matches no value).
    package private(set) var pattern: LabelPattern?

    package init(name: String, value: String, isRegex: Bool = false, isEqual: Bool = true) {
        self.name = name
        self.value = value
        self.isRegex = isRegex
        self.isEqual = isEqual
        pattern = isRegex ? try? LabelPattern(value) : nil
    }

    private mutating func compile() { pattern = isRegex ? try? LabelPattern(value) : nil }

    /// Whether the labels match; a missing label is the empty value, as in Alertmanager.
    package func matches(_ labels: [String: String]) -> Bool {
        let actual = labels[name] ?? ""
        let hit = isRegex ? pattern?.matches(actual) ?? false : actual == value
        return hit == isEqual
    }

    /// Reads `[{name, value, isRegex?, isEqual?}]`; the failure names every problem. With `limits` (a new
    /// silence) the counts and lengths are capped and regexes must compile; without (a stored one) a regex
    /// that does not compile matches no value.
    package static func parse(_ json: JSONValue, limits: SilenceLimits? = .standard) -> Result<[SilenceMatcher], PortalError> {
        guard case .array(let items) = json, !items.isEmpty else {
            return .failure(.validation([.init(pointer: "/matchers", message: "must be a non-empty list of {name, value, isRegex, isEqual}")]))
        }
        if let limits, items.count > limits.matchersPerSilence {
            return .failure(.validation([.init(pointer: "/matchers", message: "too many matchers: at most \(limits.matchersPerSilence) per silence, \(items.count) given")]))
        }
        var matchers: [SilenceMatcher] = []
        var errors: [PortalError.FieldError] = []
        for (i, item) in items.enumerated() {
            guard case .object(let m) = item, let name = m["name"]?.stringValue, !name.isEmpty, let value = m["value"]?.stringValue else {
                errors.append(.init(pointer: "/matchers/\(i)", message: "must have a name and a value (strings)"))
                continue
            }
            for key in m.keys.sorted() where !["name", "value", "isRegex", "isEqual"].contains(key) { errors.append(.init(pointer: "/matchers/\(i)/\(key)", message: "unknown field")) }
            var isRegex = false
            var isEqual = true
            for key in ["isRegex", "isEqual"] {
                guard let flag = m[key] else { continue }
                guard case .bool(let b) = flag else {
                    errors.append(.init(pointer: "/matchers/\(i)/\(key)", message: "must be true or false"))
                    continue
                }
                if key == "isRegex" { isRegex = b } else { isEqual = b }
            }
            if let limits {
                var tooLong = false
                for (field, text) in [("name", name), ("value", value)] where text.unicodeScalars.count > limits.valueLength {
                    errors.append(.init(pointer: "/matchers/\(i)/\(field)", message: "too long: at most \(limits.valueLength) characters"))
                    tooLong = true
                }
                if tooLong { continue }
            }
            let matcher = SilenceMatcher(name: name, value: value, isRegex: isRegex, isEqual: isEqual)
            if limits != nil, isRegex, matcher.pattern == nil {
                var reason = "it does not compile"
                do { _ = try LabelPattern(value) } catch { reason = error.description }
                errors.append(.init(pointer: "/matchers/\(i)/value", message: "is not a valid regular expression: \(reason)"))
            }
            matchers.append(matcher)
        }
        return errors.isEmpty ? .success(matchers) : .failure(.validation(errors))
    }
}

/// The live state of one alert instance, as the evaluator keeps it (and `alert_states` stores it).
package struct AlertInstance: Sendable, Equatable {
    package enum State: String, Sendable {
        case pending, firing, resolved
    }

    package var fingerprint: String
    package var rule: String
    package var labels: [String: String]
    package var annotations: [String: String]
    package var state: State
    package var value: Double
    /// When the condition started holding.
    package var activeAt: Date
    package var firedAt: Date?
    package var resolvedAt: Date?
    /// Last evaluation the condition held.
    package var lastSeenAt: Date
    /// Last notification of this firing (nil: none sent yet).
    package var lastNotifiedAt: Date?

    package init(
        fingerprint: String, rule: String, labels: [String: String], annotations: [String: String], state: State, value: Double, activeAt: Date,
        firedAt: Date? = nil, resolvedAt: Date? = nil, lastSeenAt: Date, lastNotifiedAt: Date? = nil
    ) {
        self.fingerprint = fingerprint
        self.rule = rule
        self.labels = labels
        self.annotations = annotations
        self.state = state
        self.value = value
        self.activeAt = activeAt
        self.firedAt = firedAt
        self.resolvedAt = resolvedAt
        self.lastSeenAt = lastSeenAt
        self.lastNotifiedAt = lastNotifiedAt
    }
}

/// One evaluation's result: the new states, the transitions to record, and the notifications to send.
package struct AlertStep: Sendable, Equatable {
    /// Every instance still tracked (pending, firing, or resolved now).
    package var instances: [AlertInstance]
    /// Became firing now (record `alert.firing`).
    package var fired: [AlertInstance]
    /// Resolved now (record `alert.resolved`).
    package var resolved: [AlertInstance]
    /// To notify: firing (first time or repeat) and resolved, silenced ones left out.
    package var notify: [AlertInstance]
    /// Left out of `notify` by a silence.
    package var silenced: [AlertInstance]
}

/// Prometheus' alerting semantics, as a pure function of the previous states, what breaches now, the
/// silences and the time (the evaluator's injected clock).
package enum AlertEngine {
    /// Alertmanager-style fingerprint: the first 16 hex digits of SHA-256 over the sorted labels.
    package static func fingerprint(_ labels: [String: String]) -> String {
        var text = ""
        for key in labels.keys.sorted() { text += "\(key)\u{ff}\(labels[key]!)\u{ff}" }
        return String(Hex.encode(SHA256.hash(data: Array(text.utf8))).prefix(16))
    }

    /// The labels of an alert of `rule` for `sample`: the sample's, the rule's, then alertname and kind.
    package static func labels(_ rule: AlertRule, _ sample: AlertSample) -> [String: String] {
        var labels = sample.labels.merging(rule.labels) { _, ruleLabel in ruleLabel }
        labels["alertname"] = rule.name
        labels["kind"] = rule.kind.rawValue
        return labels
    }

    package static func step(
        rules: [AlertRule], samples: [String: [AlertSample]], previous: [AlertInstance], silences: [[SilenceMatcher]], now: Date
    ) -> AlertStep {
        var byFingerprint = Dictionary(previous.filter { $0.state != .resolved }.map { ($0.fingerprint, $0) }, uniquingKeysWith: { a, _ in a })
        var step = AlertStep(instances: [], fired: [], resolved: [], notify: [], silenced: [])
        var seen = Set<String>()
        let rulesByName = Dictionary(rules.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for rule in rules {
            for sample in samples[rule.name] ?? [] {
                let labels = labels(rule, sample)
                let fingerprint = fingerprint(labels)
                guard seen.insert(fingerprint).inserted else { continue }
                var instance = byFingerprint[fingerprint] ?? AlertInstance(
                    fingerprint: fingerprint, rule: rule.name, labels: labels, annotations: [:], state: .pending, value: sample.value, activeAt: now, lastSeenAt: now
                )
                instance.value = sample.value
                instance.lastSeenAt = now
                instance.labels = labels
                instance.annotations = rule.annotations.mapValues { AlertTemplate.render($0, labels: labels, value: sample.value) }
                if instance.state == .pending, now.timeIntervalSince(instance.activeAt) >= rule.forSeconds {
                    instance.state = .firing
                    instance.firedAt = now
                    step.fired.append(instance)
                }
                byFingerprint[fingerprint] = instance
            }
        }
        for (fingerprint, var instance) in byFingerprint.sorted(by: { $0.key < $1.key }) {
            let rule = rulesByName[instance.rule]
            if !seen.contains(fingerprint) {
                // The condition no longer holds: pending alerts are dropped; firing ones resolve once
                // keep_firing_for has passed since the condition last held (or at once if the rule is gone).
                if instance.state == .pending { continue }
                // (Without keep_firing_for it resolves at once: a stored lastSeenAt read back a hair after `now`
                // must not keep it firing.)
                if let rule, rule.keepFiringForSeconds > 0, now.timeIntervalSince(instance.lastSeenAt) < rule.keepFiringForSeconds {
                    step.instances.append(instance)
                    continue
                }
                instance.state = .resolved
                instance.resolvedAt = now
                step.resolved.append(instance)
                step.instances.append(instance)
                // A resolution is sent only for an alert whose firing was sent.
                if instance.lastNotifiedAt != nil {
                    if silences.contains(where: { $0.allSatisfy { $0.matches(instance.labels) } }) { step.silenced.append(instance) } else { step.notify.append(instance) }
                }
                continue
            }
            if instance.state == .firing {
                let due = instance.lastNotifiedAt.map { now.timeIntervalSince($0) >= (rule?.repeatIntervalSeconds ?? 4 * 3600) } ?? true
                if due {
                    if silences.contains(where: { $0.allSatisfy { $0.matches(instance.labels) } }) {
                        step.silenced.append(instance)
                    } else {
                        instance.lastNotifiedAt = now
                        step.notify.append(instance)
                    }
                }
            }
            step.instances.append(instance)
        }
        // The fired list carries the instance as stored (notified time included).
        let stored = Dictionary(step.instances.map { ($0.fingerprint, $0) }, uniquingKeysWith: { a, _ in a })
        step.fired = step.fired.map { stored[$0.fingerprint] ?? $0 }
        return step
    }
}

/// The annotation templates: `{{ $labels.name }}`, `{{ $value }}` and `{{ $value | humanize }}`,
/// `humanizePercentage` or `humanizeDuration` (Prometheus' functions, for the values they apply to).
package enum AlertTemplate {
    package static func render(_ template: String, labels: [String: String], value: Double) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                out += rest[open.lowerBound...]
                return out
            }
            let expression = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            out += evaluate(expression, labels: labels, value: value)
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    static func evaluate(_ expression: String, labels: [String: String], value: Double) -> String {
        let parts = expression.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let head = parts.first else { return "" }
        if head.hasPrefix("$labels.") { return labels[String(head.dropFirst(8))] ?? "" }
        guard head == "$value" else { return "" }
        switch parts.dropFirst().first {
        case "humanizePercentage": return format(value * 100) + "%"
        case "humanizeDuration": return humanizeDuration(value)
        case "humanize": return format(value)
        default: return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.4g", value)
    }

    static func humanizeDuration(_ seconds: Double) -> String {
        if seconds < 1 { return format(seconds * 1000) + "ms" }
        var s = Int(seconds.rounded())
        var parts: [String] = []
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] where s >= size {
            parts.append("\(s / size)\(unit)")
            s %= size
        }
        if s > 0 || parts.isEmpty { parts.append("\(s)s") }
        return parts.joined(separator: " ")
    }
}
