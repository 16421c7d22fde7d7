@testable import Compliance
import Foundation
import PortalCore
import Storage
import Testing

/// The pure steps of building an evidence bundle: which criteria an entry belongs to, the criteria's
/// reconciliation, the vendor inventory's exceptions, the manifest, and `SHA256SUMS`.
@Suite("Evidence bundle steps")
struct EvidenceStepsTests {
    static let mapping = EvidenceMapping(framework: "SOC 2", criteria: [
        .init(id: "CC6.1", title: "Access", description: "", eventTypes: ["token.issued", "credential.rotated"], fields: ["scopes"], requireField: nil),
        .init(id: "CC7.2", title: "Monitoring", description: "", eventTypes: ["alert.firing"], fields: [], requireField: "rule"),
        .init(id: "CC8.1", title: "Changes", description: "", eventTypes: ["integration.updated", "token.issued"], fields: [], requireField: nil),
    ])

    func entry(_ type: String, _ data: JSONValue = [:]) -> EvidenceBundler.EntryFields {
        .init(seq: 1, time: "2026-11-01T00:00:00Z", type: type, actor: "a", integration: nil, data: data)
    }

    @Test("an entry belongs to every criterion taking its type; a required field must be present and non-empty")
    func criteriaOfEntry() {
        #expect(EvidenceBundler.criteria(of: entry("token.issued"), in: Self.mapping).map(\.id) == ["CC6.1", "CC8.1"])
        #expect(EvidenceBundler.criteria(of: entry("request.completed"), in: Self.mapping).isEmpty)
        #expect(EvidenceBundler.criteria(of: entry("alert.firing"), in: Self.mapping).isEmpty, "no rule")
        #expect(EvidenceBundler.criteria(of: entry("alert.firing", ["rule": ""]), in: Self.mapping).isEmpty, "an empty rule")
        #expect(EvidenceBundler.criteria(of: entry("alert.firing", ["rule": "HighErrorRate"]), in: Self.mapping).map(\.id) == ["CC7.2"])
    }

    @Test("a population that differs from the ledger's count is not reconciled and becomes an exception")
    func reconciliation() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("steps-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var writers: [String: PopulationWriter] = [:]
        for c in Self.mapping.criteria { writers[c.id] = try PopulationWriter(directory: folder, criterion: c) }
        try writers["CC6.1"]?.append(entry("token.issued", ["scopes": "read"]), hash: Array(repeating: 1, count: 32))
        for writer in writers.values { try writer.close() }
        let populations = EvidenceBundler.Populations(writers: writers, ledgerCounts: ["CC6.1": 1, "CC8.1": 2], order: Self.mapping.criteria)
        let criteria = EvidenceBundler.criteriaDocuments(Self.mapping, populations)
        #expect(criteria.map { $0.objectValue?["reconciled"] } == [.bool(true), .bool(true), .bool(false)])
        #expect(criteria[0].objectValue?["population"]?.objectValue?["rows"] == 1)
        #expect(EvidenceBundler.reconciliationExceptions(criteria) == [["criterion": "CC8.1", "flag": "population_not_reconciled"]])
        #expect(populations.files.map(\.path) == [
            "populations/cc6.1.csv", "populations/cc6.1.json", "populations/cc7.2.csv", "populations/cc7.2.json", "populations/cc8.1.csv", "populations/cc8.1.json",
        ])
        // SHA256SUMS: path order, two spaces, as sha256sum prints it.
        let sums = try EvidenceBundler.sums(populations.files.reversed())
        let lines = sums.split(separator: "\n")
        #expect(lines.count == 6 && lines[0].hasSuffix("  populations/cc6.1.csv") && lines[0].prefix(64).allSatisfy(\.isHexDigit))
    }

    @Test("SOC 2's vendor inventory keeps only undeclared destinations as exceptions; GDPR's register is the document")
    func inventory() {
        let register: JSONValue = [
            "period": ["from": "a", "to": "b"],
            "records": [["integrationId": "i1", "name": "crm", "type": "enterprise", "baseUrlHost": "api.crm.example", "deleted": false,
                         "observed": ["calls": 3, "destinationHosts": ["api.crm.example"]]]],
            "exceptions": [["flag": "undeclared_destination_host", "host": "evil.example"], ["flag": "missing_legal_basis", "integrationId": "i1"]],
        ]
        let soc2 = EvidenceBundler.inventory(kind: "soc2", register: register)
        #expect(soc2.path == "vendor-inventory.json")
        #expect(soc2.exceptions == [["flag": "undeclared_destination_host", "host": "evil.example"]])
        #expect(soc2.document.objectValue?["vendors"]?.arrayValue?.first?.objectValue?["calls"] == 3)
        let gdpr = EvidenceBundler.inventory(kind: "gdpr", register: register)
        #expect(gdpr.path == "processing-register.json" && gdpr.document == register && gdpr.exceptions.count == 2)
    }

    @Test("the manifest names the period (with its calendar days), the checkpoint, the keys, the criteria and the exceptions")
    func manifest() {
        let start = Timestamp.parse("2026-11-01T00:00:00Z")!
        let end = Timestamp.parse("2026-12-01T00:00:00Z")!
        let checkpoint = LedgerCheckpointRow(size: 42, root: Array(repeating: 7, count: 32), note: "note", createdAt: end, keepReason: nil)
        let manifest = EvidenceBundler.manifest(
            kind: "soc2", framework: "SOC 2", slug: "acme", period: .init(start: start, end: end), checkpoint: checkpoint, keys: ["k1"], criteria: [], exceptions: []
        )
        let m = manifest.objectValue ?? [:]
        #expect(m["period"] == ["from": "2026-11-01T00:00:00.000000Z", "to": "2026-12-01T00:00:00.000000Z", "inclusiveDates": "2026-11-01 to 2026-11-30"])
        #expect(m["checkpoint"]?.objectValue?["size"] == 42 && m["checkpoint"]?.objectValue?["root"] == .string(Data(Array(repeating: 7, count: 32)).base64EncodedString()))
        #expect(m["generator"] == .string(EvidenceBundler.generator) && m["signingKeys"] == ["k1"] && m["organization"] == "acme")
    }
}
