import Compliance
import Foundation
import Hummingbird
import PortalCore

/// Data-subject requests (GDPR Art. 15, 17, 20): export and erasure of one subject of the caller's
/// organization; and the organization's retention periods. The subject id is the path segment, percent-encoded as needed (`alice%40example.com`).
struct SubjectRoutes {
    let maxBodyBytes: Int
    let processingRegister: ProcessingRegister
    let reports: ReportJobs
    let retention: Retention
    let subjects: SubjectRequests

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let subjects = self.subjects
        table.guarded(group, prefix: "/portal", .post, "/subjects/{id}/export", .manageReports) { _, context, principal in
            JSONOutput.response(try await subjects.export(subjectID: try Self.subject(context), by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/subjects/{id}/erase", .manageReports) { _, context, principal in
            JSONOutput.response(try await subjects.erase(subjectID: try Self.subject(context), by: principal))
        }
        table.guarded(group, prefix: "/portal", .get, "/compliance/processing-register", .readReports) { request, _, principal in
            guard let from = request.queryString("from"), let to = request.queryString("to") else {
                throw PortalError(.validationFailed, "give the period: from and to, as YYYY-MM-DD (inclusive)", fieldErrors: [.init(pointer: "from", message: "required, with to")])
            }
            let period = try ProcessingRegister.period(from: from, to: to)
            return JSONOutput.response(try await self.processingRegister.register(
                organizationID: principal.organizationID, slug: principal.organizationSlug, start: period.start, end: period.end
            ))
        }
        let reports = self.reports
        table.guarded(group, prefix: "/portal", .post, "/reports", .manageReports) { request, _, principal in
            JSONOutput.response(try await reports.request(try await request.jsonBody(limit: self.maxBodyBytes), by: principal), status: .accepted)
        }
        table.guarded(group, prefix: "/portal", .get, "/reports", .readReports) { request, _, principal in
            JSONOutput.response(Page(items: try await reports.list(by: principal, limit: try request.queryInteger("limit", default: 50, in: 1...1000)), nextCursor: nil))
        }
        table.guarded(group, prefix: "/portal", .get, "/reports/{id}", .readReports) { _, context, principal in
            JSONOutput.response(try await reports.report(id: try context.uuidParameter("id", what: "report"), by: principal))
        }
        table.guarded(group, prefix: "/portal", .get, "/reports/{id}/download", .readReports) { _, context, principal in
            let (data, name) = try await reports.download(id: try context.uuidParameter("id", what: "report"), by: principal)
            return Response(
                status: .ok,
                headers: [.contentType: "application/zstd", .contentDisposition: "attachment; filename=\"\(name)\""],
                body: .init(byteBuffer: ByteBuffer(bytes: data))
            )
        }
        let retention = self.retention
        table.guarded(group, prefix: "/portal", .get, "/retention", .readIntegrations) { _, _, principal in
            JSONOutput.response(try await retention.policy(by: principal))
        }
        table.guarded(group, prefix: "/portal", .put, "/retention", .manageReports) { request, _, principal in
            JSONOutput.response(try await retention.setPolicy(try await request.jsonBody(limit: self.maxBodyBytes), by: principal))
        }
    }

    static func subject(_ context: PortalRequestContext) throws(PortalError) -> String {
        guard let raw = context.parameters.get("id"), let id = raw.removingPercentEncoding, !id.isEmpty else {
            throw PortalError(.validationFailed, "the subject id is missing", fieldErrors: [.init(pointer: "id", message: "required")])
        }
        // The documented maxLength counts code points, as sent: whitespace trimmed later, or characters that
        // combine into fewer graphemes, must not let a longer id through.
        guard id.unicodeScalars.count <= 320 else {
            throw PortalError(.validationFailed, "the subject id must be 1 to 320 characters", fieldErrors: [.init(pointer: "id", message: "1 to 320 characters")])
        }
        // PostgreSQL stores no U+0000: refused on every backend alike, before any lookup or erasure.
        guard !id.unicodeScalars.contains("\u{0}") else {
            throw PortalError(.validationFailed, "the subject id must not contain U+0000 (NUL)", fieldErrors: [.init(pointer: "id", message: "must not contain U+0000 (NUL)")])
        }
        return id
    }
}
