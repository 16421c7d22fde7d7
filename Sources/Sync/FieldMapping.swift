import Foundation
package import PortalCore

/// Field mapping from a provider's item to the portal's record: `{"portalField": "/json/pointer"}` renames,
/// `{"portalField": {"from": "/pointer", "type": "string|integer|number|boolean|timestamp"}}` also converts.
/// Portal fields may be dot paths (`address.city`) to build nested objects. With a mapping, a record holds
/// only the mapped fields; without one, the item as the provider sent it.
package struct FieldMapping: Sendable, Equatable {
    package enum Conversion: String, Sendable, CaseIterable {
        case string, integer, number, boolean, timestamp
    }

    package struct Field: Sendable, Equatable {
        package var target: [String]
        package var source: String
        package var conversion: Conversion?
    }

    package var fields: [Field]

    /// A value that cannot be converted: the record is rejected (counted, and named in the job's errors).
    package struct Failure: Error, Equatable, Sendable {
        package var message: String
    }

    static func read(_ r: inout JSONObjectReader) -> FieldMapping? {
        // Every member is a portal field: read them through the reader so that each is marked known.
        let members = r.rawMembers
        var fields: [Field] = []
        if members.count > 500 { r.errorList.add(r.pointer, "must map at most 500 fields") }
        for (name, spec) in members.sorted(by: { $0.key < $1.key }) {
            _ = r.value(name)
            guard let target = FieldPath.parse(name) else {
                r.reject(name, "a portal field is a dot path of names, such as address.city")
                continue
            }
            switch spec {
            case .string(let pointer):
                guard pointer.hasPrefix("/") || pointer.isEmpty else {
                    r.reject(name, "must be a JSON pointer into the provider's item, such as /profile/email")
                    continue
                }
                fields.append(Field(target: target, source: pointer, conversion: nil))
            case .object:
                var inner = JSONObjectReader(spec, pointer: r.pointer(name), errors: r.errorList)
                let from = inner.string("from", required: true, maxLength: 500)
                let type = inner.enumeration("type", Conversion.self)
                inner.finish()
                if let from, !from.hasPrefix("/"), !from.isEmpty { inner.reject("from", "must be a JSON pointer, such as /profile/email") }
                if let from, from.hasPrefix("/") || from.isEmpty { fields.append(Field(target: target, source: from, conversion: type)) }
            default:
                r.reject(name, "must be a JSON pointer or {\"from\", \"type\"}, not \(spec.kindName)")
            }
        }
        return FieldMapping(fields: fields)
    }

    var json: JSONValue {
        .object(Dictionary(uniqueKeysWithValues: fields.map { field in
            let name = field.target.joined(separator: ".")
            if let conversion = field.conversion { return (name, ["from": .string(field.source), "type": .string(conversion.rawValue)]) }
            return (name, .string(field.source))
        }))
    }

    /// The portal's record for a provider's item. A missing source field is left out.
    package func apply(to item: JSONValue) throws(Failure) -> JSONValue {
        var record: JSONValue = [:]
        for field in fields {
            guard let value = JSONPointer.value(at: field.source, in: item) else { continue }
            let converted = try field.conversion.map { conversion throws(Failure) in try Self.convert(value, to: conversion, field: field) } ?? value
            record = FieldPath.setting(converted, in: record, at: field.target)
        }
        return record
    }

    static func convert(_ value: JSONValue, to conversion: Conversion, field: Field) throws(Failure) -> JSONValue {
        if value == .null { return .null }
        let name = field.target.joined(separator: ".")
        func fail() -> Failure { Failure(message: "\(name): \(value.kindName) \(String(describing: value).prefix(40)) is not a \(conversion.rawValue)") }
        switch conversion {
        case .string:
            switch value {
            case .string: return value
            case .int(let n): return .string(String(n))
            case .double(let d): return .string(String(d))
            case .bool(let b): return .string(b ? "true" : "false")
            default: throw fail()
            }
        case .integer:
            switch value {
            case .int: return value
            case .double(let d): if let n = Int64(exactly: d) { return .int(n) }
            case .string(let s): if let n = Int64(s.trimmingCharacters(in: .whitespaces)) { return .int(n) }
            default: break
            }
            throw fail()
        case .number:
            switch value {
            case .int, .double: return value
            case .string(let s):
                let t = s.trimmingCharacters(in: .whitespaces)
                if let n = Int64(t) { return .int(n) }
                if let d = Double(t), d.isFinite { return .double(d) }
            default: break
            }
            throw fail()
        case .boolean:
            switch value {
            case .bool: return value
            case .int(0): return false
            case .int(1): return true
            case .string(let s):
                switch s.lowercased() {
                case "true", "yes", "1": return true
                case "false", "no", "0": return false
                default: break
                }
            default: break
            }
            throw fail()
        case .timestamp:
            switch value {
            case .string(let s): if let date = Timestamp.parse(s) { return .string(Timestamp.rfc3339(date)) }
            // Unix time in seconds (or milliseconds, for values past the year 33658).
            case .int(let n): return .string(Timestamp.rfc3339(Date(timeIntervalSince1970: n > 1_000_000_000_000 ? Double(n) / 1000 : Double(n))))
            case .double(let d): return .string(Timestamp.rfc3339(Date(timeIntervalSince1970: d)))
            default: break
            }
            throw fail()
        }
    }
}
