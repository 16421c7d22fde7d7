import Foundation
package import PortalCore
package import SQLKit

extension SQLDatabase {
    /// Which of the two backends this connection talks to.
    package var backend: Database.Dialect {
        dialect.name == "sqlite" ? .sqlite : .postgres
    }

    /// A bind value for a JSON column: JSONB on PostgreSQL (bound as a Codable value), text on SQLite.
    ///
    /// JSON columns hold objects or arrays: sql-kit's PostgreSQL encoder binds a bare scalar as its own
    /// type, not as JSONB.
    package func jsonBind(_ value: JSONValue?) -> JSONBind {
        guard let value else { return .null }
        switch backend {
        case .postgres: return .document(value)
        case .sqlite: return .text(JSONValue.encodeText(value))
        }
    }
}

extension SQLRow {
    /// Reads a JSON column on either backend; nil when it is SQL NULL.
    ///
    /// Both drivers hand a JSON column over as its text (PostgreSQL's JSONB output form), which is parsed
    /// here: decoding straight into `JSONValue` would let the drivers' single-value unwrapping read the
    /// whole document as one string.
    package func decodeJSON(column: String, backend: Database.Dialect) throws -> JSONValue? {
        if try decodeNil(column: column) { return nil }
        let text = try decode(column: column, as: String.self)
        return try JSONValue.parse(Data(text.utf8))
    }

    /// Reads an optional column.
    package func decodeOptional<T: Decodable>(column: String, as type: T.Type) throws -> T? {
        try decodeNil(column: column) ? nil : try decode(column: column, as: T.self)
    }

    /// Reads a text column holding one of an enum's raw values; any other text is a storage error naming
    /// the column and the value (a row written by a newer version, or by hand), never a silent default.
    package func decodeCase<T: RawRepresentable>(column: String, as type: T.Type) throws -> T where T.RawValue == String {
        let text = try decode(column: column, as: String.self)
        guard let value = T(rawValue: text) else { throw PortalError(.storage, "the column \(column) holds \(text.prefix(64)), which this version does not know") }
        return value
    }
}

extension JSONValue {
    /// Compact JSON text with sorted keys: the one encoder configuration for stored JSON.
    package static func encodeText(_ value: JSONValue) -> String {
        value.sortedText
    }
}

/// A JSON column's bind value (see ``SQLDatabase/jsonBind(_:)``).
package enum JSONBind: Encodable, Sendable {
    case null
    case document(JSONValue)
    case text(String)

    package func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .document(let value):
            try value.encode(to: encoder)
        case .text(let text):
            var container = encoder.singleValueContainer()
            try container.encode(text)
        }
    }
}
