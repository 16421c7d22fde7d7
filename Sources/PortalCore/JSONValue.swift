package import Foundation

/// Any JSON document, kept exactly as sent: numbers stay integers where they were integers.
///
/// Request bodies are decoded into this first, then checked field by field by ``JSONObjectReader``, so a
/// wrong type, a missing or unknown field and an unknown enum value each become a 422 naming the field,
/// which `JSONDecoder` into a struct cannot report precisely.
package enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The object's members, or nil for any other kind.
    package var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The array's items, or nil for any other kind.
    package var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The string, or nil for any other kind.
    package var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// A short name of this value's JSON type, for error messages.
    package var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Parses a JSON text; throws ``PortalError/Code/malformedRequest`` when it is not JSON.
    /// A member name repeated within one object is a 422 (``PortalError/Code/validationFailed``) naming it.
    package static func parse(_ data: Data) throws(PortalError) -> JSONValue {
        let parsed = data.withUnsafeBytes { raw -> Result<JSONValue, JSONParser.Failure> in
            Result { () throws(JSONParser.Failure) -> JSONValue in try JSONParser.parse(raw.bindMemory(to: UInt8.self)) }
        }
        return try outcome(parsed)
    }

    /// Parses JSON bytes; throws ``PortalError/Code/malformedRequest`` when they are not JSON, and
    /// ``PortalError/Code/validationFailed`` naming the member when a member name repeats in one object.
    package static func parse(_ bytes: some Collection<UInt8>) throws(PortalError) -> JSONValue {
        let parse = { (buffer: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, JSONParser.Failure> in
            Result { () throws(JSONParser.Failure) -> JSONValue in try JSONParser.parse(buffer) }
        }
        let parsed = bytes.withContiguousStorageIfAvailable(parse) ?? Array(bytes).withUnsafeBufferPointer(parse)
        return try outcome(parsed)
    }

    private static func outcome(_ parsed: Result<JSONValue, JSONParser.Failure>) throws(PortalError) -> JSONValue {
        switch parsed {
        case .success(let value): return value
        case .failure(let failure):
            guard let tokens = failure.duplicate else { throw PortalError(.malformedRequest, "the body is not valid JSON") }
            let pointer = "/" + tokens.map { $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }.joined(separator: "/")
            throw PortalError.validation([.init(pointer: pointer, message: "appears more than once in its object; each member name must be unique")])
        }
    }

    /// Applies an RFC 7396 JSON merge patch to this value.
    package func merging(patch: JSONValue) -> JSONValue {
        guard case .object(let patchMembers) = patch else { return patch }
        var result = objectValue ?? [:]
        for (key, value) in patchMembers {
            if value == .null {
                result.removeValue(forKey: key)
            } else {
                result[key] = (result[key] ?? .null).merging(patch: value)
            }
        }
        return .object(result)
    }
}

extension JSONValue: Codable {
    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral
{
    package init(stringLiteral value: String) { self = .string(value) }
    package init(integerLiteral value: Int64) { self = .int(value) }
    package init(booleanLiteral value: Bool) { self = .bool(value) }
    package init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    package init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    package init(nilLiteral: ()) { self = .null }
}

/// Escapes one reference token of a JSON Pointer (RFC 6901).
package func jsonPointerEscape(_ token: String) -> String {
    token.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
}
