import Foundation
import PortalCore

/// GDPR Art. 30 processing metadata of an integration: why and how personal data goes to the
/// provider. Every member is optional so a record can be completed over time; what is given is checked.
///
/// ```json
/// {"purposes": [{"purpose": "CRM of customers", "lawfulBasis": "contract"}],
///  "dataSubjectCategories": ["customers"], "personalDataCategories": ["contact details"],
///  "recipientRole": "processor", "processingLocations": ["IE"], "destinationCountries": ["US"],
///  "transferMechanism": {"type": "sccs", "module": 2}, "retention": "36 months after the contract ends",
///  "dpa": {"reference": "DPA-2026-014", "date": "2026-03-01"}, "securityMeasures": ["encryption at rest"]}
/// ```
package enum ProcessingRecord {
    /// Art. 6(1) lawful bases.
    package enum LawfulBasis: String, CaseIterable, Sendable {
        case consent, contract, legalObligation = "legal_obligation", vitalInterests = "vital_interests"
        case publicTask = "public_task", legitimateInterests = "legitimate_interests"
    }

    /// The provider's role towards the organization (Art. 4, 26, 28).
    package enum RecipientRole: String, CaseIterable, Sendable {
        case processor, subProcessor = "sub_processor", independentController = "independent_controller", jointController = "joint_controller"
    }

    /// Art. 44-49 transfer mechanisms.
    package enum TransferMechanism: String, CaseIterable, Sendable {
        case adequacy, sccs, bcrs, derogation, none
    }

    /// Reads and checks the record (into `errors`); returns it normalized.
    static func read(_ r: inout JSONObjectReader) -> JSONValue? {
        var out: [String: JSONValue] = [:]
        if let purposes = r.value("purposes") {
            if case .array(let items) = purposes, !items.isEmpty {
                var list: [JSONValue] = []
                for (i, item) in items.enumerated() {
                    var p = JSONObjectReader(item, pointer: "\(r.pointer("purposes"))/\(i)", errors: r.errorList)
                    let purpose = p.string("purpose", required: true, minLength: 1, maxLength: 500)
                    let basis = p.enumeration("lawfulBasis", LawfulBasis.self, required: true)
                    p.finish()
                    if let purpose, let basis { list.append(["purpose": .string(purpose), "lawfulBasis": .string(basis.rawValue)]) }
                }
                out["purposes"] = .array(list)
            } else {
                r.reject("purposes", "must be a non-empty array of {purpose, lawfulBasis}")
            }
        }
        for key in ["dataSubjectCategories", "personalDataCategories", "securityMeasures"] {
            if let list = r.strings(key, maxLength: 200) { out[key] = .array(list.map(JSONValue.string)) }
        }
        if let role = r.enumeration("recipientRole", RecipientRole.self) { out["recipientRole"] = .string(role.rawValue) }
        for key in ["processingLocations", "destinationCountries"] {
            if let list = r.strings(key, maxLength: 2) {
                let bad = list.filter { $0.count != 2 || !$0.allSatisfy { $0.isASCII && $0.isUppercase } }
                if bad.isEmpty { out[key] = .array(list.map(JSONValue.string)) } else { r.reject(key, "must be ISO 3166-1 alpha-2 country codes (such as DE, US)") }
            }
        }
        rejectNull(&r, "transferMechanism")
        if let mechanism = r.nested("transferMechanism", { t -> JSONValue? in
            guard let type = t.enumeration("type", TransferMechanism.self, required: true) else { return nil }
            var m: [String: JSONValue] = ["type": .string(type.rawValue)]
            if let module = t.integer("module", in: 1...4) {
                if type == .sccs { m["module"] = .int(module) } else { t.reject("module", "only standard contractual clauses have a module") }
            } else if type == .sccs, !t.has("module") {
                t.reject("module", "is required for standard contractual clauses (1 to 4)")
            }
            if let derogation = t.string("derogation", minLength: 1, maxLength: 200) {
                if type == .derogation { m["derogation"] = .string(derogation) } else { t.reject("derogation", "only an Art. 49 derogation names one") }
            } else if type == .derogation {
                t.reject("derogation", "is required for an Art. 49 derogation (such as explicit consent)")
            }
            return .object(m)
        }) {
            out["transferMechanism"] = mechanism
        }
        if let retention = r.string("retention", minLength: 1, maxLength: 500) { out["retention"] = .string(retention) }
        rejectNull(&r, "dpa")
        if let dpa = r.nested("dpa", { d -> JSONValue? in
            var m: [String: JSONValue] = [:]
            if let reference = d.string("reference", required: true, minLength: 1, maxLength: 200) { m["reference"] = .string(reference) }
            if let date = d.string("date", required: true, minLength: 10, maxLength: 10) {
                if isCalendarDay(date) { m["date"] = .string(date) } else { d.reject("date", "must be a date, YYYY-MM-DD") }
            }
            return .object(m)
        }) {
            out["dpa"] = dpa
        }
        return .object(out)
    }

    /// Records an error when member `key` is JSON null: the record's objects are objects or absent, never null
    /// (a reader's `nested` would take null for absent and accept a wrongly typed record).
    static func rejectNull(_ r: inout JSONObjectReader, _ key: String) {
        if r.has(key), r.value(key) == .null { r.reject(key, "must be an object, not null") }
    }

    /// Whether `text` is a real calendar day as YYYY-MM-DD: 2026-02-30 does not silently become March 2.
    static func isCalendarDay(_ text: String) -> Bool {
        guard text.range(of: #"^\d{4}-\d{2}-\d{2}$"#, options: .regularExpression) != nil,
              let date = Timestamp.parse(text + "T00:00:00Z")
        else { return false }
        return Timestamp.rfc3339(date).hasPrefix(text)
    }
}
