@testable import Compliance
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Evidence bundles opened in a spreadsheet (issue 16 item 13): a population's CSV never carries a cell a
/// spreadsheet would run as a formula (OWASP's rule), while the JSON population keeps the data as it is.
@Suite("Evidence bundle hardening")
struct BundleHardeningTests {
    /// Owners an attacker with a token-issuing role could choose, as they must appear in the CSV.
    static let hostileOwners: [(owner: String, json: String, csv: String)] = [
        ("=cmd|' /C calc'!A0", #"=cmd|' /C calc'!A0"#, "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", #"@SUM(1+1)*cmd|' /C calc'!A0"#, "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("+1+1", "+1+1", "'+1+1"),
        ("-2+3,\"x\"", #"-2+3,\"x\""#, #""'-2+3,""x""""#),
    ]

    @Test("a token owner written as a formula is neutralized in cc6.2.csv and kept as is in cc6.2.json", arguments: Backend.available)
    func formulaOwnerInBundle(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            for hostile in Self.hostileOwners {
                let issued = try await portal.call(.post, "/portal/tokens", token: portal.token("acme.admin"), json: #"{"role":"auditor","owner":"\#(hostile.json)"}"#)
                #expect(issued.status == .created, "\(issued.body.string)")
            }
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-hardening-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch)
            let verified = try EvidenceVerifier().verify(bundle: file.path, keys: try await portal.services.checkpointer.verifierKeys(slug: "acme"))
            #expect(verified.passed, "\(verified.problems)")

            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let csv = try String(contentsOf: root.appendingPathComponent("populations/cc6.2.csv"), encoding: .utf8)
            let lines = csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            for hostile in Self.hostileOwners {
                // The owner column is the 9th (seq, entry_hash, time, type, actor, integration, tokenId, role, owner).
                #expect(lines.contains { $0.contains(",auditor,\(hostile.csv),") }, "no neutralized row for \(hostile.owner) in:\n\(csv)")
            }
            for line in lines {
                for cell in Self.cells(line) {
                    #expect(!["=", "+", "-", "@", "\t", "\r"].contains(cell.prefix(1)), "a formula cell '\(cell)' in \(line)")
                }
            }
            let json = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/cc6.2.json")))
            let owners = Set((json.arrayValue ?? []).compactMap { $0.objectValue?["fields"]?.objectValue?["owner"]?.stringValue })
            #expect(owners.isSuperset(of: Self.hostileOwners.map(\.owner)), "\(owners)")
        }
    }

    @Test("a CSV cell that would start a formula gets a leading quote, and RFC 4180 quoting still holds")
    func cellEncoding() {
        let cases: [(String, String)] = [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\r=1", "\"'\r=1\""),
            ("=1,2", "\"'=1,2\""),
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("a=1", "a=1"),
            ("'=1", "'=1"),
            ("", ""),
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("\n=1", "\"\n=1\""),
        ]
        for (text, expected) in cases {
            #expect(PopulationWriter.cell(text) == expected, "\(text.debugDescription)")
        }
        // Field values: numbers stay numbers (a negative number is no formula); text is neutralized.
        #expect(PopulationWriter.fieldCell(.int(-5)) == "-5")
        #expect(PopulationWriter.fieldCell(.double(-1.5)) == "-1.5")
        #expect(PopulationWriter.fieldCell(.string("-5")) == "'-5")
        #expect(PopulationWriter.fieldCell(nil) == "")
        #expect(PopulationWriter.fieldCell(.string("=1+1")) == "'=1+1")
    }

    @Test("a population file pair: the CSV row neutralized, the JSON row as stored")
    func populationWriter() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("population-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let criterion = EvidenceMapping.Criterion(
            id: "CC6.2", title: "t", description: "", eventTypes: ["apitoken.created"], fields: ["owner", "count"], requireField: nil
        )
        let writer = try PopulationWriter(directory: directory, criterion: criterion)
        let owner = "=cmd|' /C calc'!A0"
        try writer.append(
            .init(seq: 7, time: "2026-01-01T00:00:00Z", type: "apitoken.created", actor: "@admin", integration: nil, data: ["owner": .string(owner), "count": -3]),
            hash: [UInt8](repeating: 0xAB, count: 32)
        )
        try writer.close()
        let csv = try String(contentsOf: writer.csvURL, encoding: .utf8)
        #expect(csv == "seq,entry_hash,time,type,actor,integration,owner,count\r\n7,\(String(repeating: "ab", count: 32)),2026-01-01T00:00:00Z,apitoken.created,'@admin,,'=cmd|' /C calc'!A0,-3\r\n", "\(csv)")
        let json = try JSONValue.parse(Data(contentsOf: writer.jsonURL))
        #expect(json.arrayValue?.first?.objectValue?["fields"]?.objectValue?["owner"] == .string(owner))
        #expect(json.arrayValue?.first?.objectValue?["actor"] == "@admin")
    }

    @Test("report verify of a crafted bundle (tar size -1, unsafe path) is a clear error, not a trap")
    func craftedEvidenceBundle() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("crafted-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        /// A header of `path` with `size` written verbatim into the size field, checksum fixed.
        func header(_ path: String, size: String) throws -> [UInt8] {
            var h = try Tar.fileHeader(path, size: 0)
            for i in 124..<136 { h[i] = 0 }
            for (i, b) in size.utf8.enumerated() { h[124 + i] = b }
            for i in 148..<156 { h[i] = 0x20 }
            let sum = String(h.reduce(0) { $0 + Int($1) }, radix: 8)
            for (i, b) in (String(repeating: "0", count: 6 - sum.count) + sum).utf8.enumerated() { h[148 + i] = b }
            h[154] = 0
            return h
        }
        let cases: [([UInt8], String)] = [
            (try header("manifest.json", size: "-1") + [UInt8](repeating: 0, count: 512) + Tar.end, "negative"),
            (try header("../manifest.json", size: "1") + [UInt8](repeating: 0x7B, count: 512) + Tar.end, "unsafe path"),
            (try header("manifest.json", size: "1000000000") + [UInt8](repeating: 0x7B, count: 512) + Tar.end, "limit"),
        ]
        for (tar, words) in cases {
            var compressed: [UInt8] = []
            try ZstdCompressor().compress(tar, end: true) { compressed += $0 }
            let file = directory.appendingPathComponent("crafted.tar.zst")
            try Data(compressed).write(to: file)
            do {
                _ = try EvidenceVerifier().verify(bundle: file.path, keys: [])
                Issue.record("a crafted bundle verified (\(words))")
            } catch let error as PortalError {
                #expect(error.code == .validationFailed && error.message.contains(words), "\(error.message)")
            }
        }
    }

    /// The cells of one CSV line (RFC 4180: quoted cells with doubled quotes), unquoted.
    static func cells(_ line: String) -> [String] {
        var cells: [String] = []
        var cell = ""
        var quoted = false
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { cell.append("\""); chars.removeFirst() } else { quoted = false }
                } else {
                    cell.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                cells.append(cell)
                cell = ""
            } else {
                cell.append(c)
            }
        }
        return cells + [cell]
    }
}
