import Foundation
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// The SQLite driver under `Database`: values stored in the forms files written before it hold, statements
/// on the connection's own thread, errors mapped, one statement per call, a bounded statement cache.
@Suite("SQLite driver")
struct SQLiteDriverTests {
    @Test("values round-trip in the stored forms of sqlite-kit: REAL times, uppercase TEXT UUIDs, BLOB data")
    func values() async throws {
        try await TestDatabase.with(.sqlite) { (_: TestDatabase, db: Database) async throws in
            try await db.withoutTransaction { tx in
                try await tx.raw("CREATE TABLE probe (t, u, d, e, s, empty, i, f, b, n)").run()
            }
            let time = Date(timeIntervalSince1970: 1_795_000_000.123456)
            let id = UUID()
            try await db.write { tx in
                try await tx.raw("""
                    INSERT INTO probe VALUES (\(bind: time), \(bind: id), \(bind: Data([0, 1, 255])), \(bind: Data()),
                    \(bind: "née ✓ \u{0} after a NUL"), \(bind: ""), \(bind: Int64.min), \(bind: 0.5), \(bind: true), \(bind: Optional<String>.none))
                    """).run()
            }
            let row = try #require(try await db.read { tx in
                try await tx.raw("""
                    SELECT t, u, d, e, s, empty, i, f, b, n, typeof(t) AS tt, typeof(u) AS tu, typeof(d) AS td,
                    typeof(e) AS te, typeof(b) AS tb, typeof(n) AS tn FROM probe
                    """).first()
            })
            #expect(try row.decode(column: "t", as: Date.self) == time)
            #expect(try row.decode(column: "u", as: UUID.self) == id)
            #expect(try row.decode(column: "u", as: String.self) == id.uuidString)
            #expect(try row.decode(column: "d", as: Data.self) == Data([0, 1, 255]))
            #expect(try row.decode(column: "e", as: Data.self) == Data())
            #expect(try row.decode(column: "s", as: String.self) == "née ✓ \u{0} after a NUL")
            #expect(try row.decode(column: "empty", as: String.self) == "")
            #expect(try row.decode(column: "i", as: Int64.self) == Int64.min)
            #expect(try row.decode(column: "f", as: Double.self) == 0.5)
            #expect(try row.decode(column: "b", as: Bool.self))
            #expect(try row.decodeNil(column: "n"))
            #expect(try row.decodeOptional(column: "n", as: String.self) == nil)
            let kinds = try ["tt", "tu", "td", "te", "tb", "tn"].map { try row.decode(column: $0, as: String.self) }
            #expect(kinds == ["real", "text", "blob", "blob", "integer", "null"])
            // A value of the wrong kind is a decoding error, never a trap or a default.
            #expect(throws: DecodingError.self) { try row.decode(column: "s", as: Int.self) }
            #expect(throws: DecodingError.self) { try row.decode(column: "d", as: UUID.self) }
            #expect(throws: DecodingError.self) { try row.decode(column: "missing", as: String.self) }
        }
    }

    @Test("a unique violation is a conflict and rolls the transaction back; the connection stays usable")
    func uniqueViolation() async throws {
        try await TestDatabase.with(.sqlite) { (_: TestDatabase, db: Database) async throws in
            try await db.withoutTransaction { tx in try await tx.raw("CREATE TABLE probe (k TEXT PRIMARY KEY, v INTEGER)").run() }
            try await db.write { tx in try await tx.raw("INSERT INTO probe VALUES ('a', 1)").run() }
            await #expect {
                try await db.write { tx in
                    try await tx.raw("INSERT INTO probe VALUES ('b', 2)").run()
                    try await tx.raw("INSERT INTO probe VALUES ('a', 3)").run()
                }
            } throws: { ($0 as? PortalError)?.code == .conflict }
            let keys = try await db.read { tx in try await tx.raw("SELECT k FROM probe ORDER BY k").all().map { try $0.decode(column: "k", as: String.self) } }
            #expect(keys == ["a"])
        }
    }

    @Test("a text with two statements is refused whole, not run in part")
    func oneStatementPerCall() async throws {
        try await TestDatabase.with(.sqlite) { (_: TestDatabase, db: Database) async throws in
            try await db.withoutTransaction { tx in try await tx.raw("CREATE TABLE probe (v INTEGER)").run() }
            await #expect(throws: (any Error).self) {
                try await db.write { tx in try await tx.raw("INSERT INTO probe VALUES (1); INSERT INTO probe VALUES (2)").run() }
            }
            let count = try await db.read { tx in try await tx.raw("SELECT count(*) AS n FROM probe").first()?.decode(column: "n", as: Int.self) }
            #expect(count == 0)
        }
    }

    @Test("more distinct statements than the cache holds all run right, in one transaction and across many")
    func statementCacheBound() async throws {
        try await TestDatabase.with(.sqlite) { (_: TestDatabase, db: Database) async throws in
            try await db.withoutTransaction { tx in try await tx.raw("CREATE TABLE probe (v INTEGER)").run() }
            let texts = 600
            try await db.write { tx in
                for n in 0..<texts {
                    // A distinct text each time (the literal), with a bound value as well.
                    try await tx.raw("INSERT INTO probe VALUES (\(unsafeRaw: String(n)) + \(bind: 0))").run()
                }
            }
            for n in stride(from: 0, to: texts, by: 7) {
                let found = try await db.read { tx in
                    try await tx.raw("SELECT v FROM probe WHERE v = \(unsafeRaw: String(n))").first()?.decode(column: "v", as: Int.self)
                }
                #expect(found == n)
            }
            let sum = try await db.read { tx in try await tx.raw("SELECT sum(v) AS s FROM probe").first()?.decode(column: "s", as: Int.self) }
            #expect(sum == (0..<texts).reduce(0, +))
        }
    }

    @Test("a write whose task is cancelled still commits or rolls back whole, and the writer goes on")
    func cancelledWrites() async throws {
        try await TestDatabase.with(.sqlite) { (_: TestDatabase, db: Database) async throws in
            try await db.withoutTransaction { tx in try await tx.raw("CREATE TABLE probe (a INTEGER, b INTEGER)").run() }
            await withTaskGroup(of: Void.self) { group in
                for n in 0..<40 {
                    group.addTask {
                        _ = try? await db.write { tx in
                            try await tx.raw("INSERT INTO probe VALUES (\(bind: n), NULL)").run()
                            try Task.checkCancellation()
                            try await tx.raw("UPDATE probe SET b = a WHERE a = \(bind: n)").run()
                        }
                    }
                }
                group.cancelAll()
            }
            // Every row written is whole: a transaction cut by cancellation left nothing behind.
            let halves = try await db.read { tx in
                try await tx.raw("SELECT count(*) AS n FROM probe WHERE b IS NULL").first()?.decode(column: "n", as: Int.self)
            }
            #expect(halves == 0)
            try await db.write { tx in try await tx.raw("INSERT INTO probe VALUES (100, 100)").run() }
            let last = try await db.read { tx in try await tx.raw("SELECT count(*) AS n FROM probe WHERE a = 100").first()?.decode(column: "n", as: Int.self) }
            #expect(last == 1)
        }
    }
}
