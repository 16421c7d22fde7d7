import Foundation

/// Reads the members of one JSON object against a schema written in code, collecting every problem as a
/// ``PortalError/FieldError`` with its JSON Pointer instead of stopping at the first.
///
/// Each accessor marks its key as known; ``finish()`` reports the keys nobody asked for as unknown fields.
/// The reader is shared by nested objects through ``ValidationErrors``, so one 422 lists everything.
package struct JSONObjectReader {
    /// The pointer of this object inside the document.
    package let pointer: String
    private let members: [String: JSONValue]
    private var known: Set<String> = []
    private let errors: ValidationErrors

    /// Starts reading `value`, which must be an object; otherwise records an error and reads nothing.
    package init(_ value: JSONValue, pointer: String = "", errors: ValidationErrors) {
        self.pointer = pointer
        self.errors = errors
        if case .object(let members) = value {
            self.members = members
        } else {
            self.members = [:]
            errors.add(pointer, "must be an object, not \(value.kindName)")
        }
    }

    /// The error list this reader writes to, for readers of nested values.
    package var errorList: ValidationErrors { errors }

    /// The pointer of member `key`.
    package func pointer(_ key: String) -> String { "\(pointer)/\(jsonPointerEscape(key))" }

    /// Every member, for objects whose member names are data (such as a field mapping); read each through
    /// ``value(_:required:)`` so that ``finish()`` counts it as known.
    package var rawMembers: [String: JSONValue] { members }

    /// Whether the object has member `key` (null counts as present).
    package func has(_ key: String) -> Bool { members[key] != nil }

    /// The raw value of `key`, marking it known.
    package mutating func value(_ key: String, required: Bool = false) -> JSONValue? {
        known.insert(key)
        guard let v = members[key] else {
            if required { errors.add(pointer(key), "is required") }
            return nil
        }
        return v
    }

    /// A string member, checked for length.
    package mutating func string(
        _ key: String, required: Bool = false, minLength: Int = 0, maxLength: Int = 10_000
    ) -> String? {
        guard let v = value(key, required: required) else { return nil }
        guard case .string(let s) = v else {
            errors.add(pointer(key), "must be a string, not \(v.kindName)")
            return nil
        }
        if s.count < minLength {
            errors.add(pointer(key), minLength == 1 ? "must not be empty" : "must be at least \(minLength) characters")
            return nil
        }
        if s.count > maxLength {
            errors.add(pointer(key), "must be at most \(maxLength) characters")
            return nil
        }
        return s
    }

    /// A string member that must be one of `E`'s raw values.
    package mutating func enumeration<E: RawRepresentable & CaseIterable>(
        _ key: String, _ type: E.Type, required: Bool = false
    ) -> E? where E.RawValue == String {
        guard let s = string(key, required: required) else { return nil }
        guard let e = E(rawValue: s) else {
            let allowed = E.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            errors.add(pointer(key), "must be one of \(allowed)")
            return nil
        }
        return e
    }

    /// An integer member within `range`.
    package mutating func integer(
        _ key: String, required: Bool = false, in range: ClosedRange<Int64> = Int64.min...Int64.max
    ) -> Int64? {
        guard let v = value(key, required: required) else { return nil }
        let i: Int64
        switch v {
        case .int(let n): i = n
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: i = Int64(d)
        default:
            errors.add(pointer(key), "must be an integer, not \(v.kindName)")
            return nil
        }
        guard range.contains(i) else {
            errors.add(pointer(key), "must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return i
    }

    /// A number member within `range`.
    package mutating func number(
        _ key: String, required: Bool = false, in range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
    ) -> Double? {
        guard let v = value(key, required: required) else { return nil }
        let d: Double
        switch v {
        case .int(let n): d = Double(n)
        case .double(let x): d = x
        default:
            errors.add(pointer(key), "must be a number, not \(v.kindName)")
            return nil
        }
        guard range.contains(d) else {
            errors.add(pointer(key), "must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return d
    }

    /// A boolean member.
    package mutating func bool(_ key: String, required: Bool = false) -> Bool? {
        guard let v = value(key, required: required) else { return nil }
        guard case .bool(let b) = v else {
            errors.add(pointer(key), "must be a boolean, not \(v.kindName)")
            return nil
        }
        return b
    }

    /// An object member, returned as-is (its members are not checked).
    package mutating func object(_ key: String, required: Bool = false) -> [String: JSONValue]? {
        guard let v = value(key, required: required) else { return nil }
        guard case .object(let o) = v else {
            errors.add(pointer(key), "must be an object, not \(v.kindName)")
            return nil
        }
        return o
    }

    /// An array of strings.
    package mutating func strings(_ key: String, required: Bool = false, maxLength: Int = 1_000) -> [String]? {
        guard let v = value(key, required: required) else { return nil }
        guard case .array(let items) = v else {
            errors.add(pointer(key), "must be an array, not \(v.kindName)")
            return nil
        }
        var result: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item, !s.isEmpty, s.count <= maxLength else {
                errors.add("\(pointer(key))/\(i)", "must be a non-empty string of at most \(maxLength) characters")
                continue
            }
            result.append(s)
        }
        return result
    }

    /// A nested object read with its own reader (sharing this reader's error list).
    package mutating func nested<T>(
        _ key: String, required: Bool = false, _ read: (inout JSONObjectReader) -> T?
    ) -> T? {
        guard let v = value(key, required: required) else { return nil }
        if v == .null { return nil }
        var reader = JSONObjectReader(v, pointer: pointer(key), errors: errors)
        guard case .object = v else { return nil }
        let result = read(&reader)
        reader.finish()
        return result
    }

    /// Records an error against member `key`.
    package func reject(_ key: String, _ message: String) {
        errors.add(pointer(key), message)
    }

    /// The keys asked for so far, present or not (the members a reader accepts, after reading `{}`).
    package var knownKeys: Set<String> { known }

    /// Reports every member nobody read as an unknown field.
    package func finish() {
        for key in members.keys.sorted() where !known.contains(key) {
            errors.add(pointer(key), "is not a known field")
        }
    }
}

extension JSONObjectReader {
    /// Reads a whole document (or a member at `pointer`) with `read`, reports the members nobody read as
    /// unknown, and throws one 422 listing every problem.
    package static func parse<T>(_ value: JSONValue, pointer: String, _ read: (inout JSONObjectReader) -> T?) throws(PortalError) -> T {
        let errors = ValidationErrors()
        var r = JSONObjectReader(value, pointer: pointer, errors: errors)
        let result = read(&r)
        r.finish()
        try errors.throwIfAny()
        guard let result else { throw PortalError(.internal, "validation passed without a value") }
        return result
    }
}

/// The errors collected while reading one document.
package final class ValidationErrors {
    package private(set) var all: [PortalError.FieldError] = []

    package init() {}

    /// Records that the field at `pointer` is invalid.
    package func add(_ pointer: String, _ message: String) {
        all.append(.init(pointer: pointer, message: message))
    }

    /// Throws a 422 listing every error, if there is any.
    package func throwIfAny() throws(PortalError) {
        if !all.isEmpty { throw PortalError.validation(all) }
    }
}
