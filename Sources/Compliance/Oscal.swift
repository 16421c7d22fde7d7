import Crypto
import Foundation
import Ledger
import PortalCore

/// OSCAL 1.1.2 documents of an evidence bundle: a catalog of the mapping's criteria, the
/// assessment plan that reviews them, and the assessment results with one finding per criterion and its
/// observation linking the population files (back-matter resources carrying their SHA-256). Every uuid is
/// derived from the bundle's identity and every time is the checkpoint's, so regenerating gives the same bytes.
enum OscalDocuments {
    static let version = "1.1.2"

    struct Population {
        var criterion: EvidenceMapping.Criterion
        var rows: Int
        var ledgerCount: Int
        var files: [(path: String, mediaType: String, sha256: String)]
    }

    /// A name-based UUID (RFC 9562 version 5: SHA-1 of a fixed namespace and the name).
    static func uuid(_ name: String) -> String {
        let namespace: [UInt8] = [0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8]
        var bytes = Array(Insecure.SHA1.hash(data: namespace + Array("portal-evidence:\(name)".utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0f) | 0x50
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        let hex = Hex.encode(bytes)
        let h = Array(hex)
        return "\(String(h[0..<8]))-\(String(h[8..<12]))-\(String(h[12..<16]))-\(String(h[16..<20]))-\(String(h[20..<32]))"
    }

    static func controlID(_ c: EvidenceMapping.Criterion) -> String { c.fileStem }

    static func metadata(_ title: String, at: String) -> JSONValue {
        ["title": .string(title), "last-modified": .string(at), "version": .string(EvidenceBundler.generator), "oscal-version": .string(version)]
    }

    /// (path, document) of the three documents.
    static func documents(
        identity: String, framework: String, organization: String, from: String, until: String, at: String, populations: [Population]
    ) -> [(String, JSONValue)] {
        let controls: [JSONValue] = populations.map { p in
            [
                "id": .string(controlID(p.criterion)), "title": .string("\(p.criterion.id) \(p.criterion.title)"),
                "parts": [[
                    "id": .string("\(controlID(p.criterion))_smt"), "name": "statement", "prose": .string(p.criterion.description.isEmpty ? p.criterion.title : p.criterion.description),
                ]],
            ]
        }
        let catalog: JSONValue = ["catalog": [
            "uuid": .string(uuid("\(identity)/catalog")), "metadata": metadata("\(framework) criteria as mapped by the portal", at: at), "controls": .array(controls),
        ]]
        let selection: JSONValue = ["control-selections": [["include-controls": .array(populations.map { ["control-id": .string(controlID($0.criterion))] })]]]
        let plan: JSONValue = ["assessment-plan": [
            "uuid": .string(uuid("\(identity)/plan")), "metadata": metadata("\(framework) evidence plan for \(organization)", at: at),
            "import-ssp": ["href": .string("urn:portal:ssp:\(organization)")],
            "reviewed-controls": [
                "description": .string("Populations cut from the organization's audit ledger for \(from) to \(until), one per criterion of catalog.json."),
                "control-selections": selection.objectValue!["control-selections"]!,
            ],
        ]]
        var resources: [JSONValue] = []
        var observations: [JSONValue] = []
        var findings: [JSONValue] = []
        for p in populations {
            let id = controlID(p.criterion)
            var evidence: [JSONValue] = []
            for file in p.files {
                let resource = uuid("\(identity)/resource/\(file.path)")
                resources.append([
                    "uuid": .string(resource), "title": .string(file.path),
                    "rlinks": [["href": .string(file.path), "media-type": .string(file.mediaType), "hashes": [["algorithm": "SHA-256", "value": .string(file.sha256)]]]],
                ])
                evidence.append(["href": .string("#\(resource)"), "description": .string("\(p.criterion.id) population (\(file.mediaType))")])
            }
            let observation = uuid("\(identity)/observation/\(id)")
            let reconciled = p.rows == p.ledgerCount
            observations.append([
                "uuid": .string(observation), "title": .string("\(p.criterion.id) population"),
                "description": .string("\(p.rows) ledger entries of types \(p.criterion.eventTypes.joined(separator: ", ")) in the period; the ledger counts \(p.ledgerCount)."),
                "methods": ["EXAMINE"], "collected": .string(at), "relevant-evidence": .array(evidence),
            ])
            findings.append([
                "uuid": .string(uuid("\(identity)/finding/\(id)")), "title": .string("\(p.criterion.id) \(p.criterion.title)"),
                "description": .string(reconciled ? "The population is complete: it reconciles with the ledger for the period." : "The population does not reconcile with the ledger for the period."),
                "target": [
                    "type": "objective-id", "target-id": .string("\(id)_smt"),
                    "status": ["state": .string(reconciled ? "satisfied" : "not-satisfied")],
                ],
                "related-observations": [["observation-uuid": .string(observation)]],
            ])
        }
        let results: JSONValue = ["assessment-results": [
            "uuid": .string(uuid("\(identity)/results")), "metadata": metadata("\(framework) evidence for \(organization)", at: at),
            "import-ap": ["href": "assessment-plan.json"],
            "results": [[
                "uuid": .string(uuid("\(identity)/result")), "title": .string("\(framework) populations, \(from) to \(until)"),
                "description": .string("Populations cut from the audit ledger below the checkpoint cited in manifest.json."),
                "start": .string(from), "end": .string(until), "reviewed-controls": selection,
                "observations": .array(observations), "findings": .array(findings),
            ]],
            "back-matter": ["resources": .array(resources)],
        ]]
        return [("oscal/catalog.json", catalog), ("oscal/assessment-plan.json", plan), ("oscal/assessment-results.json", results)]
    }
}
