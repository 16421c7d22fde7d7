import Foundation
package import PortalCore

/// The condition of a ``ConflictRule``: a small, documented language (README "Conflict resolution").
///
/// ```
/// condition  := or
/// or         := and ("||" and)*
/// and        := comparison ("&&" comparison)*
/// comparison := operand ("==" | "!=" | ">" | ">=" | "<" | "<=") operand
/// operand    := side "." path | "null" | "true" | "false" | number | "string"
/// side       := "source" | "destination" | "base"
/// path       := name ("." name)*, or "value" for the rule's own field
/// ```
///
/// `source` is the record as the provider sends it now, `destination` the portal's copy (with local edits),
/// `base` the provider's version at the last sync. Numbers compare as numbers; two strings that are both
/// RFC 3339 timestamps compare as instants, other strings by their characters; `==` and `!=` compare any
/// two values (a missing field is `null`). An ordering between values of different kinds is false.
package struct ConflictCondition: Sendable, Equatable, CustomStringConvertible {
    indirect enum Node: Sendable, Equatable {
        case or(Node, Node)
        case and(Node, Node)
        case compare(Operand, Comparison, Operand)
    }

    enum Operand: Sendable, Equatable {
        case field(Side, [String])
        /// The rule's own field on a side.
        case value(Side)
        case literal(JSONValue)
    }

    package enum Side: String, Sendable {
        case source, destination, base
    }

    enum Comparison: String, Sendable {
        case equal = "==", notEqual = "!=", greater = ">", greaterOrEqual = ">=", less = "<", lessOrEqual = "<="
    }

    let root: Node
    package let description: String

    /// Parses a condition; the error message says where it went wrong.
    package init(_ text: String) throws(ConditionError) {
        var parser = ConditionParser(text)
        root = try parser.parse()
        description = text
    }

    /// Evaluates the condition for the rule's `field` (a dot path).
    package func holds(source: JSONValue, destination: JSONValue, base: JSONValue?, field: [String]) -> Bool {
        Self.evaluate(root, source: source, destination: destination, base: base ?? .null, field: field)
    }

    private static func evaluate(_ node: Node, source: JSONValue, destination: JSONValue, base: JSONValue, field: [String]) -> Bool {
        switch node {
        case .or(let a, let b):
            return evaluate(a, source: source, destination: destination, base: base, field: field)
                || evaluate(b, source: source, destination: destination, base: base, field: field)
        case .and(let a, let b):
            return evaluate(a, source: source, destination: destination, base: base, field: field)
                && evaluate(b, source: source, destination: destination, base: base, field: field)
        case .compare(let left, let comparison, let right):
            func resolve(_ operand: Operand) -> JSONValue {
                func record(_ side: Side) -> JSONValue {
                    switch side {
                    case .source: source
                    case .destination: destination
                    case .base: base
                    }
                }
                switch operand {
                case .literal(let value): return value
                case .value(let side): return FieldPath.value(in: record(side), at: field)
                case .field(let side, let path): return FieldPath.value(in: record(side), at: path)
                }
            }
            return compare(resolve(left), comparison, resolve(right))
        }
    }

    static func compare(_ a: JSONValue, _ comparison: Comparison, _ b: JSONValue) -> Bool {
        switch comparison {
        case .equal: return same(a, b)
        case .notEqual: return !same(a, b)
        default:
            guard let order = order(a, b) else { return false }
            switch comparison {
            case .greater: return order > 0
            case .greaterOrEqual: return order >= 0
            case .less: return order < 0
            case .lessOrEqual: return order <= 0
            case .equal, .notEqual: return false
            }
        }
    }

    private static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }

    private static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = number(a), let y = number(b) { return x == y }
        if case .string(let x) = a, case .string(let y) = b, let s = Timestamp.parse(x), let t = Timestamp.parse(y) { return s == t }
        return a == b
    }

    /// -1, 0 or 1; nil when the two values have no order between them.
    private static func order(_ a: JSONValue, _ b: JSONValue) -> Int? {
        if let x = number(a), let y = number(b) { return x < y ? -1 : (x > y ? 1 : 0) }
        guard case .string(let x) = a, case .string(let y) = b else { return nil }
        if let s = Timestamp.parse(x), let t = Timestamp.parse(y) { return s < t ? -1 : (s > t ? 1 : 0) }
        return x < y ? -1 : (x > y ? 1 : 0)
    }
}

/// Why a condition does not parse.
package struct ConditionError: Error, Equatable, Sendable {
    package var message: String
}

/// Dot paths into records: `address.city`.
package enum FieldPath {
    /// Splits a dot path; nil when a segment is empty.
    package static func parse(_ text: String) -> [String]? {
        let segments = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !segments.isEmpty, segments.allSatisfy({ !$0.isEmpty && $0.count <= 100 }) else { return nil }
        return segments
    }

    /// The value at `path`, or null when any step is missing.
    package static func value(in record: JSONValue, at path: [String]) -> JSONValue {
        var current = record
        for segment in path {
            guard case .object(let members) = current, let next = members[segment] else { return .null }
            current = next
        }
        return current
    }

    /// `record` with the value at `path` replaced (created along the way; removed when `value` is nil).
    package static func setting(_ value: JSONValue?, in record: JSONValue, at path: [String]) -> JSONValue {
        guard let first = path.first else { return value ?? .null }
        var members = record.objectValue ?? [:]
        if path.count == 1 {
            members[first] = value
        } else {
            members[first] = setting(value, in: members[first] ?? [:], at: Array(path.dropFirst()))
        }
        return .object(members)
    }
}

/// A recursive-descent parser for ``ConflictCondition``.
struct ConditionParser {
    private let characters: [Character]
    private var index = 0

    init(_ text: String) {
        characters = Array(text)
    }

    mutating func parse() throws(ConditionError) -> ConflictCondition.Node {
        guard characters.count <= 1_000 else { throw ConditionError(message: "the condition is longer than 1000 characters") }
        let node = try or()
        skipSpace()
        guard index == characters.count else { throw failure("unexpected '\(String(characters[index...]).prefix(20))'") }
        return node
    }

    private func failure(_ message: String) -> ConditionError {
        ConditionError(message: "\(message) at character \(index + 1)")
    }

    private mutating func skipSpace() {
        while index < characters.count, characters[index].isWhitespace { index += 1 }
    }

    private mutating func take(_ token: String) -> Bool {
        skipSpace()
        let end = index + token.count
        guard end <= characters.count, String(characters[index..<end]) == token else { return false }
        index = end
        return true
    }

    private mutating func or() throws(ConditionError) -> ConflictCondition.Node {
        var node = try and()
        while take("||") { node = .or(node, try and()) }
        return node
    }

    private mutating func and() throws(ConditionError) -> ConflictCondition.Node {
        var node = try comparison()
        while take("&&") { node = .and(node, try comparison()) }
        return node
    }

    private mutating func comparison() throws(ConditionError) -> ConflictCondition.Node {
        let left = try operand()
        skipSpace()
        // Two-character operators first.
        for op in [ConflictCondition.Comparison.equal, .notEqual, .greaterOrEqual, .lessOrEqual, .greater, .less] where take(op.rawValue) {
            return .compare(left, op, try operand())
        }
        throw failure("expected a comparison (==, !=, >, >=, <, <=)")
    }

    private mutating func operand() throws(ConditionError) -> ConflictCondition.Operand {
        skipSpace()
        guard index < characters.count else { throw failure("expected a value") }
        let c = characters[index]
        if c == "\"" { return .literal(.string(try string())) }
        if c == "-" || c.isNumber { return .literal(try number()) }
        let word = name()
        switch word {
        case "null": return .literal(.null)
        case "true": return .literal(.bool(true))
        case "false": return .literal(.bool(false))
        case "":
            throw failure("expected a value")
        default:
            guard let side = ConflictCondition.Side(rawValue: word) else {
                throw failure("unknown name '\(word.prefix(30))' (use source., destination., base., null, true, false, a number or a \"string\")")
            }
            guard index < characters.count, characters[index] == "." else { throw failure("expected '.' after \(word)") }
            var path: [String] = []
            while index < characters.count, characters[index] == "." {
                index += 1
                let segment = name()
                guard !segment.isEmpty else { throw failure("expected a field name") }
                path.append(segment)
            }
            return path == ["value"] ? .value(side) : .field(side, path)
        }
    }

    private mutating func name() -> String {
        let start = index
        while index < characters.count, characters[index].isLetter || characters[index].isNumber || characters[index] == "_" || characters[index] == "-" {
            index += 1
        }
        return String(characters[start..<index])
    }

    private mutating func string() throws(ConditionError) -> String {
        index += 1
        var out = ""
        while index < characters.count {
            let c = characters[index]
            index += 1
            if c == "\"" { return out }
            if c == "\\" {
                guard index < characters.count else { break }
                out.append(characters[index])
                index += 1
            } else {
                out.append(c)
            }
        }
        throw failure("unterminated string")
    }

    private mutating func number() throws(ConditionError) -> JSONValue {
        let start = index
        if characters[index] == "-" { index += 1 }
        while index < characters.count, characters[index].isNumber || characters[index] == "." || characters[index] == "e" || characters[index] == "E" {
            index += 1
        }
        let text = String(characters[start..<index])
        if let int = Int64(text) { return .int(int) }
        if let double = Double(text), double.isFinite { return .double(double) }
        throw failure("'\(text.prefix(30))' is not a number")
    }
}
