import Foundation
import VaporCSQLite

// The SQLite library is the amalgamation sqlite-nio vendors (module `VaporCSQLite`, symbols prefixed
// `sqlite_nio_`), not a second copy: two copies of SQLite in one process break each other's POSIX locks on
// the same file. The module is a target of the sqlite-nio package, not a product, and reaches this target
// through the SQLiteNIO product (see docs/decisions.md, "One hop per SQLite transaction").

/// A value in a SQLite column or a statement parameter.
enum SQLiteValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// A statement that SQLite refused or failed, with its extended result code and message (which hold no
/// bind values).
struct SQLiteFailure: Error, CustomStringConvertible {
    let code: Int32
    let message: String

    var description: String { "SQLite error \(code): \(message)" }

    /// A UNIQUE or PRIMARY KEY constraint failed.
    var isUniqueViolation: Bool { code == Self.uniqueConstraint || code == Self.primaryKeyConstraint }

    /// `SQLITE_CONSTRAINT_UNIQUE` and `SQLITE_CONSTRAINT_PRIMARYKEY`: C macros Swift does not import.
    static let uniqueConstraint = SQLITE_CONSTRAINT | (8 << 8)
    static let primaryKeyConstraint = SQLITE_CONSTRAINT | (6 << 8)
}

/// The column names of a statement's result, shared by all its rows.
final class SQLiteColumns: Sendable {
    let names: [String]
    let positions: [String: Int]

    init(names: [String]) {
        self.names = names
        var positions: [String: Int] = [:]
        for (position, name) in names.enumerated() where positions[name] == nil { positions[name] = position }
        self.positions = positions
    }
}

/// One SQLite connection and its prepared statements, used by one task at a time on its own thread.
///
/// Statements are prepared once per SQL text and kept (`SQLITE_PREPARE_PERSISTENT`), reset after each use:
/// the stores' statements are a few dozen fixed texts, plus multi-row inserts of up to 128 rows, so parsing
/// (`sqlite3RunParser`, in every profile of the sqlite-nio driver) happens once per connection and text
/// instead of once per statement run. The cache is bounded: when full, the less recently used half is
/// finalized, as texts built with a variable number of parameters could otherwise grow it without end.
final class SQLiteHandle: @unchecked Sendable { // lent to one task at a time by SQLiteConnectionPool
    /// The thread this connection's transactions run on.
    let thread: SQLiteThread
    private var handle: OpaquePointer?
    private var statements: [String: Statement] = [:]
    private var uses: UInt64 = 0

    static let cachedStatementLimit = 256

    private final class Statement {
        let pointer: OpaquePointer
        var columns: SQLiteColumns?
        var lastUse: UInt64 = 0

        init(pointer: OpaquePointer) { self.pointer = pointer }
    }

    private init(handle: OpaquePointer, thread: SQLiteThread) {
        self.handle = handle
        self.thread = thread
    }

    /// Opens the file at `path` (creating it) with the settings every connection needs.
    static func open(path: String, thread: SQLiteThread) throws -> SQLiteHandle {
        var raw: OpaquePointer?
        let flags = SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_EXRESCODE
        let status = sqlite_nio_sqlite3_open_v2(path, &raw, flags, nil)
        guard status == SQLITE_OK, let raw else {
            let message = raw.flatMap { sqlite_nio_sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "cannot open the database file"
            sqlite_nio_sqlite3_close(raw)
            throw SQLiteFailure(code: status, message: message)
        }
        let connection = SQLiteHandle(handle: raw, thread: thread)
        do {
            // WAL lets readers run beside the writer; FULL makes a commit durable once acknowledged;
            // busy_timeout makes other processes (the CLI beside a running server) wait, not fail.
            // busy_timeout first: even switching to WAL takes a lock another process may hold.
            try connection.execute("PRAGMA busy_timeout = 10000")
            try connection.execute("PRAGMA journal_mode = WAL")
            try connection.execute("PRAGMA synchronous = FULL")
            try connection.execute("PRAGMA foreign_keys = ON")
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Runs a statement without parameters, ignoring any rows (transaction control, pragmas).
    func execute(_ sql: String) throws {
        try run(sql, []) { _ in }
    }

    /// Runs one statement with `binds`, handing each result row to `onRow` as it is stepped.
    func run(_ sql: String, _ binds: [SQLiteValue], _ onRow: (SQLiteRecord) -> Void) throws {
        let statement = try prepared(sql)
        let pointer = statement.pointer
        defer {
            sqlite_nio_sqlite3_reset(pointer)
            sqlite_nio_sqlite3_clear_bindings(pointer)
        }
        for (offset, value) in binds.enumerated() {
            try check(bind(value, at: Int32(offset + 1), to: pointer))
        }
        let columns = self.columns(of: statement)
        while true {
            let status = sqlite_nio_sqlite3_step(pointer)
            if status == SQLITE_DONE { return }
            guard status == SQLITE_ROW else { throw failure(status) }
            var values: [SQLiteValue] = []
            values.reserveCapacity(columns.names.count)
            for column in 0..<Int32(columns.names.count) { values.append(value(of: pointer, at: column)) }
            onRow(SQLiteRecord(columns: columns, values: values))
        }
    }

    /// Finalizes every statement and closes the connection; the handle is unusable afterwards.
    func close() {
        for statement in statements.values { sqlite_nio_sqlite3_finalize(statement.pointer) }
        statements.removeAll()
        if let handle { sqlite_nio_sqlite3_close_v2(handle) }
        handle = nil
    }

    /// Finalizes the less recently used half of the cache.
    private func evictLeastRecentlyUsed() {
        let byUse = statements.sorted { $0.value.lastUse < $1.value.lastUse }
        for (sql, statement) in byUse.prefix(byUse.count / 2 + 1) {
            sqlite_nio_sqlite3_finalize(statement.pointer)
            statements[sql] = nil
        }
    }

    private func prepared(_ sql: String) throws -> Statement {
        uses &+= 1
        if let statement = statements[sql] {
            statement.lastUse = uses
            return statement
        }
        guard let handle else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "the connection is closed") }
        if statements.count >= Self.cachedStatementLimit { evictLeastRecentlyUsed() }
        var pointer: OpaquePointer?
        var trailing = false
        let status = sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            let status = sqlite_nio_sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, &tail)
            // One statement per call: text after the first statement would be silently ignored.
            if let tail { trailing = !String(cString: tail).allSatisfy(\.isWhitespace) }
            return status
        }
        guard status == SQLITE_OK, !trailing, let pointer else {
            let error = status == SQLITE_OK ? SQLiteFailure(code: SQLITE_MISUSE, message: trailing ? "one statement per call" : "no statement in the text") : failure(status)
            sqlite_nio_sqlite3_finalize(pointer)
            throw error
        }
        let statement = Statement(pointer: pointer)
        statement.lastUse = uses
        statements[sql] = statement
        return statement
    }

    private func columns(of statement: Statement) -> SQLiteColumns {
        let count = Int(sqlite_nio_sqlite3_column_count(statement.pointer))
        if let columns = statement.columns, columns.names.count == count { return columns }
        let names = (0..<Int32(count)).map { column in
            sqlite_nio_sqlite3_column_name(statement.pointer, column).map { String(cString: $0) } ?? ""
        }
        let columns = SQLiteColumns(names: names)
        statement.columns = columns
        return columns
    }

    private func bind(_ value: SQLiteValue, at index: Int32, to statement: OpaquePointer) -> Int32 {
        switch value {
        case .null:
            return sqlite_nio_sqlite3_bind_null(statement, index)
        case .integer(let integer):
            return sqlite_nio_sqlite3_bind_int64(statement, index, integer)
        case .real(let real):
            return sqlite_nio_sqlite3_bind_double(statement, index, real)
        case .text(let text):
            var text = text
            return text.withUTF8 { bytes in
                guard let start = bytes.baseAddress, !bytes.isEmpty else {
                    return sqlite_nio_sqlite3_bind_text64(statement, index, "", 0, sqliteTransient, UInt8(SQLITE_UTF8))
                }
                return UnsafeRawPointer(start).withMemoryRebound(to: CChar.self, capacity: bytes.count) { characters in
                    sqlite_nio_sqlite3_bind_text64(statement, index, characters, UInt64(bytes.count), sqliteTransient, UInt8(SQLITE_UTF8))
                }
            }
        case .blob(let bytes):
            return bytes.withUnsafeBytes { buffer in
                // A zero-length blob is still a blob, not NULL.
                buffer.baseAddress == nil
                    ? sqlite_nio_sqlite3_bind_zeroblob(statement, index, 0)
                    : sqlite_nio_sqlite3_bind_blob64(statement, index, buffer.baseAddress, UInt64(buffer.count), sqliteTransient)
            }
        }
    }

    private func value(of statement: OpaquePointer, at column: Int32) -> SQLiteValue {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER:
            return .integer(sqlite_nio_sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT:
            return .real(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            guard count > 0, let bytes = sqlite_nio_sqlite3_column_blob(statement, column) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            return .null
        }
    }

    private func check(_ status: Int32) throws {
        guard status == SQLITE_OK else { throw failure(status) }
    }

    private func failure(_ status: Int32) -> SQLiteFailure {
        guard let handle else { return SQLiteFailure(code: status, message: "the connection is closed") }
        let code = sqlite_nio_sqlite3_extended_errcode(handle)
        let message = sqlite_nio_sqlite3_errmsg(handle).map { String(cString: $0) } ?? "error \(status)"
        return SQLiteFailure(code: code == SQLITE_OK ? status : code, message: message)
    }
}

/// SQLite's `SQLITE_TRANSIENT`: it copies a bound text or blob before the call returns.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
