import Compliance
import Foundation
import Ledger
import PortalCore
import Testing

/// The ledger's event types come from one catalogue (`AuditEventType`); the documentation's table and the
/// report mappings are checked against it, so neither can name a type the ledger never writes nor miss one
/// it does.
@Suite("Event type catalogue")
struct EventCatalogueTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The types in the first column of docs/design.md's event table: `a.b` / `c` means a.b and a.c.
    static func documentedTypes() throws -> (written: Set<String>, planned: Set<String>) {
        let text = try String(contentsOf: root.appendingPathComponent("docs/design.md"), encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex { $0.hasPrefix("Event types and their `data`") })
        var written: Set<String> = []
        var planned: Set<String> = []
        for line in lines[start...].dropFirst().drop(while: { !$0.hasPrefix("|") }).prefix(while: { $0.hasPrefix("|") }) {
            let cell = line.split(separator: "|", omittingEmptySubsequences: false)[1]
            guard cell.contains("`") else { continue }
            var prefix = ""
            for (i, name) in cell.split(separator: "`", omittingEmptySubsequences: false).enumerated() where i % 2 == 1 {
                let full: String
                if let dot = name.firstIndex(of: ".") {
                    prefix = String(name[..<dot])
                    full = String(name)
                } else {
                    full = prefix + "." + name
                }
                if cell.contains("*planned*") { planned.insert(full) } else { written.insert(full) }
            }
        }
        return (written, planned)
    }

    @Test("docs/design.md lists exactly the catalogue's types (planned ones aside, which the catalogue lacks)")
    func documentationMatchesCatalogue() throws {
        let documented = try Self.documentedTypes()
        let catalogue = Set(AuditEventType.allCases.map(\.rawValue))
        #expect(documented.written.count > 30, "the table was found and read")
        #expect(documented.written.subtracting(catalogue).sorted() == [], "documented but never written")
        #expect(catalogue.subtracting(documented.written).sorted() == [], "written but not documented")
        #expect(documented.planned.intersection(catalogue).sorted() == [], "marked planned but already written")
        #expect(documented.planned == AuditEventType.reserved, "the planned rows are the reserved names")
    }

    @Test("every report mapping loads and names only catalogue types")
    func mappingsNameCatalogueTypes() throws {
        let directory = Self.root.appendingPathComponent("reports/mappings").path
        for kind in ["soc2", "gdpr"] {
            let mapping = try EvidenceMapping.load(kind: kind, directory: directory)
            #expect(!mapping.criteria.isEmpty)
            for criterion in mapping.criteria {
                for type in criterion.eventTypes { #expect(AuditEventType.isKnown(type), "\(kind) \(criterion.id): \(type)") }
            }
        }
    }

    @Test("a mapping that misspells a type is refused with the criterion and the type named")
    func misspeltTypeRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mapping-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let original = try String(contentsOf: Self.root.appendingPathComponent("reports/mappings/soc2.yaml"), encoding: .utf8)
        #expect(original.contains("token.refresh_failed"))
        try original.replacingOccurrences(of: "token.refresh_failed", with: "token.refresh_fialed")
            .write(to: directory.appendingPathComponent("soc2.yaml"), atomically: true, encoding: .utf8)
        let error = #expect(throws: PortalError.self) { try EvidenceMapping.load(kind: "soc2", directory: directory.path) }
        #expect(error?.code == .configuration)
        #expect(error?.message.contains("CC6.1") == true && error?.message.contains("token.refresh_fialed") == true, "\(error?.message ?? "")")
    }
}
