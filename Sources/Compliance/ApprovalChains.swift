import PortalCore

/// CC8.1's approval chains (issue 21): each approval request with its decision and the integration's first
/// call after an approval, with seqs and times, from the ledger entries of the period in order. A change made
/// in force without approval (policy `off`) is a flagged exception. Pure: fed entry by entry by the scan.
struct ApprovalChains {
    struct Chain {
        var approvalId: String
        var integration: String
        var digest: String
        var requested: (seq: Int64, time: String, by: String)?
        var changed: [JSONValue] = []
        var decision: String?
        var decided: (seq: Int64, time: String, by: String, comment: String)?
        var firstUse: (seq: Int64, time: String)?

        var json: JSONValue {
            var m: [String: JSONValue] = ["approvalId": .string(approvalId), "integration": .string(integration), "digest": .string(digest), "changed": .array(changed)]
            m["requested"] = requested.map { ["seq": .int($0.seq), "time": .string($0.time), "by": .string($0.by)] } ?? .null
            m["decision"] = decision.map(JSONValue.string) ?? "pending"
            m["decided"] = decided.map { ["seq": .int($0.seq), "time": .string($0.time), "by": .string($0.by), "comment": .string($0.comment)] } ?? .null
            m["firstUse"] = firstUse.map { ["seq": .int($0.seq), "time": .string($0.time)] } ?? .null
            return .object(m)
        }
    }

    private(set) var chains: [Chain] = []
    private var index: [String: Int] = [:]
    /// Integrations approved whose first call since is not seen yet, to the chain's index.
    private var awaitingUse: [String: Int] = [:]
    private(set) var exceptions: [JSONValue] = []

    /// Whether `type` is one this accumulator reads.
    static func reads(_ type: String) -> Bool {
        type.hasPrefix("integration.") || type == "request.completed" || type == "request.failed"
    }

    mutating func add(seq: Int64, time: String, type: String, integration: String?, data: JSONValue) {
        guard let integration else { return }
        let m = data.objectValue ?? [:]
        switch type {
        case "integration.requested":
            guard let id = m["approvalId"]?.stringValue else { return }
            var chain = Chain(approvalId: id, integration: integration, digest: m["digest"]?.stringValue ?? "")
            chain.requested = (seq, time, m["requestedBy"]?.stringValue ?? "")
            chain.changed = m["changed"]?.arrayValue ?? []
            index[id] = chains.count
            chains.append(chain)
        case "integration.approved", "integration.rejected":
            guard let id = m["approvalId"]?.stringValue else { return }
            if index[id] == nil {
                // Requested before the period: the decision's entry says when and by whom.
                var chain = Chain(approvalId: id, integration: integration, digest: m["digest"]?.stringValue ?? "")
                chain.requested = m["requestedAt"]?.stringValue.map { (-1, $0, m["requestedBy"]?.stringValue ?? "") }
                index[id] = chains.count
                chains.append(chain)
            }
            guard let i = index[id] else { return }
            chains[i].decision = type == "integration.approved" ? "approved" : "rejected"
            chains[i].decided = (seq, time, m["decidedBy"]?.stringValue ?? "", m["comment"]?.stringValue ?? "")
            if type == "integration.approved" { awaitingUse[integration] = i }
        case "integration.created", "integration.updated":
            if m["material"] == .int(1), m["approval"] == "off" {
                exceptions.append([
                    "flag": "change_without_approval", "criterion": "CC8.1", "seq": .int(seq), "time": .string(time), "type": .string(type),
                    "integration": .string(integration), "materialDigest": m["materialDigest"] ?? .null,
                ])
            }
        case "request.completed", "request.failed":
            if let i = awaitingUse.removeValue(forKey: integration) { chains[i].firstUse = (seq, time) }
        default:
            break
        }
    }

    /// `approvals.json`: the chains in the order requested, and the exceptions.
    var document: JSONValue {
        [
            "description": "CC8.1: each approval request of the period with its decision and the integration's first call after an approval (ledger seqs and times; requested.seq -1: requested before the period).",
            "chains": .array(chains.map(\.json)), "exceptions": .array(exceptions),
        ]
    }
}
