import Foundation
package import PortalCore

/// Where the data lives: an SQLite file (the embedded default) or a PostgreSQL server.
package enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// Connection details of a PostgreSQL server, parsed from a `postgres://` URL.
    package struct PostgresLocation: Sendable, Equatable {
        package var host: String
        package var port: Int
        package var username: String
        package var password: String?
        package var database: String
        /// `disable`, `prefer` (the default, as libpq) or `require`.
        package var sslMode: String
    }

    /// Parses `sqlite:///absolute/path`, `sqlite://relative/path`, `sqlite:path`, or
    /// `postgres[ql]://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`.
    package init(url: String) throws(PortalError) {
        if url.hasPrefix("sqlite:") {
            var path = String(url.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            guard !path.isEmpty else { throw PortalError(.configuration, "the SQLite URL names no file") }
            self = .sqlite(path: path)
            return
        }
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://"),
              let components = URLComponents(string: url),
              let host = components.host, !host.isEmpty
        else {
            throw PortalError(.configuration, "the database URL must start with sqlite: or postgres:// and name a host")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        let sslMode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
        guard ["disable", "prefer", "require"].contains(sslMode) else {
            throw PortalError(.configuration, "sslmode must be disable, prefer or require")
        }
        self = .postgres(PostgresLocation(
            host: host,
            port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? (components.user ?? "postgres") : database,
            sslMode: sslMode
        ))
    }
}

extension DatabaseLocation: CustomStringConvertible {
    /// The location without its password, for messages: `postgres://user@host:port/db` or `sqlite:///path`.
    package var description: String {
        switch self {
        case .sqlite(let path): "sqlite://\(path)"
        case .postgres(let pg): "postgres://\(pg.username)@\(pg.host):\(pg.port)/\(pg.database)"
        }
    }
}
