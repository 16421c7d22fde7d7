import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit

/// sql-kit's view of a lent ``SQLiteHandle``: statements run synchronously on the calling thread, which is
/// the connection's own (see ``SQLiteThread``), and rows are handed over as they are stepped.
struct SQLiteSQLDatabase: SQLDatabase {
    let connection: SQLiteHandle
    let logger: Logger

    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { SQLiteDialect() }
    /// Query logging is off: sql-kit logs bind values, which may be secrets.
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) -> EventLoopFuture<Void> {
        do {
            try run(query, onRow)
            return eventLoop.makeSucceededVoidFuture()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        try run(query, onRow)
    }

    private func run(_ query: any SQLExpression, _ onRow: (any SQLRow) -> ()) throws {
        let (sql, binds) = serialize(query)
        try connection.run(sql, try binds.map(SQLiteValue.init(bind:))) { onRow($0) }
    }
}

/// One result row.
struct SQLiteRecord: SQLRow, Sendable {
    let columns: SQLiteColumns
    let values: [SQLiteValue]

    var allColumns: [String] { columns.names }

    func contains(column: String) -> Bool { columns.positions[column] != nil }

    func decodeNil(column: String) throws -> Bool { try value(column) == .null }

    func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
        let value = try value(column)
        do {
            return try value.decode(D.self)
        } catch let error as DecodingError {
            throw error
        } catch {
            throw DecodingError.typeMismatch(D.self, .init(codingPath: [], debugDescription: "column \(column): \(error)"))
        }
    }

    private func value(_ column: String) throws -> SQLiteValue {
        guard let position = columns.positions[column] else {
            throw DecodingError.valueNotFound(SQLiteValue.self, .init(codingPath: [], debugDescription: "no column \(column)"))
        }
        return values[position]
    }
}

/// A Swift value SQLite stores natively, in the forms sqlite-kit used (so files written before read the
/// same): integers and booleans as INTEGER, times as REAL seconds since 1970, UUIDs as their uppercase
/// text, `Data` as BLOB.
protocol SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue)
    var sqliteValue: SQLiteValue { get }
}

extension SQLiteValue {
    /// A bind value: a native type directly, anything else through its single-value encoding (enums, and
    /// wrappers such as `JSONBind`), or as JSON text when it has no single value.
    init(bind: any Encodable & Sendable) throws {
        if let native = bind as? any SQLiteValueConvertible {
            self = native.sqliteValue
            return
        }
        let encoder = SQLiteSingleValueEncoder()
        do {
            try bind.encode(to: encoder)
            guard let value = encoder.value else { throw SQLiteSingleValueEncoder.NotSingle() }
            self = value
        } catch is SQLiteSingleValueEncoder.NotSingle {
            self = .text(String(decoding: try JSONEncoder().encode(bind), as: UTF8.self))
        }
    }

    /// The value as `D`: a native type directly, else through a single-value decoder, else as JSON text.
    func decode<D: Decodable>(_ type: D.Type) throws -> D {
        if let native = D.self as? any SQLiteValueConvertible.Type {
            guard let decoded = native.init(sqliteValue: self) as? D else {
                throw DecodingError.typeMismatch(D.self, .init(codingPath: [], debugDescription: "cannot read \(kind) as \(D.self)"))
            }
            return decoded
        }
        do {
            return try D(from: SQLiteSingleValueDecoder(value: self))
        } catch is SQLiteSingleValueDecoder.NotSingle {
            switch self {
            case .text(let text): return try JSONDecoder().decode(D.self, from: Data(text.utf8))
            case .blob(let bytes): return try JSONDecoder().decode(D.self, from: Data(bytes))
            default: throw DecodingError.typeMismatch(D.self, .init(codingPath: [], debugDescription: "cannot read \(kind) as \(D.self)"))
            }
        }
    }

    /// The storage class, for messages (never the value, which may be a secret).
    var kind: String {
        switch self {
        case .null: "NULL"
        case .integer: "INTEGER"
        case .real: "REAL"
        case .text: "TEXT"
        case .blob: "BLOB"
        }
    }

    /// An INTEGER value as `T`, when it fits.
    func exactInteger<T: FixedWidthInteger>(as type: T.Type) -> T? {
        guard case .integer(let value) = self else { return nil }
        return T(exactly: value)
    }

    var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .real(let value): Int64(exactly: value.rounded(.towardZero))
        case .text(let text): Int64(text)
        case .blob, .null: nil
        }
    }

    var text: String? {
        switch self {
        case .integer(let value): String(value)
        case .real(let value): String(value)
        case .text(let text): text
        case .blob, .null: nil
        }
    }
}

extension String: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        guard let text = sqliteValue.text else { return nil }
        self = text
    }

    var sqliteValue: SQLiteValue { .text(self) }
}

/// Integers are read only from INTEGER values, and only when they fit (never converted from text or
/// truncated from REAL, as sqlite-nio did not either).
extension SQLiteValueConvertible where Self: FixedWidthInteger {
    init?(sqliteValue: SQLiteValue) {
        guard let exact = sqliteValue.exactInteger(as: Self.self) else { return nil }
        self = exact
    }

    var sqliteValue: SQLiteValue { .integer(Int64(self)) }
}

extension Int: SQLiteValueConvertible {}
extension Int64: SQLiteValueConvertible {}
extension Int32: SQLiteValueConvertible {}

extension Double: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        switch sqliteValue {
        case .integer(let value): self = Double(value)
        case .real(let value): self = value
        default: return nil
        }
    }

    var sqliteValue: SQLiteValue { .real(self) }
}

extension Bool: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        switch sqliteValue.integer {
        case 1: self = true
        case 0: self = false
        default: return nil
        }
    }

    var sqliteValue: SQLiteValue { .integer(self ? 1 : 0) }
}

extension Data: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        guard case .blob(let bytes) = sqliteValue else { return nil }
        self = Data(bytes)
    }

    var sqliteValue: SQLiteValue { .blob(Array(self)) }
}

extension UUID: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        guard case .text(let text) = sqliteValue, let uuid = UUID(uuidString: text) else { return nil }
        self = uuid
    }

    var sqliteValue: SQLiteValue { .text(uuidString) }
}

extension Date: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        let seconds: Double
        switch sqliteValue {
        case .real(let value): seconds = value
        case .integer(let value): seconds = Double(value)
        case .text(let text):
            guard let date = (try? Date(text, strategy: .iso8601))
                ?? (try? Date(text, strategy: .iso8601.dateTimeSeparator(.space)))
            else { return nil }
            self = date
            return
        default: return nil
        }
        // Rounded to the microsecond, as sqlite-nio did, so a time read back equals the time written.
        let sinceReference = seconds - Date.timeIntervalBetween1970AndReferenceDate
        self.init(timeIntervalSinceReferenceDate: (sinceReference * 1e6).rounded() / 1e6)
    }

    var sqliteValue: SQLiteValue { .real(timeIntervalSince1970) }
}

extension StoredTime: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        guard let date = Date(sqliteValue: sqliteValue) else { return nil }
        self.init(date)
    }

    var sqliteValue: SQLiteValue { date.sqliteValue }
}

extension Optional: SQLiteValueConvertible where Wrapped: SQLiteValueConvertible {
    init?(sqliteValue: SQLiteValue) {
        if sqliteValue == .null {
            self = .none
        } else if let wrapped = Wrapped(sqliteValue: sqliteValue) {
            self = .some(wrapped)
        } else {
            return nil
        }
    }

    var sqliteValue: SQLiteValue { self?.sqliteValue ?? .null }
}

/// Captures the single value an `Encodable` encodes (a raw-value enum's text, `JSONBind`'s case).
private final class SQLiteSingleValueEncoder: Encoder, SingleValueEncodingContainer {
    struct NotSingle: Error {}

    var value: SQLiteValue?
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(FailingKeyed<Key>())
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { FailingUnkeyed() }
    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    func encodeNil() throws { value = .null }
    func encode(_ value: Bool) throws { self.value = value.sqliteValue }
    func encode(_ value: String) throws { self.value = .text(value) }
    func encode(_ value: Double) throws { self.value = .real(value) }
    func encode(_ value: Float) throws { self.value = .real(Double(value)) }
    func encode(_ value: Int) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: Int8) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: Int16) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: Int32) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: Int64) throws { self.value = .integer(value) }
    func encode(_ value: UInt) throws { self.value = try .integer(Self.exact(value)) }
    func encode(_ value: UInt8) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: UInt16) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: UInt32) throws { self.value = .integer(Int64(value)) }
    func encode(_ value: UInt64) throws { self.value = try .integer(Self.exact(value)) }

    func encode<T: Encodable>(_ value: T) throws {
        if let native = value as? any SQLiteValueConvertible {
            self.value = native.sqliteValue
        } else {
            try value.encode(to: self)
        }
    }

    private static func exact<T: BinaryInteger>(_ value: T) throws -> Int64 {
        guard let exact = Int64(exactly: value) else { throw NotSingle() }
        return exact
    }

    /// A keyed container that refuses to encode: the value has no single value and goes as JSON.
    private struct FailingKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        var codingPath: [any CodingKey] { [] }
        mutating func encodeNil(forKey key: Key) throws { throw NotSingle() }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { throw NotSingle() }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            KeyedEncodingContainer(FailingKeyed<NestedKey>())
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { FailingUnkeyed() }
        mutating func superEncoder() -> any Encoder { SQLiteSingleValueEncoder() }
        mutating func superEncoder(forKey key: Key) -> any Encoder { SQLiteSingleValueEncoder() }
    }

    /// An unkeyed container that refuses to encode, likewise.
    private struct FailingUnkeyed: UnkeyedEncodingContainer {
        var codingPath: [any CodingKey] { [] }
        var count: Int { 0 }
        mutating func encodeNil() throws { throw NotSingle() }
        mutating func encode<T: Encodable>(_ value: T) throws { throw NotSingle() }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            KeyedEncodingContainer(FailingKeyed<NestedKey>())
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { FailingUnkeyed() }
        mutating func superEncoder() -> any Encoder { SQLiteSingleValueEncoder() }
    }
}

/// Hands one column value to a `Decodable` that reads a single value (raw-value enums and the like).
private struct SQLiteSingleValueDecoder: Decoder, SingleValueDecodingContainer {
    struct NotSingle: Error {}

    let value: SQLiteValue
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> { throw NotSingle() }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { throw NotSingle() }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool { try native(Bool.self) }
    func decode(_ type: String.Type) throws -> String { try native(String.self) }
    func decode(_ type: Double.Type) throws -> Double { try native(Double.self) }
    func decode(_ type: Float.Type) throws -> Float { Float(try native(Double.self)) }
    func decode(_ type: Int.Type) throws -> Int { try native(Int.self) }
    func decode(_ type: Int8.Type) throws -> Int8 { try narrow(Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try narrow(Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try native(Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try native(Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try narrow(UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try narrow(UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try narrow(UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try narrow(UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try narrow(UInt64.self) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try value.decode(T.self) }

    private func native<T: SQLiteValueConvertible>(_ type: T.Type) throws -> T {
        guard let decoded = T(sqliteValue: value) else {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: [], debugDescription: "cannot read \(value.kind) as \(T.self)"))
        }
        return decoded
    }

    private func narrow<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let exact = value.exactInteger(as: T.self) else {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: [], debugDescription: "cannot read \(value.kind) as \(T.self)"))
        }
        return exact
    }
}
