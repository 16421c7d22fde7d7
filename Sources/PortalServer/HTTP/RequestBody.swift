package import Foundation
package import Hummingbird
package import PortalCore

extension Request {
    /// Reads the body as one JSON document: 415 unless the content type is JSON, 413 past `limit` bytes,
    /// 400 when it is not JSON. Nothing is written before this succeeds.
    package func jsonBody(limit: Int, acceptMergePatch: Bool = false) async throws -> JSONValue {
        let contentType = headers[.contentType]?.split(separator: ";").first?
            .trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        let isJSON = contentType == "application/json" || (contentType.hasPrefix("application/") && contentType.hasSuffix("+json"))
        guard isJSON else {
            throw PortalError(
                .unsupportedMediaType,
                contentType.isEmpty ? "the body must be sent as application/json" : "the body must be application/json, not \(contentType)"
            )
        }
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch {
            throw PortalError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        }
        let value = try JSONValue.parse(Data(buffer.readableBytesView))
        if let pointer = Self.pointerToNUL(in: value, at: "") {
            // Valid JSON, but PostgreSQL stores no U+0000 in text or jsonb: refused here on every backend alike,
            // naming the field, instead of failing in the database.
            throw PortalError.validation([.init(pointer: pointer, message: "must not contain the character U+0000 (NUL)")])
        }
        return value
    }

    /// The JSON Pointer of the first string or member name in `value` that contains U+0000, or nil.
    static func pointerToNUL(in value: JSONValue, at pointer: String) -> String? {
        switch value {
        case .string(let text):
            return text.unicodeScalars.contains("\u{0}") ? pointer : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = pointerToNUL(in: item, at: "\(pointer)/\(index)") { return found }
            }
            return nil
        case .object(let members):
            for key in members.keys.sorted() {
                let escaped = key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
                if key.unicodeScalars.contains("\u{0}") { return "\(pointer)/\(escaped)" }
                if let member = members[key], let found = pointerToNUL(in: member, at: "\(pointer)/\(escaped)") { return found }
            }
            return nil
        default:
            return nil
        }
    }

    /// An integer query parameter within `range`, or `defaultValue` when absent; 422 when malformed.
    package func queryInteger(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(PortalError) -> Int {
        guard let text = uri.queryParameters[name[...]] else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw PortalError.validation([.init(
                pointer: "?\(name)", message: "must be an integer from \(range.lowerBound) to \(range.upperBound)"
            )])
        }
        return value
    }

    /// A boolean query parameter (`true` or `false`), or `defaultValue` when absent.
    package func queryBool(_ name: String, default defaultValue: Bool) throws(PortalError) -> Bool {
        guard let text = uri.queryParameters[name[...]] else { return defaultValue }
        switch text {
        case "true", "1": return true
        case "false", "0": return false
        default: throw PortalError.validation([.init(pointer: "?\(name)", message: "must be true or false")])
        }
    }

    /// A query parameter naming one of `E`'s values, nil when absent; anything else is a 422 naming it.
    package func queryChoice<E: RawRepresentable & CaseIterable>(_ name: String, _ type: E.Type) throws(PortalError) -> E?
    where E.RawValue == String {
        guard let text = uri.queryParameters[name[...]] else { return nil }
        guard let value = E(rawValue: String(text)) else {
            let allowed = E.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw PortalError.validation([.init(pointer: "?\(name)", message: "must be one of \(allowed)")])
        }
        return value
    }

    /// A string query parameter, if present.
    package func queryString(_ name: String) -> String? {
        uri.queryParameters[name[...]].map(String.init)
    }
}

extension PortalRequestContext {
    /// The UUID path parameter `name`; a malformed id is simply not found.
    package func uuidParameter(_ name: String, what: String) throws(PortalError) -> UUID {
        guard let text = parameters.get(name), let id = UUID(uuidString: text) else {
            throw PortalError.notFound(what)
        }
        return id
    }
}
