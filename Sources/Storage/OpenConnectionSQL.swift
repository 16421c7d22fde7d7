import Logging
import NIOCore
import PortalCore
import PostgresKit
import PostgresNIO
import SQLKit

/// A PostgreSQL connection's SQL interface whose statements fail at once on a closed connection.
///
/// PostgresNIO hands a query to its channel without a write promise: on a connection the server has just
/// closed (`pg_ctl restart -m immediate`), the write fails silently and the query's future never completes,
/// so a request waited for ever. Here each statement is started on the connection's event loop
/// after checking that the channel is still active; the channel's state changes only on that loop, so the
/// query either reaches a live channel (whose handler fails it if the connection dies later) or fails
/// with ``PortalError/Code/unavailable`` now.
struct OpenConnectionSQL: SQLDatabase {
    let connection: PostgresConnection
    let base: any SQLDatabase

    init(_ connection: PostgresConnection) {
        self.connection = connection
        base = connection.sql(queryLogLevel: nil)
    }

    var logger: Logger { base.logger }
    var eventLoop: any EventLoop { base.eventLoop }
    var version: (any SQLDatabaseReportedVersion)? { base.version }
    var dialect: any SQLDialect { base.dialect }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) -> EventLoopFuture<Void> {
        let connection = connection
        let base = base
        return connection.eventLoop.flatSubmit {
            guard !connection.isClosed else {
                return connection.eventLoop.makeFailedFuture(PortalError(.unavailable, "the database closed the connection; retry shortly"))
            }
            return base.execute(sql: query, onRow)
        }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        try await execute(sql: query, onRow).get()
    }

    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        try await closure(self)
    }
}
