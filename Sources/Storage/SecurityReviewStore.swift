package import Foundation
package import PortalCore
import SQLKit

/// One security review of an integration (issue 21): the questionnaire's answers, the DPA, who reviewed
/// and when, the outcome and when the next review is due.
package struct SecurityReviewRecord: Sendable, Equatable {
    package enum Outcome: String, Sendable, CaseIterable {
        case approved
        case approvedWithConditions = "approved_with_conditions"
        case rejected
    }

    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    /// Question id to answer (a boolean or a text).
    package var answers: JSONValue
    package var dpaOnFile: Bool
    package var dpaReference: String?
    package var outcome: Outcome
    package var notes: String?
    /// The reviewing token's owner.
    package var reviewer: String
    package var reviewerToken: UUID
    package var reviewedAt: Date
    package var nextDue: Date

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, answers: JSONValue, dpaOnFile: Bool, dpaReference: String?, outcome: Outcome,
        notes: String?, reviewer: String, reviewerToken: UUID, reviewedAt: Date, nextDue: Date
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.answers = answers
        self.dpaOnFile = dpaOnFile
        self.dpaReference = dpaReference
        self.outcome = outcome
        self.notes = notes
        self.reviewer = reviewer
        self.reviewerToken = reviewerToken
        self.reviewedAt = reviewedAt
        self.nextDue = nextDue
    }
}

/// The `security_reviews` table, scoped by organization.
package struct SecurityReviewStore {
    private let db: any SQLDatabase
    private static let columns = """
        id, organization_id, integration_id, answers, dpa_on_file, dpa_reference, outcome, notes, reviewer, reviewer_token, reviewed_at, next_due
        """

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func insert(_ r: SecurityReviewRecord) async throws {
        try await db.raw("""
            INSERT INTO security_reviews (\(unsafeRaw: Self.columns))
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: db.jsonBind(r.answers)), \(bind: r.dpaOnFile),
                    \(bind: r.dpaReference), \(bind: r.outcome.rawValue), \(bind: r.notes), \(bind: r.reviewer), \(bind: r.reviewerToken),
                    \(bind: r.reviewedAt), \(bind: r.nextDue))
            """).run()
    }

    /// The integration's reviews, newest first.
    package func list(organizationID: UUID, integrationID: UUID, limit: Int) async throws -> [SecurityReviewRecord] {
        let backend = db.backend
        return try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM security_reviews
            WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: integrationID)
            ORDER BY reviewed_at DESC, id DESC LIMIT \(bind: limit)
            """).all().map { try Self.decode($0, backend) }
    }

    /// The latest review of each of the organization's integrations that has one.
    package func latest(organizationID: UUID) async throws -> [UUID: SecurityReviewRecord] {
        let backend = db.backend
        let rows = try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM security_reviews r
            WHERE organization_id = \(bind: organizationID) AND NOT EXISTS (
              SELECT 1 FROM security_reviews newer WHERE newer.integration_id = r.integration_id
                AND (newer.reviewed_at > r.reviewed_at OR (newer.reviewed_at = r.reviewed_at AND newer.id > r.id))
            )
            """).all()
        var latest: [UUID: SecurityReviewRecord] = [:]
        for row in rows {
            let record = try Self.decode(row, backend)
            latest[record.integrationID] = record
        }
        return latest
    }

    private static func decode(_ row: any SQLRow, _ backend: Database.Dialect) throws -> SecurityReviewRecord {
        SecurityReviewRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            answers: try row.decodeJSON(column: "answers", backend: backend) ?? [:],
            dpaOnFile: try row.decode(column: "dpa_on_file", as: Bool.self),
            dpaReference: try row.decodeOptional(column: "dpa_reference", as: String.self),
            outcome: try row.decodeCase(column: "outcome", as: SecurityReviewRecord.Outcome.self),
            notes: try row.decodeOptional(column: "notes", as: String.self),
            reviewer: try row.decode(column: "reviewer", as: String.self),
            reviewerToken: try row.decode(column: "reviewer_token", as: UUID.self),
            reviewedAt: try row.decode(column: "reviewed_at", as: Date.self),
            nextDue: try row.decode(column: "next_due", as: Date.self)
        )
    }
}
