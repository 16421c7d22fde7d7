import Compliance
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Evidence bundles over HTTP: requested (202), built by the background service, listed, downloaded by an
/// auditor, and verified offline; roles and organizations enforced; bad requests are 422s naming the field.
@Suite("Reports over HTTP")
struct ReportAPITests {
    @Test("request, wait, download and verify a SOC 2 bundle; roles, isolation and bad bodies", arguments: Backend.available)
    func lifecycle(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            _ = try await portal.createIntegration(name: "CRM")
            let today = String(Timestamp.rfc3339(Date()).prefix(10))
            let bad = expectProblem(try await portal.call(.post, "/portal/reports", token: portal.token("acme.compliance"), json: #"{"kind":"iso","from":"2026-02-30","to":"2026-03-01","extra":1}"#), .unprocessableContent)
            let pointers = Set((bad["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == ["/extra", "/kind", "/from"], "\(pointers)")
            expectProblem(try await portal.call(.post, "/portal/reports", token: portal.token("acme.auditor"), json: #"{"kind":"soc2","from":"\#(today)","to":"\#(today)"}"#), .forbidden)

            let created = try await portal.call(.post, "/portal/reports", token: portal.token("acme.compliance"), json: #"{"kind":"soc2","from":"\#(today)","to":"\#(today)"}"#)
            #expect(created.status == .accepted, "\(created.body.string)")
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            var report: [String: JSONValue] = [:]
            _ = try await eventually {
                report = try await portal.call(.get, "/portal/reports/\(id)", token: portal.token("acme.auditor")).json.objectValue ?? [:]
                return report["status"] == "completed" || report["status"] == "failed"
            }
            #expect(report["status"] == "completed", "\(report)")
            #expect(report["download"] == .string("/portal/reports/\(id)/download"))
            let listed = try await portal.call(.get, "/portal/reports", token: portal.token("acme.auditor"))
            #expect(listed.json.objectValue?["items"]?.arrayValue?.first?.objectValue?["id"] == .string(id))
            expectProblem(try await portal.call(.get, "/portal/reports/\(id)", token: portal.token("globex.admin")), .notFound)
            expectProblem(try await portal.call(.get, "/portal/reports/\(id)/download", token: portal.token("globex.admin")), .notFound)

            let download = try await portal.call(.get, "/portal/reports/\(id)/download", token: portal.token("acme.auditor"))
            #expect(download.status == .ok && download.headers[.contentType] == "application/zstd")
            #expect(download.headers[.contentDisposition]?.contains("acme-soc2-\(today)-\(today).tar.zst") == true)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString).tar.zst")
            defer { try? FileManager.default.removeItem(at: file) }
            try Data(download.body.readableBytesView).write(to: file)
            let keys = try await portal.services.checkpointer.verifierKeys(slug: "acme")
            let verified = try EvidenceVerifier().verify(bundle: file.path, keys: keys)
            #expect(verified.passed, "\(verified.problems)")
            #expect(verified.manifest?.objectValue?["kind"] == "soc2" && verified.manifest?.objectValue?["organization"] == "acme")
            #expect(verified.manifest?.objectValue?["checkpoint"]?.objectValue?["size"] == report["checkpointSize"])

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let exported = entries.filter { $0.type == "report.exported" }
            #expect(exported.count == 1 && exported.first?.data.objectValue?["reportId"] == .string(id))
            #expect(exported.first?.data.objectValue?["manifestDigest"] == report["manifestDigest"])
        }
    }
}
