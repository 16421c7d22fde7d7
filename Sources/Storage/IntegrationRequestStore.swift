package import Foundation
package import PortalCore
import SQLKit

/// One outbound call through the gateway: a row of `integration_requests` (the seed's columns).
package struct IntegrationRequestRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var method: String
    /// The endpoint template (identifiers replaced by `{id}`), never the raw path.
    package var endpoint: String
    /// Stored only when the integration's configuration asks for it, with credential values redacted.
    package var requestBody: JSONValue?
    /// Nil when no response came (network errors, refusals).
    package var responseStatus: Int?
    package var responseBody: JSONValue?
    package var durationMs: Int
    package var errorMessage: String?
    package var createdAt: Date

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, method: String, endpoint: String, requestBody: JSONValue?,
        responseStatus: Int?, responseBody: JSONValue?, durationMs: Int, errorMessage: String?, createdAt: Date
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.method = method
        self.endpoint = endpoint
        self.requestBody = requestBody
        self.responseStatus = responseStatus
        self.responseBody = responseBody
        self.durationMs = durationMs
        self.errorMessage = errorMessage
        self.createdAt = createdAt
    }
}

/// The `integration_requests` table.
package struct IntegrationRequestStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func insert(_ r: IntegrationRequestRecord) async throws {
        try await insert([r])
    }

    /// Inserts several rows with one statement per 128 rows (the gateway's batch of calls).
    package func insert(_ records: [IntegrationRequestRecord]) async throws {
        for start in stride(from: 0, to: records.count, by: 128) {
            let values = records[start..<min(start + 128, records.count)].map { r -> SQLQueryString in
                """
                (\(bind: r.id), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.method), \(bind: String(r.endpoint.prefix(500))), \
                \(bind: db.jsonBind(r.requestBody)), \(bind: r.responseStatus), \(bind: db.jsonBind(r.responseBody)), \(bind: r.durationMs), \
                \(bind: r.errorMessage.map { String($0.prefix(2000)) }), \(bind: r.createdAt))
                """
            }
            try await db.raw("""
                INSERT INTO integration_requests
                  (id, organization_id, integration_id, method, endpoint, request_body, response_status, response_body, duration_ms, error_message, created_at)
                VALUES
                """ + " " + values.joined(separator: ", ")).run()
        }
    }

    /// The organization's calls through one integration, newest first.
    package func list(organizationID: UUID, integrationID: UUID, limit: Int) async throws -> [IntegrationRequestRecord] {
        let backend = db.backend
        return try await db.raw("""
            SELECT id, organization_id, integration_id, method, endpoint, request_body, response_status, response_body, duration_ms, error_message, created_at
            FROM integration_requests WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID)
            ORDER BY id DESC LIMIT \(bind: limit)
            """).all().map { row in
            IntegrationRequestRecord(
                id: try row.decode(column: "id", as: UUID.self),
                organizationID: try row.decode(column: "organization_id", as: UUID.self),
                integrationID: try row.decode(column: "integration_id", as: UUID.self),
                method: try row.decode(column: "method", as: String.self),
                endpoint: try row.decode(column: "endpoint", as: String.self),
                requestBody: try row.decodeJSON(column: "request_body", backend: backend),
                responseStatus: try row.decodeOptional(column: "response_status", as: Int.self),
                responseBody: try row.decodeJSON(column: "response_body", backend: backend),
                durationMs: try row.decodeOptional(column: "duration_ms", as: Int.self) ?? 0,
                errorMessage: try row.decodeOptional(column: "error_message", as: String.self),
                createdAt: try row.decode(column: "created_at", as: Date.self)
            )
        }
    }
}
