import Foundation
package import PortalCore

/// The seed's `ConflictResolution.strategy`.
package enum ConflictStrategy: String, Sendable, CaseIterable {
    case sourceWins = "source_wins"
    case destinationWins = "destination_wins"
    case merge
    case manual
}

/// The seed's `ConflictRule.action`.
package enum ConflictAction: String, Sendable, CaseIterable {
    /// The field takes the source's value (removed if the source has none).
    case overwrite
    /// The field keeps the destination's value.
    case preserve
    /// Objects are merged member by member (recursively; the source wins on a scalar both have), arrays
    /// keep the destination's items and append the source's that are not already there; other values take
    /// the source's.
    case merge
    /// The field keeps the destination's value and is flagged: the record waits for a reviewer.
    case flag
}

/// The seed's `ConflictRule`: for `field` (a dot path), when `condition` holds (always, if there is none),
/// apply `action`.
package struct ConflictRule: Sendable, Equatable {
    package var field: [String]
    package var condition: ConflictCondition?
    package var action: ConflictAction

    package init(field: [String], condition: ConflictCondition?, action: ConflictAction) {
        self.field = field
        self.condition = condition
        self.action = action
    }

    package var fieldName: String { field.joined(separator: ".") }
}

/// The seed's `ConflictResolution`: a strategy and, for `merge`, its rules.
package struct ConflictPolicy: Sendable, Equatable {
    package var strategy: ConflictStrategy
    package var rules: [ConflictRule]

    package init(strategy: ConflictStrategy, rules: [ConflictRule] = []) {
        self.strategy = strategy
        self.rules = rules
    }

    /// Reads `{"strategy", "rules": [{"field", "condition", "action"}]}`, collecting every problem with
    /// its pointer; the conditions are parsed here, so a bad one is refused when it is configured.
    package static func read(_ r: inout JSONObjectReader) -> ConflictPolicy? {
        let strategy = r.enumeration("strategy", ConflictStrategy.self, required: true)
        var rules: [ConflictRule] = []
        if let list = r.value("rules") {
            if case .array(let items) = list {
                if items.count > 100 { r.reject("rules", "must have at most 100 rules") }
                for (n, item) in items.prefix(100).enumerated() {
                    var rule = JSONObjectReader(item, pointer: r.pointer("rules") + "/\(n)", errors: r.errorList)
                    let field = rule.string("field", required: true, minLength: 1, maxLength: 500)
                    let text = rule.string("condition", maxLength: 1_000)
                    let action = rule.enumeration("action", ConflictAction.self, required: true)
                    rule.finish()
                    var path: [String]?
                    if let field {
                        path = FieldPath.parse(field)
                        if path == nil { rule.reject("field", "must be a dot path of field names, such as address.city") }
                    }
                    var condition: ConflictCondition?
                    if let text, !text.trimmingCharacters(in: .whitespaces).isEmpty {
                        do {
                            condition = try ConflictCondition(text)
                        } catch {
                            rule.reject("condition", error.message)
                        }
                    }
                    if let path, let action { rules.append(ConflictRule(field: path, condition: condition, action: action)) }
                }
            } else {
                r.reject("rules", "must be an array, not \(list.kindName)")
            }
        }
        guard let strategy else { return nil }
        return ConflictPolicy(strategy: strategy, rules: rules)
    }

    /// The stored form (as configured).
    package var json: JSONValue {
        [
            "strategy": .string(strategy.rawValue),
            "rules": .array(rules.map { rule in
                var m: [String: JSONValue] = ["field": .string(rule.fieldName), "action": .string(rule.action.rawValue)]
                if let condition = rule.condition { m["condition"] = .string(condition.description) }
                return .object(m)
            }),
        ]
    }
}

/// What resolving one conflict decided.
package struct ConflictOutcome: Sendable, Equatable {
    /// The record to keep.
    package var value: JSONValue
    /// Fields left at the destination's value for a reviewer (dot paths); the whole record for `manual`.
    package var flagged: [String]
    /// Each field a rule or the default decided, with the action taken (dot path: action).
    package var decisions: [String: ConflictAction]

    package init(value: JSONValue, flagged: [String], decisions: [String: ConflictAction]) {
        self.value = value
        self.flagged = flagged
        self.decisions = decisions
    }

    /// Whether a person has to look at it (`manual`, a `flag` rule, or a field changed on both sides that
    /// no rule decided).
    package var needsReview: Bool { !flagged.isEmpty }
}

/// Resolves a conflict: a record changed at the source and locally since the last sync. Pure: the
/// sync engine supplies the three versions and stores the outcome.
package enum ConflictResolver {
    /// `source` is the provider's record now, `destination` the portal's copy (with its local edits), `base`
    /// the provider's record at the last sync (nil if unknown: then every difference counts as a change on
    /// both sides).
    ///
    /// `merge` is a three-way merge per top-level field: a field only the source changed takes the source's
    /// value, one only the portal changed keeps the portal's, and one both changed to different values is
    /// flagged (kept as the portal has it). The rules then apply in order, the first whose condition holds
    /// deciding its field; a rule that decides a flagged field clears the flag.
    package static func resolve(source: JSONValue, destination: JSONValue, base: JSONValue?, policy: ConflictPolicy) -> ConflictOutcome {
        switch policy.strategy {
        case .sourceWins:
            return ConflictOutcome(value: source, flagged: [], decisions: [:])
        case .destinationWins:
            return ConflictOutcome(value: destination, flagged: [], decisions: [:])
        case .manual:
            return ConflictOutcome(value: destination, flagged: ["*"], decisions: [:])
        case .merge:
            return merge(source: source, destination: destination, base: base, rules: policy.rules)
        }
    }

    private static func merge(source: JSONValue, destination: JSONValue, base: JSONValue?, rules: [ConflictRule]) -> ConflictOutcome {
        let s = source.objectValue ?? [:], d = destination.objectValue ?? [:], b = base?.objectValue
        var result = d
        var flagged = Set<String>()
        for key in Set(s.keys).union(d.keys).union(b.map { Array($0.keys) } ?? []) {
            let sv = s[key], dv = d[key]
            if sv == dv { continue }
            // Without a base every difference is a change on both sides.
            guard let b else {
                flagged.insert(key)
                continue
            }
            let bv = b[key]
            if dv == bv {
                // Only the source changed it (nil: the source removed it).
                result[key] = sv
            } else if sv != bv {
                flagged.insert(key)
            }
        }
        var value = JSONValue.object(result)
        var decisions: [String: ConflictAction] = [:]
        for rule in rules where decisions[rule.fieldName] == nil {
            if let condition = rule.condition, !condition.holds(source: source, destination: destination, base: base, field: rule.field) { continue }
            let sourceValue = FieldPath.value(in: source, at: rule.field)
            let destinationValue = FieldPath.value(in: destination, at: rule.field)
            let sourceHas = has(source, rule.field), destinationHas = has(destination, rule.field)
            switch rule.action {
            case .overwrite:
                value = FieldPath.setting(sourceHas ? sourceValue : nil, in: value, at: rule.field)
            case .preserve:
                value = FieldPath.setting(destinationHas ? destinationValue : nil, in: value, at: rule.field)
            case .merge:
                let merged: JSONValue? = switch (destinationHas, sourceHas) {
                case (false, false): nil
                case (true, false): destinationValue
                case (false, true): sourceValue
                case (true, true): deepMerge(destinationValue, sourceValue)
                }
                value = FieldPath.setting(merged, in: value, at: rule.field)
            case .flag:
                value = FieldPath.setting(destinationHas ? destinationValue : nil, in: value, at: rule.field)
            }
            decisions[rule.fieldName] = rule.action
            if rule.action == .flag { flagged.insert(rule.fieldName) } else { flagged.remove(rule.fieldName) }
        }
        return ConflictOutcome(value: value, flagged: flagged.sorted(), decisions: decisions)
    }

    private static func has(_ record: JSONValue, _ path: [String]) -> Bool {
        var current = record
        for segment in path {
            guard case .object(let members) = current, let next = members[segment] else { return false }
            current = next
        }
        return true
    }

    /// Objects member by member (source over destination, recursively), arrays as the destination's items
    /// then the source's new ones, anything else the source's.
    static func deepMerge(_ destination: JSONValue, _ source: JSONValue) -> JSONValue {
        switch (destination, source) {
        case (.object(let d), .object(let s)):
            var out = d
            for (key, value) in s { out[key] = out[key].map { deepMerge($0, value) } ?? value }
            return .object(out)
        case (.array(let d), .array(let s)):
            var out = d
            for item in s where !out.contains(item) { out.append(item) }
            return .array(out)
        default:
            return source
        }
    }
}
