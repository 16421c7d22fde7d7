import Foundation
import SQLKit

extension Database {
    /// The database's size on disk, in bytes: the SQLite file and its write-ahead log, or PostgreSQL's
    /// `pg_database_size` (tables, indexes and TOAST of this database).
    package func bytesOnDisk() async throws -> Int64 {
        switch location {
        case .sqlite(let path):
            return [path, path + "-wal"].reduce(Int64(0)) { sum, file in
                sum + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? 0)
            }
        case .postgres:
            return try await read { db in
                try await db.raw("SELECT pg_database_size(current_database()) AS bytes").first()?.decode(column: "bytes", as: Int64.self) ?? 0
            }
        }
    }
}
