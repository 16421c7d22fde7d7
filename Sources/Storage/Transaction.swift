package import SQLKit

/// The database as lent to the body of ``Database/read(_:)``, ``Database/write(_:)``,
/// ``Database/readStatements(_:)`` or ``Database/withoutTransaction(_:)``: one transaction, or one
/// connection in autocommit mode for the last two.
///
/// Opaque outside `Storage`: other modules hand it to a store (`IntegrationStore(tx)`, `LedgerStore(tx)`)
/// and never see SQL. Its SQL access is `package`, and `SQLKit` is a dependency of `Storage` alone (the
/// `make test` check `scripts/check-sql-ownership.sh` keeps SQL text and `import SQLKit` out of every other
/// target), so a query can only be written as a named method of a store.
package struct Transaction: Sendable {
    package let sql: any SQLDatabase

    package init(_ sql: any SQLDatabase) {
        self.sql = sql
    }

    /// Which backend the transaction runs on.
    package var backend: Database.Dialect { sql.backend }

    /// Runs `body` inside a savepoint of this transaction: its writes are kept when it returns and undone
    /// when it throws (the error is rethrown), while the rest of the transaction goes on.
    package func savepoint<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T {
        // Savepoints nest by name: ROLLBACK TO and RELEASE act on the most recent one of that name.
        try await sql.raw("SAVEPOINT portal_savepoint").run()
        let result: T
        do {
            result = try await body(self)
        } catch {
            try await sql.raw("ROLLBACK TO SAVEPOINT portal_savepoint").run()
            try await sql.raw("RELEASE SAVEPOINT portal_savepoint").run()
            throw error
        }
        try await sql.raw("RELEASE SAVEPOINT portal_savepoint").run()
        return result
    }

    /// A raw statement, for `Storage` and for tests that tamper with rows on purpose.
    package func raw(_ query: SQLQueryString) -> SQLRawBuilder {
        sql.raw(query)
    }
}
