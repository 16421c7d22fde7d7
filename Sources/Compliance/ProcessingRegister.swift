package import Foundation
import Ledger
package import PortalCore
package import Storage

/// The GDPR Art. 30 record of processing for a period: what each integration declares
/// (``ProcessingRecord`` metadata) beside what the ledger shows it actually received (calls, destination
/// hosts, calls that named data subjects), with undeclared recipients, hosts other than the declared base
/// URL, and transfers outside the EEA without a mechanism flagged. The recipients by role (Art. 28) and the
/// transfer register (Art. 44-49) are views of the same rows.
package struct ProcessingRegister: Sendable {
    let database: Database

    package init(database: Database) { self.database = database }

    /// EEA member states (ISO 3166-1 alpha-2): transfers elsewhere need a mechanism.
    static let eea: Set<String> = [
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK",
        "SI", "ES", "SE", "IS", "LI", "NO",
    ]

    /// Inclusive UTC dates (DESIGN 4.5): `from` 2026-07-01 and `to` 2026-09-30 cover [07-01T00:00Z, 10-01T00:00Z).
    package static func period(from: String, to: String) throws(PortalError) -> (start: Date, end: Date) {
        func day(_ text: String, _ pointer: String) throws(PortalError) -> Date {
            // A real calendar day: 2026-02-30 does not silently become March 2.
            guard text.range(of: #"^\d{4}-\d{2}-\d{2}$"#, options: .regularExpression) != nil, let date = Timestamp.parse(text + "T00:00:00Z"),
                  Timestamp.rfc3339(date).hasPrefix(text)
            else {
                throw PortalError(.validationFailed, "\(pointer) must be a date, YYYY-MM-DD", fieldErrors: [.init(pointer: pointer, message: "must be a date, YYYY-MM-DD")])
            }
            return date
        }
        let start = try day(from, "from")
        let end = try day(to, "to").addingTimeInterval(86_400)
        guard end > start else { throw PortalError(.validationFailed, "the period ends before it starts", fieldErrors: [.init(pointer: "to", message: "must not be before from")]) }
        return (start, end)
    }

    struct Observed {
        var calls = 0
        var failed = 0
        var withSubjects = 0
        var hosts: Set<String> = []
        var first: String?
        var last: String?
        /// Data minimization: how many calls had each field removed.
        var stripped: [String: Int] = [:]
    }

    /// The register for [start, end), from the ledger's entries below `atSize` (the whole ledger when nil).
    package func register(organizationID: UUID, slug: String, start: Date, end: Date, atSize: Int64? = nil) async throws -> JSONValue {
        let (integrations, size, reviews) = try await database.read { db in
            let rows = try await IntegrationStore(db).all(organizationID: organizationID, includeDeleted: true).compactMap {
                r -> (id: String, name: String, type: String, baseURL: String?, processing: JSONValue?, deletedAt: Date?, minimization: JSONValue?)? in
                guard r.createdAt < end else { return nil }
                if let deleted = r.deletedAt, deleted < start { return nil }
                return (r.id.uuidString.lowercased(), r.name, r.type.rawValue, r.baseURL, r.processing, r.deletedAt, r.config.objectValue?["minimization"])
            }
            let head = try await LedgerStore(db).head(organizationID)?.size ?? 0
            return (rows, min(head, atSize ?? head), try await SecurityReviewStore(db).latest(organizationID: organizationID))
        }
        // The period's calls, from the ledger (cut at its size when the scan started).
        let from = Timestamp.rfc3339(start)
        let until = Timestamp.rfc3339(end)
        var observed: [String: Observed] = [:]
        let marker = Array("\"type\":\"request.".utf8)
        for try await page in LedgerReader(database: database, cachedTiles: 0).pages(organizationID, below: size) {
            for row in page where SubjectRequests.contains(row.bytes, marker) {
                guard let entry = try? LedgerEntry(canonical: row.bytes), entry.time >= from, entry.time < until, let integration = entry.integration else { continue }
                let data = entry.data.objectValue ?? [:]
                var o = observed[integration] ?? Observed()
                o.calls += 1
                if entry.type == AuditEventType.requestFailed.rawValue { o.failed += 1 }
                if case .array(let subjects)? = data["subjects"], !subjects.isEmpty { o.withSubjects += 1 }
                if let host = data["host"]?.stringValue, !host.isEmpty { o.hosts.insert(host) }
                for field in data["strippedFields"]?.arrayValue ?? [] {
                    if let name = field.stringValue { o.stripped[name, default: 0] += 1 }
                }
                o.first = o.first ?? entry.time
                o.last = entry.time
                observed[integration] = o
            }
        }

        var records: [JSONValue] = []
        var byRole: [String: [JSONValue]] = [:]
        var transfers: [JSONValue] = []
        var exceptions: [JSONValue] = []
        for i in integrations {
            let o = observed[i.id] ?? Observed()
            let declared = i.processing?.objectValue
            let declaredHost = i.baseURL.flatMap { URL(string: $0)?.host?.lowercased() }
            let otherHosts = o.hosts.subtracting(declaredHost.map { [$0] } ?? []).sorted()
            var flags: [String] = []
            if o.calls > 0, declared == nil { flags.append("undeclared_recipient") }
            if !otherHosts.isEmpty { flags.append("undeclared_destination_host") }
            let countries = declared?["destinationCountries"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let thirdCountries = countries.filter { !Self.eea.contains($0) }
            let mechanism = declared?["transferMechanism"]?.objectValue
            let mechanismType = mechanism?["type"]?.stringValue
            if !thirdCountries.isEmpty, mechanismType == nil || mechanismType == "none" { flags.append("transfer_without_mechanism") }
            if declared != nil, declared?["purposes"] == nil { flags.append("no_purpose_declared") }
            let role = declared?["recipientRole"]?.stringValue ?? "undeclared"
            let row: JSONValue = [
                "integrationId": .string(i.id), "name": .string(i.name), "type": .string(i.type), "baseUrlHost": declaredHost.map(JSONValue.string) ?? .null,
                "deleted": .bool(i.deletedAt != nil), "declared": i.processing ?? .null,
                // Data minimization: the fields the integration may send, and what the gateway removed.
                "minimization": i.minimization ?? .null,
                // The latest security review (reviews made after the period's end are not the period's).
                "review": reviews[UUID(uuidString: i.id) ?? UUID()].flatMap { r -> JSONValue? in
                    guard r.reviewedAt < end else { return nil }
                    return [
                        "reviewedAt": .string(Timestamp.rfc3339(r.reviewedAt)), "reviewer": .string(r.reviewer), "outcome": .string(r.outcome.rawValue),
                        "dpaOnFile": .bool(r.dpaOnFile), "nextReviewDue": .string(Timestamp.rfc3339(r.nextDue)), "overdueAtPeriodEnd": .bool(r.nextDue < end),
                    ]
                } ?? .null,
                "observed": [
                    "calls": .int(Int64(o.calls)), "failed": .int(Int64(o.failed)), "callsNamingDataSubjects": .int(Int64(o.withSubjects)),
                    "destinationHosts": .array(o.hosts.sorted().map(JSONValue.string)), "first": o.first.map(JSONValue.string) ?? .null,
                    "last": o.last.map(JSONValue.string) ?? .null,
                    "strippedFields": .object(o.stripped.mapValues { .int(Int64($0)) }),
                ],
                "flags": .array(flags.map(JSONValue.string)),
            ]
            records.append(row)
            if declared != nil || o.calls > 0 {
                byRole[role, default: []].append(["integrationId": .string(i.id), "name": .string(i.name), "dpa": declared?["dpa"] ?? .null])
            }
            if !thirdCountries.isEmpty {
                transfers.append([
                    "integrationId": .string(i.id), "name": .string(i.name), "countries": .array(thirdCountries.map(JSONValue.string)),
                    "mechanism": mechanism.map(JSONValue.object) ?? .null, "observedCalls": .int(Int64(o.calls)),
                ])
            }
            for flag in flags { exceptions.append(["integrationId": .string(i.id), "name": .string(i.name), "flag": .string(flag)]) }
        }
        return [
            "organization": .string(slug), "period": ["from": .string(from), "to": .string(until)], "ledgerSize": .int(size),
            "records": .array(records),
            "recipientsByRole": .object(byRole.mapValues(JSONValue.array)),
            "transfers": .array(transfers), "exceptions": .array(exceptions),
        ]
    }
}
