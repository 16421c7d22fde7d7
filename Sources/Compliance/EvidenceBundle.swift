import Crypto
package import Foundation
import Integrations
package import Ledger
import Mustache
package import PortalCore
package import Storage

/// A framework's evidence mapping (`reports/mappings/<kind>.yaml`): criteria, each the ledger event types
/// that form its population and the entry fields that become columns.
package struct EvidenceMapping: Sendable, Equatable {
    package struct Criterion: Sendable, Equatable {
        package var id: String
        package var title: String
        package var description: String
        package var eventTypes: [String]
        package var fields: [String]
        /// Only entries whose `data` has this field (non-empty) count.
        package var requireField: String?

        /// The file-name form of the id (`CC6.1` -> `cc6.1`, `Art15-22` -> `art15-22`).
        package var fileStem: String { id.lowercased().replacingOccurrences(of: "(", with: "-").replacingOccurrences(of: ")", with: "") }
    }

    package var framework: String
    package var criteria: [Criterion]

    package static func load(kind: String, directory: String) throws(PortalError) -> EvidenceMapping {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("\(kind).yaml").path
        guard let data = FileManager.default.contents(atPath: path) else { throw PortalError(.configuration, "no mapping at \(path)") }
        let root = try YAMLDocument.parse(String(decoding: data, as: UTF8.self), source: path)
        guard let top = root.objectValue, top["version"] == .int(1), let framework = top["framework"]?.stringValue, let list = top["criteria"]?.arrayValue else {
            throw PortalError(.configuration, "\(path) must have version: 1, a framework and a criteria list")
        }
        var criteria: [Criterion] = []
        for (i, item) in list.enumerated() {
            guard let m = item.objectValue, let id = m["id"]?.stringValue, let title = m["title"]?.stringValue,
                  let types = m["eventTypes"]?.arrayValue?.compactMap(\.stringValue), !types.isEmpty
            else { throw PortalError(.configuration, "\(path): criteria[\(i)] needs an id, a title and eventTypes") }
            // A misspelt type would silently make an empty population, reported as "nothing happened".
            if let unknown = types.first(where: { !AuditEventType.isKnown($0) }) {
                throw PortalError(.configuration, "\(path): criterion \(id) names \(unknown), which is not a ledger event type (docs/design.md section 4.1)")
            }
            criteria.append(Criterion(
                id: id, title: title, description: m["description"]?.stringValue ?? "", eventTypes: types,
                fields: m["fields"]?.arrayValue?.compactMap(\.stringValue) ?? [], requireField: m["requireField"]?.stringValue
            ))
        }
        return EvidenceMapping(framework: framework, criteria: criteria)
    }
}

/// Builds SOC 2 and GDPR evidence bundles (DESIGN 4.5): populations cut from the ledger below one
/// checkpoint's size, reconciled with the ledger's counts, with a manifest, an HTML summary, `SHA256SUMS`
/// and its signature by the organization's ledger keys, in a `.tar.zst` whose every file but the signature
/// is byte-identical when regenerated. Rows are streamed to files, so memory does not grow with the period.
package struct EvidenceBundler: Sendable {
    package static let generator = "portal evidence 1"
    let database: Database
    let checkpointer: LedgerCheckpointer
    let register: ProcessingRegister
    /// Service level attainment for the period (organization, start, end), from monitoring: SOC 2 and
    /// ISO 27001 bundles carry it as `service-levels.json`.
    let serviceLevels: ServiceLevelSource?

    /// Reads an organization's service level attainment over a period.
    package typealias ServiceLevelSource = @Sendable (UUID, Date, Date) async throws -> JSONValue

    package init(database: Database, checkpointer: LedgerCheckpointer, serviceLevels: ServiceLevelSource? = nil) {
        self.database = database
        self.checkpointer = checkpointer
        self.serviceLevels = serviceLevels
        register = ProcessingRegister(database: database)
    }

    /// What a build produced.
    package struct Result: Sendable {
        package var manifestDigest: String
        package var checkpointSize: Int64
        package var rows: [String: Int]
        package var files: [String]
    }

    /// Builds the bundle of `kind` (`soc2` or `gdpr`) for the period from `checkpoint`, writing the
    /// compressed archive through `write`. Three steps: the scan of the ledger into populations
    /// (``scan(_:organizationID:below:period:into:progress:)``), the documents about them (criteria,
    /// inventory or register, OSCAL, consistency proofs, manifest, summary: pure but for the register and
    /// proofs read from storage), and the signed archive (``sign(_:slug:in:)``, ``archive(_:write:)``).
    package func build(
        kind: String, organizationID: UUID, slug: String, start: Date, end: Date, checkpoint: LedgerCheckpointRow,
        mappings: String, templates: String, progress: (Int64) -> Void = { _ in }, write: ([UInt8]) throws -> Void
    ) async throws -> Result {
        let mapping = try EvidenceMapping.load(kind: kind, directory: mappings)
        let scratch = Scratch(url: FileManager.default.temporaryDirectory.appendingPathComponent("portal-evidence-\(UUID().uuidString)"))
        try FileManager.default.createDirectory(at: scratch.url.appendingPathComponent("populations"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: scratch.url.appendingPathComponent("oscal"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch.url) }
        let period = Period(start: start, end: end)

        // 1. The scan: the populations and the ledger's own counts.
        let populations = try await scan(mapping, organizationID: organizationID, below: checkpoint.size, period: period, into: scratch.url, progress: progress)
        var files = populations.files

        // 2. The documents.
        let criteria = Self.criteriaDocuments(mapping, populations)
        let registerJSON = try await register.register(organizationID: organizationID, slug: slug, start: start, end: end, atSize: checkpoint.size)
        let inventory = Self.inventory(kind: kind, register: registerJSON)
        files.append(try scratch.write(inventory.document, to: inventory.path))
        let identity = "\(slug)/\(kind)/\(period.from)/\(period.until)/\(checkpoint.size)"
        for (path, document) in OscalDocuments.documents(
            identity: identity, framework: mapping.framework, organization: slug, from: period.from, until: period.until,
            at: Timestamp.rfc3339(checkpoint.createdAt), populations: try populations.oscal(mapping)
        ) {
            files.append(try scratch.write(document, to: path))
        }
        var exceptions = inventory.exceptions + Self.reconciliationExceptions(criteria)
        if let approvals = populations.approvals {
            files.append(try scratch.write(approvals.document, to: "approvals.json"))
            exceptions += approvals.exceptions
        }
        if kind != "gdpr", let serviceLevels {
            let levels = try await serviceLevels(organizationID, start, end)
            files.append(try scratch.write(levels, to: "service-levels.json"))
            for item in levels.objectValue?["integrations"]?.arrayValue ?? [] {
                for objective in item.objectValue?["objectives"]?.arrayValue ?? [] where objective.objectValue?["met"] == .bool(false) {
                    exceptions.append([
                        "flag": "slo_missed", "criterion": "A1.2", "integration": item.objectValue?["integrationId"] ?? .null,
                        "indicator": objective.objectValue?["indicator"] ?? .null, "attainment": objective.objectValue?["attainment"] ?? .null,
                        "objective": objective.objectValue?["objective"] ?? .null,
                    ])
                }
            }
        }
        files.append(try scratch.write(try await consistency(organizationID, checkpoint: checkpoint), to: "consistency.json"))
        let keys = try await checkpointer.verifierKeys(slug: slug)
        let manifest = Self.manifest(
            kind: kind, framework: mapping.framework, slug: slug, period: period, checkpoint: checkpoint, keys: keys.map(\.text), criteria: criteria, exceptions: exceptions
        )
        let manifestFile = try scratch.write(manifest, to: "manifest.json")
        files.insert(manifestFile, at: 0)
        files.append(try scratch.write(text: try Self.summary(manifest: manifest, templates: templates), to: "summary.html"))

        // 3. The signed archive.
        files += try await sign(files, slug: slug, in: scratch)
        try Self.archive(files, write: write)
        return Result(
            manifestDigest: try Self.sha256(manifestFile.url), checkpointSize: checkpoint.size, rows: populations.rows, files: files.map(\.path).sorted()
        )
    }

    /// The period as entries print their times: `from` inclusive, `until` exclusive.
    struct Period {
        var start: Date
        var end: Date
        var from: String { Timestamp.rfc3339(start) }
        var until: String { Timestamp.rfc3339(end) }
        /// The calendar days covered, for people: the last one is the day before `end`.
        var inclusiveDates: String { "\(from.prefix(10)) to \(Timestamp.rfc3339(end.addingTimeInterval(-86_400)).prefix(10))" }
    }

    /// One file of the bundle: its path in the archive and where it is while the bundle is built.
    struct File {
        var path: String
        var url: URL
    }

    /// The folder a bundle is built in.
    struct Scratch {
        var url: URL

        /// Writes `document` as sorted JSON and a newline (byte-identical when regenerated).
        func write(_ document: JSONValue, to path: String) throws -> File {
            try write(text: document.sortedText + "\n", to: path)
        }

        func write(text: String, to path: String) throws -> File {
            let file = File(path: path, url: url.appendingPathComponent(path))
            try Data(text.utf8).write(to: file.url)
            return file
        }
    }

    /// What the scan found: each criterion's population (written to files) and the ledger's count of it.
    struct Populations {
        var writers: [String: PopulationWriter]
        var ledgerCounts: [String: Int]
        var order: [EvidenceMapping.Criterion]
        /// CC8.1's approval chains, when a criterion takes approvals.
        var approvals: ApprovalChains?

        var rows: [String: Int] { writers.mapValues(\.rows) }

        var files: [File] {
            order.flatMap { c -> [File] in
                guard let writer = writers[c.id] else { return [] }
                return [File(path: "populations/\(c.fileStem).csv", url: writer.csvURL), File(path: "populations/\(c.fileStem).json", url: writer.jsonURL)]
            }
        }

        /// The OSCAL view: each population linked by its files' hashes.
        func oscal(_ mapping: EvidenceMapping) throws -> [OscalDocuments.Population] {
            try mapping.criteria.compactMap { criterion in
                guard let writer = writers[criterion.id] else { return nil }
                return .init(
                    criterion: criterion, rows: writer.rows, ledgerCount: ledgerCounts[criterion.id] ?? 0,
                    files: [
                        ("populations/\(criterion.fileStem).csv", "text/csv", try EvidenceBundler.sha256(writer.csvURL)),
                        ("populations/\(criterion.fileStem).json", "application/json", try EvidenceBundler.sha256(writer.jsonURL)),
                    ]
                )
            }
        }
    }

    /// The criteria an entry belongs to: those that take its type and, when they require a field, find it.
    static func criteria(of entry: EntryFields, in mapping: EvidenceMapping) -> [EvidenceMapping.Criterion] {
        mapping.criteria.filter { criterion in
            criterion.eventTypes.contains(entry.type) && (criterion.requireField.map { present(entry.data, $0) } ?? true)
        }
    }

    /// One pass over the ledger below the checkpoint: each entry of the period goes to the populations of the
    /// criteria that take it; the ledger's own counts by criterion are kept beside, for reconciliation.
    func scan(
        _ mapping: EvidenceMapping, organizationID: UUID, below size: Int64, period: Period, into scratch: URL, progress: (Int64) -> Void
    ) async throws -> Populations {
        var writers: [String: PopulationWriter] = [:]
        for c in mapping.criteria { writers[c.id] = try PopulationWriter(directory: scratch.appendingPathComponent("populations"), criterion: c) }
        let from = period.from, until = period.until
        var ledgerCounts: [String: Int] = [:]
        var approvals = mapping.criteria.contains { $0.eventTypes.contains(AuditEventType.integrationApproved.rawValue) } ? ApprovalChains() : nil
        for try await page in LedgerReader(database: database, cachedTiles: 0).pages(organizationID, below: size) {
            for row in page {
                // The fields only: the canonical form is the verifier's business (and re-encoding each entry
                // to check it doubled the cost of a bundle).
                let entry = try Self.fields(row.bytes)
                guard entry.time >= from, entry.time < until else { continue }
                if approvals != nil, ApprovalChains.reads(entry.type) {
                    approvals?.add(seq: entry.seq, time: entry.time, type: entry.type, integration: entry.integration, data: entry.data)
                }
                for criterion in Self.criteria(of: entry, in: mapping) {
                    ledgerCounts[criterion.id, default: 0] += 1
                    try writers[criterion.id]?.append(entry, hash: row.hash)
                }
            }
            progress(min((page.last?.seq ?? 0) + 1, size))
        }
        for writer in writers.values { try writer.close() }
        return Populations(writers: writers, ledgerCounts: ledgerCounts, order: mapping.criteria, approvals: approvals)
    }

    /// The manifest's `criteria`: each criterion's query, population and whether it reconciles with the
    /// ledger's count.
    static func criteriaDocuments(_ mapping: EvidenceMapping, _ populations: Populations) -> [JSONValue] {
        mapping.criteria.map { criterion in
            let rows = populations.writers[criterion.id]?.rows ?? 0
            let ledger = populations.ledgerCounts[criterion.id] ?? 0
            return [
                "id": .string(criterion.id), "title": .string(criterion.title), "description": .string(criterion.description),
                "query": [
                    "source": "ledger entries of the organization with seq below the checkpoint's size and time in the period",
                    "eventTypes": .array(criterion.eventTypes.map(JSONValue.string)), "fields": .array(criterion.fields.map(JSONValue.string)),
                    "requireField": criterion.requireField.map(JSONValue.string) ?? .null,
                ],
                "population": ["rows": .int(Int64(rows)), "csv": .string("populations/\(criterion.fileStem).csv"), "json": .string("populations/\(criterion.fileStem).json")],
                "ledgerCount": .int(Int64(ledger)), "reconciled": .bool(ledger == rows),
            ]
        }
    }

    /// A criterion whose population differs from the ledger's count is an exception of the bundle.
    static func reconciliationExceptions(_ criteria: [JSONValue]) -> [JSONValue] {
        criteria.filter { $0.objectValue?["reconciled"] == false }.map { ["criterion": $0.objectValue?["id"] ?? .null, "flag": "population_not_reconciled"] }
    }

    /// GDPR: the record of processing as it is. SOC 2 (CC9.2): the vendor inventory (integrations live in
    /// the period) against the destinations the ledger saw; a destination that is no integration's base URL
    /// host is an exception.
    static func inventory(kind: String, register: JSONValue) -> (path: String, document: JSONValue, exceptions: [JSONValue]) {
        let m = register.objectValue ?? [:]
        if kind == "gdpr" { return ("processing-register.json", register, m["exceptions"]?.arrayValue ?? []) }
        let records = (m["records"]?.arrayValue ?? []).compactMap(\.objectValue).map { r -> JSONValue in
            .object([
                "integrationId": r["integrationId"] ?? .null, "name": r["name"] ?? .null, "type": r["type"] ?? .null,
                "baseUrlHost": r["baseUrlHost"] ?? .null, "deleted": r["deleted"] ?? .null,
                "calls": r["observed"]?.objectValue?["calls"] ?? 0, "destinationHosts": r["observed"]?.objectValue?["destinationHosts"] ?? [],
                "securityReview": r["review"] ?? .null,
            ])
        }
        let exceptions = (m["exceptions"]?.arrayValue ?? []).filter { $0.objectValue?["flag"] == "undeclared_destination_host" }
        return ("vendor-inventory.json", ["period": m["period"] ?? .null, "vendors": .array(records), "exceptions": .array(exceptions)], exceptions)
    }

    /// Consistency proofs from every kept checkpoint below the cited one, so an auditor holding any of them
    /// checks offline (`report verify --since`) that the cited tree extends it; the cited one is kept.
    func consistency(_ organizationID: UUID, checkpoint: LedgerCheckpointRow) async throws -> JSONValue {
        let kept = try await database.read { db in try await LedgerStore(db).checkpoints(organizationID) }
            .filter { $0.size < checkpoint.size && $0.keepReason != nil && $0.size > 0 }
            .sorted { $0.size < $1.size }
        var proofs: [JSONValue] = []
        let reader = LedgerReader(database: database)
        for old in kept {
            let proof = try await reader.consistencyProof(organizationID, old: old.size, new: checkpoint.size)
            proofs.append(["from": .int(old.size), "root": .string(Data(old.root).base64EncodedString()), "proof": .array(proof.map { .string(Data($0).base64EncodedString()) })])
        }
        try await database.write { db in try await LedgerStore(db).keepCheckpoint(organizationID, size: checkpoint.size, reason: "cited") }
        return ["size": .int(checkpoint.size), "root": .string(Data(checkpoint.root).base64EncodedString()), "proofs": .array(proofs)]
    }

    /// The manifest (DESIGN 4.5): what the bundle is, the checkpoint it cites, the keys that sign it, the
    /// criteria and the exceptions.
    static func manifest(
        kind: String, framework: String, slug: String, period: Period, checkpoint: LedgerCheckpointRow, keys: [String], criteria: [JSONValue], exceptions: [JSONValue]
    ) -> JSONValue {
        [
            "kind": .string(kind), "framework": .string(framework), "organization": .string(slug),
            "period": ["from": .string(period.from), "to": .string(period.until), "inclusiveDates": .string(period.inclusiveDates)],
            "generator": .string(generator),
            "checkpoint": ["size": .int(checkpoint.size), "root": .string(Data(checkpoint.root).base64EncodedString()), "note": .string(checkpoint.note)],
            "signingKeys": .array(keys.map(JSONValue.string)),
            "criteria": .array(criteria), "exceptions": .array(exceptions),
        ]
    }

    /// `SHA256SUMS` over every file, in path order, as `sha256sum` prints it.
    static func sums(_ files: [File]) throws -> String {
        try files.sorted { $0.path < $1.path }.map { "\(try sha256($0.url))  \($0.path)\n" }.joined()
    }

    /// `SHA256SUMS` and its signature, a signed note by the ledger's keys.
    func sign(_ files: [File], slug: String, in scratch: Scratch) async throws -> [File] {
        let sums = try Self.sums(files)
        let note = try SignedNote.sign(sums, with: try await checkpointer.signingKeys().signers(name: checkpointer.origin(slug: slug)))
        return [try scratch.write(text: sums, to: "SHA256SUMS"), try scratch.write(text: String(note.dropFirst(sums.count + 1)), to: "SHA256SUMS.sig")]
    }

    /// The archive: fixed metadata, files in path order, streamed through zstd (a population of a long
    /// period is far larger than what should be held in memory).
    static func archive(_ files: [File], write: ([UInt8]) throws -> Void) throws {
        let compressor = try ZstdCompressor()
        try compressor.compress(try Tar.directory("oscal"), into: write)
        try compressor.compress(try Tar.directory("populations"), into: write)
        for file in files.sorted(by: { $0.path < $1.path }) {
            let size = (try FileManager.default.attributesOfItem(atPath: file.url.path)[.size] as? NSNumber)?.intValue ?? 0
            try compressor.compress(try Tar.fileHeader(file.path, size: size), into: write)
            try chunks(of: file.url) { chunk in try compressor.compress(chunk, into: write) }
            try compressor.compress(Tar.padding(size), into: write)
        }
        try compressor.compress(Tar.end, end: true, into: write)
    }

    /// The members of a stored entry a population needs.
    struct EntryFields {
        var seq: Int64
        var time: String
        var type: String
        var actor: String
        var integration: String?
        var data: JSONValue
    }

    static func fields(_ bytes: [UInt8]) throws -> EntryFields {
        guard case .object(let m) = try JSONValue.parse(Data(bytes)), case .int(let seq)? = m["seq"], let time = m["time"]?.stringValue,
              let type = m["type"]?.stringValue, let actor = m["actor"]?.stringValue, let data = m["data"]
        else { throw PortalError(.validationFailed, "a stored ledger entry is not a version 1 entry") }
        return EntryFields(seq: seq, time: time, type: type, actor: actor, integration: m["integration"]?.stringValue, data: data)
    }

    static func present(_ data: JSONValue, _ field: String) -> Bool {
        switch PopulationWriter.value(data, field) {
        case nil, .null?: false
        case .array(let items)?: !items.isEmpty
        case .string(let s)?: !s.isEmpty
        default: true
        }
    }

    static func sha256(_ url: URL) throws -> String {
        var hasher = SHA256()
        try chunks(of: url) { hasher.update(data: $0) }
        return Hex.encode(hasher.finalize())
    }

    /// Reads a file 1 MiB at a time.
    static func chunks(of url: URL, _ body: ([UInt8]) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { try body(Array(data)) }
    }

    /// The HTML summary from `templates/summary.html.mustache`: period, scope, counts, exceptions, a bar
    /// chart of the populations as inline SVG, and the signing keys. Printable; no timestamp of its own.
    static func summary(manifest: JSONValue, templates: String) throws -> String {
        let path = URL(fileURLWithPath: templates).appendingPathComponent("summary.html.mustache").path
        guard let text = FileManager.default.contents(atPath: path) else { throw PortalError(.configuration, "no summary template at \(path)") }
        let template = try MustacheTemplate(string: String(decoding: text, as: UTF8.self))
        let m = manifest.objectValue ?? [:]
        let criteria = (m["criteria"]?.arrayValue ?? []).compactMap(\.objectValue)
        let counts = criteria.map { c -> Int in if case .int(let n)? = c["population"]?.objectValue?["rows"] { Int(n) } else { 0 } }
        let most = max(1, counts.max() ?? 1)
        var bars = ""
        for (i, (c, n)) in zip(criteria, counts).enumerated() {
            let width = Int((Double(n) / Double(most) * 360).rounded())
            let y = i * 26
            bars += "<text x=\"0\" y=\"\(y + 16)\" font-size=\"12\">\(Self.escape(c["id"]?.stringValue ?? ""))</text>"
            bars += "<rect x=\"90\" y=\"\(y + 4)\" width=\"\(width)\" height=\"16\" fill=\"#3b6ea5\"/>"
            bars += "<text x=\"\(96 + width)\" y=\"\(y + 16)\" font-size=\"12\">\(n)</text>"
        }
        let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"\(max(26, criteria.count * 26))\" role=\"img\" aria-label=\"rows per criterion\">\(bars)</svg>"
        let checkpoint = m["checkpoint"]?.objectValue ?? [:]
        let context: [String: Any] = [
            "framework": m["framework"]?.stringValue ?? "", "organization": m["organization"]?.stringValue ?? "",
            "from": m["period"]?.objectValue?["from"]?.stringValue ?? "", "to": m["period"]?.objectValue?["to"]?.stringValue ?? "",
            "inclusiveDates": m["period"]?.objectValue?["inclusiveDates"]?.stringValue ?? "",
            "checkpointSize": checkpoint["size"].map { "\($0.sortedText)" } ?? "", "checkpointRoot": checkpoint["root"]?.stringValue ?? "",
            "generator": m["generator"]?.stringValue ?? "",
            "criteria": zip(criteria, counts).map { c, n -> [String: Any] in
                [
                    "id": c["id"]?.stringValue ?? "", "title": c["title"]?.stringValue ?? "", "description": c["description"]?.stringValue ?? "",
                    "rows": n, "ledgerCount": c["ledgerCount"].map { $0.sortedText } ?? "", "reconciled": c["reconciled"] == .bool(true),
                    "csv": c["population"]?.objectValue?["csv"]?.stringValue ?? "",
                ]
            },
            "exceptions": (m["exceptions"]?.arrayValue ?? []).map { $0.sortedText },
            "hasExceptions": !(m["exceptions"]?.arrayValue ?? []).isEmpty,
            "keys": (m["signingKeys"]?.arrayValue ?? []).compactMap(\.stringValue),
            "chart": svg,
        ]
        return template.render(context)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

/// Streams one criterion's rows to its CSV (RFC 4180, CRLF, cells neutralized for spreadsheets) and JSON
/// (an array, one row per line, values as they are) files.
final class PopulationWriter {
    let csvURL: URL
    let jsonURL: URL
    let fields: [String]
    private let csv: FileHandle
    private let json: FileHandle
    private(set) var rows = 0
    private var buffer = (csv: [UInt8](), json: [UInt8]())

    init(directory: URL, criterion: EvidenceMapping.Criterion) throws {
        csvURL = directory.appendingPathComponent("\(criterion.fileStem).csv")
        jsonURL = directory.appendingPathComponent("\(criterion.fileStem).json")
        fields = criterion.fields
        _ = FileManager.default.createFile(atPath: csvURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: jsonURL.path, contents: nil)
        csv = try FileHandle(forWritingTo: csvURL)
        json = try FileHandle(forWritingTo: jsonURL)
        let header = ["seq", "entry_hash", "time", "type", "actor", "integration"] + fields
        buffer.csv += Array((header.map(Self.cell).joined(separator: ",") + "\r\n").utf8)
        buffer.json += Array("[\n".utf8)
    }

    /// The value at a dot path of `data`.
    static func value(_ data: JSONValue, _ path: String) -> JSONValue? {
        var current: JSONValue? = data
        for part in path.split(separator: ".") { current = current?.objectValue?[String(part)] }
        return current
    }

    static func text(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: ""
        case .string(let s)?: s
        case let other?: other.sortedText
        }
    }

    /// One CSV cell of text: ``neutralized(_:)``, then ``quoted(_:)``.
    static func cell(_ s: String) -> String { quoted(neutralized(s)) }

    /// The CSV cell of a field's value: a number as it is (`-5` is a number to a spreadsheet, not a
    /// formula), anything else as text through ``cell(_:)``.
    static func fieldCell(_ value: JSONValue?) -> String {
        switch value {
        case .int?, .double?: text(value)
        default: cell(text(value))
        }
    }

    /// `s` with a leading `'` when a spreadsheet would read it as a formula: it starts with `=`, `+`, `-`,
    /// `@`, tab or carriage return (OWASP's CSV injection rule). The JSON population keeps the value as is.
    static func neutralized(_ s: String) -> String {
        guard let first = s.utf8.first, [0x3D, 0x2B, 0x2D, 0x40, 0x09, 0x0D].contains(first) else { return s }
        return "'" + s
    }

    /// `s` as an RFC 4180 field: in double quotes (inner ones doubled) when it holds a comma, quote, CR or LF.
    static func quoted(_ s: String) -> String {
        // Scanning the UTF-8 bytes: iterating Characters was a visible cost on long populations.
        s.utf8.contains(where: { $0 == 0x2c || $0 == 0x22 || $0 == 0x0d || $0 == 0x0a }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    func append(_ entry: EvidenceBundler.EntryFields, hash: [UInt8]) throws {
        let hex = Hex.encode(hash)
        let base = [String(entry.seq), hex, entry.time, entry.type, entry.actor, entry.integration ?? ""]
        let values = fields.map { Self.fieldCell(Self.value(entry.data, $0)) }
        buffer.csv += Array(((base.map(Self.cell) + values).joined(separator: ",") + "\r\n").utf8)
        var object: [String: JSONValue] = [
            "seq": .int(entry.seq), "entry_hash": .string(hex), "time": .string(entry.time), "type": .string(entry.type), "actor": .string(entry.actor),
            "integration": entry.integration.map(JSONValue.string) ?? .null,
        ]
        var fieldValues: [String: JSONValue] = [:]
        for field in fields { fieldValues[field] = Self.value(entry.data, field) ?? .null }
        object["fields"] = .object(fieldValues)
        buffer.json += Array(((rows == 0 ? "" : ",\n") + JSONValue.object(object).sortedText).utf8)
        rows += 1
        if buffer.csv.count + buffer.json.count > 1 << 20 { try flush() }
    }

    private func flush() throws {
        try csv.write(contentsOf: buffer.csv)
        try json.write(contentsOf: buffer.json)
        buffer = ([], [])
    }

    func close() throws {
        buffer.json += Array(((rows == 0 ? "" : "\n") + "]\n").utf8)
        try flush()
        try csv.close()
        try json.close()
    }
}

/// Checks an evidence bundle offline (`portal report verify`): the signature of `SHA256SUMS` by every given
/// verifier key, every file's SHA-256, no file missing or unlisted, and the cited checkpoint's signatures.
/// Returns the problems found, each naming its file (empty when the bundle verifies).
package struct EvidenceVerifier: Sendable {
    package init() {}

    package struct Report: Sendable {
        package var problems: [String]
        package var manifest: JSONValue?
        package var files: Int
        package var passed: Bool { problems.isEmpty }
    }

    /// `since`: a checkpoint note the auditor holds (signed by `keys`), which the cited checkpoint must extend.
    package func verify(bundle: String, keys: [SignedNote.VerifierKey], since: String? = nil) throws -> Report {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("portal-evidence-verify-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try LedgerBundleVerifier().unpack(bundle: bundle, into: scratch, limit: Self.memberLimit)
        var report = try verify(folder: root, keys: keys)
        if let since, report.problems.isEmpty { report.problems += Self.consistency(since: since, folder: root, keys: keys) }
        return report
    }

    /// The largest member `report verify` unpacks (streamed to disk): a population 64 GiB (a long period's
    /// rows), any other file 64 MiB (the verifier reads them whole; the real ones are far smaller).
    static func memberLimit(_ path: String) -> Int {
        path.hasPrefix("populations/") ? 1 << 36 : Tar.defaultMemberLimit
    }

    /// The cited checkpoint (size, root) from a manifest.
    static func cited(_ manifest: JSONValue?) -> (size: Int64, root: Hash)? {
        guard let c = manifest?.objectValue?["checkpoint"]?.objectValue, case .int(let size)? = c["size"],
              let root = c["root"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) else { return nil }
        return (size, Array(root))
    }

    /// Whether the bundle's cited checkpoint extends the auditor's (`since`), by the bundle's proofs.
    static func consistency(since note: String, folder: URL, keys: [SignedNote.VerifierKey]) -> [String] {
        let held: Checkpoint
        do {
            held = try Checkpoint(text: try SignedNote.verify(note, keys: keys))
        } catch {
            return ["--since: the held checkpoint does not verify with the given keys: \(error.message)"]
        }
        let manifest = FileManager.default.contents(atPath: folder.appendingPathComponent("manifest.json").path).flatMap { try? JSONValue.parse($0) }
        guard let cited = cited(manifest) else { return ["manifest.json: no checkpoint cited"] }
        if held.size == cited.size { return held.root == cited.root ? [] : ["--since: the held checkpoint has the same size but another root: the ledger was rewritten"] }
        if held.size > cited.size { return ["--since: the held checkpoint (size \(held.size)) is newer than the bundle's (\(cited.size)); check with --database"] }
        guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent("consistency.json").path), let json = try? JSONValue.parse(data),
              let entry = json.objectValue?["proofs"]?.arrayValue?.first(where: { $0.objectValue?["from"] == .int(held.size) })?.objectValue
        else { return ["consistency.json: no proof from size \(held.size) (only kept checkpoints have one); check with --database"] }
        let proof = (entry["proof"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { Data(base64Encoded: $0) }.map(Array.init) }
        guard Merkle.verifyConsistency(size1: held.size, size2: cited.size, root1: held.root, root2: cited.root, proof: proof) else {
            return ["consistency.json: the cited checkpoint (size \(cited.size)) does not extend the held one (size \(held.size)): the ledger was rewritten"]
        }
        return []
    }

    /// Whether the live ledger (of the manifest's organization in `database`) extends the bundle's cited
    /// checkpoint: a consistency proof from it to the current head, checked here.
    package static func consistency(manifest: JSONValue?, database: Database) async throws -> [String] {
        guard let cited = cited(manifest), let slug = manifest?.objectValue?["organization"]?.stringValue else { return ["manifest.json: no checkpoint cited"] }
        guard let org = try await database.read({ db in try await OrganizationStore(db).find(slug: slug) }) else { return ["--database: no organization '\(slug)'"] }
        let reader = LedgerReader(database: database)
        guard let head = try await reader.head(org.id) else { return ["--database: the ledger of '\(slug)' is empty"] }
        if head.size < cited.size { return ["--database: the live ledger (size \(head.size)) is shorter than the cited checkpoint (\(cited.size)): entries were removed"] }
        let proof = try await reader.consistencyProof(org.id, old: cited.size, new: head.size)
        guard Merkle.verifyConsistency(size1: cited.size, size2: head.size, root1: cited.root, root2: head.root, proof: proof) else {
            return ["--database: the live ledger does not extend the cited checkpoint: the ledger was rewritten"]
        }
        return []
    }

    package func verify(folder root: URL, keys: [SignedNote.VerifierKey]) throws -> Report {
        var problems: [String] = []
        guard let sums = try? String(contentsOf: root.appendingPathComponent("SHA256SUMS"), encoding: .utf8) else {
            return Report(problems: ["SHA256SUMS: missing"], manifest: nil, files: 0)
        }
        if keys.isEmpty { problems.append("no verifier key given (--vkey)") }
        if let signature = try? String(contentsOf: root.appendingPathComponent("SHA256SUMS.sig"), encoding: .utf8) {
            do {
                _ = try SignedNote.verify(sums + "\n" + signature, keys: keys)
            } catch {
                problems.append("SHA256SUMS.sig: \(error.message)")
            }
        } else {
            problems.append("SHA256SUMS.sig: missing")
        }
        var listed = Set<String>()
        for line in sums.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[1].hasPrefix(" ") else {
                problems.append("SHA256SUMS: malformed line '\(line.prefix(80))'")
                continue
            }
            let path = String(parts[1].dropFirst())
            listed.insert(path)
            let url = root.appendingPathComponent(path)
            guard FileManager.default.fileExists(atPath: url.path), let digest = try? EvidenceBundler.sha256(url) else {
                problems.append("\(path): missing")
                continue
            }
            if digest != parts[0] { problems.append("\(path): its SHA-256 does not match SHA256SUMS (the file was changed)") }
        }
        let present = Set(Self.files(under: root)).subtracting(["SHA256SUMS", "SHA256SUMS.sig"])
        for extra in present.subtracting(listed).sorted() { problems.append("\(extra): not listed in SHA256SUMS") }
        let manifest = FileManager.default.contents(atPath: root.appendingPathComponent("manifest.json").path).flatMap { try? JSONValue.parse($0) }
        if let note = manifest?.objectValue?["checkpoint"]?.objectValue?["note"]?.stringValue {
            do {
                _ = try SignedNote.verify(note, keys: keys)
            } catch {
                problems.append("manifest.json: the cited checkpoint does not verify: \(error.message)")
            }
        } else {
            problems.append("manifest.json: no checkpoint cited")
        }
        return Report(problems: problems, manifest: manifest, files: listed.count)
    }

    static func files(under root: URL) -> [String] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var out: [String] = []
        let base = root.standardizedFileURL.path + "/"
        for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            out.append(String(url.standardizedFileURL.path.dropFirst(base.count)))
        }
        return out
    }
}
