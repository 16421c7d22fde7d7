import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Compliance
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Storage
import Testing

/// Approvals with separation of duties (issue 21): pending integrations make no call, only another owner
/// with `approve_integrations` decides, what was approved is pinned, and a change waits while the approved
/// configuration serves.
@Suite("Approvals")
struct ApprovalTests {
    /// An echo integration on the test upstream, made by `token`; returns its JSON.
    static func create(_ portal: Portal, token: String, base: String? = nil) async throws -> [String: JSONValue] {
        let response = try await portal.call(.post, "/portal/integrations", token: token, json: """
            {"name":"Echo \(UUID().uuidString.prefix(8))","type":"analytics","baseUrl":"\(base ?? portal.upstream.baseURL + "/echo/v1")","authMethod":"api_key",
             "credentials":{"apiKey":"k-approval-123456"}}
            """)
        #expect(response.status == .created, "\(response.body.string)")
        return response.json.objectValue ?? [:]
    }

    /// One call through the integration.
    static func call(_ portal: Portal, _ id: String) async throws -> TestResponse {
        try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.operator"), json: #"{"method":"GET","endpoint":"/items"}"#)
    }

    /// A token of `role` issued to `owner` in acme.
    static func token(_ portal: Portal, role: String, owner: String) async throws -> String {
        let issued = try await portal.call(.post, "/portal/tokens", token: portal.token("acme.admin"), json: #"{"role":"\#(role)","owner":"\#(owner)"}"#)
        return try #require(issued.json.objectValue?["token"]?.stringValue, "\(issued.body.string)")
    }

    @Test("a new integration waits: no call until another owner approves it, with a comment; the same owner is refused; the ledger has the request and the approval with the digest", arguments: Backend.available)
    func newIntegration(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.defaultPolicy.approvals = .required }) { portal in
            let created = try await Self.create(portal, token: portal.token("acme.operator"))
            let id = try #require(created["id"]?.stringValue)
            #expect(created["status"] == "pending")
            let approval = try #require(created["approval"]?.objectValue)
            #expect(approval["pending"] == true && approval["approvedDigest"] == nil)
            let digest = try #require(approval["currentDigest"]?.stringValue)

            // No outbound call while pending: a clear 409, and nothing reached the upstream.
            let refused = try await Self.call(portal, id)
            let problem = expectProblem(refused, .conflict)
            #expect(problem["detail"]?.stringValue?.contains("approv") == true && problem["approval"] == "pending", "\(problem)")
            #expect(portal.upstream.calls("/echo/v1") == 0)
            // Nor can the requester's side just switch it on.
            expectProblem(try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.admin"), json: #"{"status":"active"}"#), .conflict)

            // Waiting in the queue.
            let queue = try await portal.call(.get, "/portal/approvals?state=pending", token: portal.token("acme.auditor"))
            let waiting = try #require(queue.json.objectValue?["items"]?.arrayValue?.first?.objectValue, "\(queue.body.string)")
            #expect(waiting["integrationId"]?.stringValue == id && waiting["digest"]?.stringValue == digest && waiting["requestedBy"] == "operator@acme")

            // The operator role may not approve; a compliance token of the requester's own owner neither.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.operator"), json: #"{"comment":"mine"}"#), .forbidden)
            let sameOwner = try await Self.token(portal, role: "compliance", owner: "operator@acme")
            let separation = expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: sameOwner, json: #"{"comment":"mine"}"#), .forbidden)
            #expect(separation["detail"]?.stringValue?.contains("separation of duties") == true, "\(separation)")
            // Rejecting is a decision too: not the requester's either.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/reject", token: sameOwner, json: #"{"comment":"mine"}"#), .forbidden)
            // A comment is required; a digest other than what waits is a 409 naming the one that waits.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"), json: #"{}"#), .unprocessableContent)
            let stale = try await portal.call(
                .post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"),
                json: #"{"comment":"ok","digest":"\#(String(repeating: "ab", count: 32))"}"#
            )
            #expect(expectProblem(stale, .conflict)["digest"]?.stringValue == digest)

            // Another owner approves what they reviewed.
            let approved = try await portal.call(
                .post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"), json: #"{"comment":"DPA on file, reviewed","digest":"\#(digest)"}"#
            )
            #expect(approved.status == .ok, "\(approved.body.string)")
            #expect(approved.json.objectValue?["state"] == "approved" && approved.json.objectValue?["decidedBy"] == "compliance@acme")
            let after = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect(after["status"] == "active" && after["approval"]?.objectValue?["approvedDigest"]?.stringValue == digest)
            #expect(try await Self.call(portal, id).status == .ok)
            #expect(portal.upstream.calls("/echo/v1") == 1)
            // Decided once: a second decision finds nothing waiting.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.admin"), json: #"{"comment":"again"}"#), .conflict)

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database).filter { $0.integration == id }
            let types = entries.map(\.type)
            #expect(types.starts(with: ["integration.created", "integration.requested"]) && types.contains("integration.approved"), "\(types)")
            let requested = try #require(entries.first { $0.type == "integration.requested" })
            let decision = try #require(entries.first { $0.type == "integration.approved" })
            #expect(requested.data.objectValue?["digest"]?.stringValue == digest && decision.data.objectValue?["digest"]?.stringValue == digest)
            #expect(decision.data.objectValue?["comment"] == "DPA on file, reviewed" && decision.data.objectValue?["requestedBy"] == "operator@acme")
            #expect(try #require(entries.firstIndex { $0.type == "integration.approved" }) < (entries.firstIndex { $0.type == "request.completed" } ?? -1))
        }
    }

    @Test("a material change waits while the approved configuration keeps serving; a rejection restores it; an operational change needs no approval", arguments: Backend.available)
    func changeWhileServing(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.defaultPolicy.approvals = .required }) { portal in
            let id = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"), json: #"{"comment":"first"}"#).status == .ok)

            // Retries are operational: in force at once, nothing to approve.
            let retry = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.operator"), json: #"{"config":{"retry":{"maxAttempts":2}}}"#)
            #expect(retry.json.objectValue?["status"] == "active" && retry.json.objectValue?["approval"]?.objectValue?["pending"] == false, "\(retry.body.string)")

            // The base URL is material (and needs the credentials again): pending, the approved one serves.
            let moved = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.operator"), json: """
                {"baseUrl":"\(portal.upstream.baseURL)/echo/v2","credentials":{"apiKey":"k-approval-123456"}}
                """)
            let movedView = moved.json.objectValue ?? [:]
            #expect(movedView["status"] == "pending" && movedView["approval"]?.objectValue?["servingApproved"] == true, "\(moved.body.string)")
            let served = try await Self.call(portal, id)
            #expect(served.status == .ok, "\(served.body.string)")
            #expect(served.json.objectValue?["body"]?.objectValue?["path"] == "/echo/v1/items", "the approved base URL serves: \(served.body.string)")
            #expect(portal.upstream.calls("/echo/v2") == 0)
            let status = try await portal.call(.get, "/portal/integrations/\(id)/status", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect(status["status"] == "pending" && status["usable"] == true)

            // A change to the change supersedes the first request: one waits.
            _ = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.operator"), json: """
                {"baseUrl":"\(portal.upstream.baseURL)/echo/v3","credentials":{"apiKey":"k-approval-123456"}}
                """)
            let all = try await portal.call(.get, "/portal/approvals?integrationId=\(id)", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(all.compactMap { $0.objectValue?["state"]?.stringValue } == ["pending", "superseded", "approved"], "\(all)")

            // Rejected: the approved configuration is back in force.
            let rejected = try await portal.call(.post, "/portal/integrations/\(id)/reject", token: portal.token("acme.admin"), json: #"{"comment":"v3 is not an approved host"}"#)
            #expect(rejected.status == .ok, "\(rejected.body.string)")
            let restored = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect(restored["status"] == "active" && restored["baseUrl"]?.stringValue?.hasSuffix("/echo/v1") == true, "\(restored)")
            #expect(try await Self.call(portal, id).json.objectValue?["body"]?.objectValue?["path"] == "/echo/v1/items")

            // Approved: the new configuration serves.
            _ = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.operator"), json: """
                {"baseUrl":"\(portal.upstream.baseURL)/echo/v2","credentials":{"apiKey":"k-approval-123456"}}
                """)
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"), json: #"{"comment":"v2 ok"}"#).status == .ok)
            #expect(try await Self.call(portal, id).json.objectValue?["body"]?.objectValue?["path"] == "/echo/v2/items")
        }
    }

    @Test("the policy: suspend while a change waits, off in force at once and ledgered as such, only administrators set it, changes ledgered", arguments: Backend.available)
    func policy(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.defaultPolicy.approvals = .required }) { portal in
            let admin = portal.token("acme.admin")
            let shown = try await portal.call(.get, "/portal/policy", token: portal.token("acme.auditor"))
            #expect(shown.json == ["approvals": "required", "whileChangePending": "serve_approved", "apiAllowList": [], "apiRateLimits": [:]], "\(shown.body.string)")
            expectProblem(try await portal.call(.put, "/portal/policy", token: portal.token("acme.compliance"), json: #"{"approvals":"off"}"#), .forbidden)
            let bad = expectProblem(try await portal.call(.put, "/portal/policy", token: admin, json: #"{"approvals":"sometimes","colour":"red"}"#), .unprocessableContent)
            #expect("\(bad)".contains("/approvals") && "\(bad)".contains("/colour"), "\(bad)")

            #expect(try await portal.call(.put, "/portal/policy", token: admin, json: #"{"whileChangePending":"suspend"}"#).status == .ok)
            let id = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: admin, json: #"{"comment":"ok"}"#).status == .ok)
            _ = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.operator"), json: """
                {"baseUrl":"\(portal.upstream.baseURL)/echo/v2","credentials":{"apiKey":"k-approval-123456"}}
                """)
            expectProblem(try await Self.call(portal, id), .conflict)
            // A rejection still restores the approved configuration.
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reject", token: admin, json: #"{"comment":"no"}"#).status == .ok)
            #expect(try await Self.call(portal, id).status == .ok)

            // Globex is not affected by acme's policy.
            #expect(try await portal.call(.get, "/portal/policy", token: portal.token("globex.auditor")).json.objectValue?["whileChangePending"] == "serve_approved")

            // Off: active at once, the entry says so (the evidence flags it).
            #expect(try await portal.call(.put, "/portal/policy", token: admin, json: #"{"approvals":"off"}"#).status == .ok)
            let open = try await Self.create(portal, token: portal.token("acme.operator"))
            #expect(open["status"] == "active")
            #expect(try await Self.call(portal, try #require(open["id"]?.stringValue)).status == .ok)

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let updates = entries.filter { $0.type == "policy.updated" }
            #expect(updates.count == 2 && updates.last?.data.objectValue?["after"]?.objectValue?["approvals"] == "off")
            let created = try #require(entries.last { $0.type == "integration.created" })
            #expect(created.data.objectValue?["approval"] == "off")
        }
    }

    @Test("a rejected new integration is inactive and makes no call; deleting a pending one withdraws its request", arguments: [Backend.sqlite])
    func rejectedAndDeleted(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.defaultPolicy.approvals = .required }) { portal in
            let id = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reject", token: portal.token("acme.compliance"), json: #"{"comment":"no DPA"}"#).status == .ok)
            let view = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect(view["status"] == "inactive" && view["errorMessage"]?.stringValue?.contains("no DPA") == true, "\(view)")
            expectProblem(try await Self.call(portal, id), .forbidden)

            let other = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)
            #expect(try await portal.call(.delete, "/portal/integrations/\(other)", token: portal.token("acme.operator")).status == .noContent)
            let pending = try await portal.call(.get, "/portal/approvals?state=pending", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(pending.isEmpty, "\(pending)")
            // Another organization's approvals are not visible, and its integrations cannot be decided.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("globex.admin"), json: #"{"comment":"x"}"#), .notFound)
        }
    }

    @Test("the SOC 2 bundle shows request, approval and first use with seqs and times, and flags a change made without approval; it verifies offline", arguments: Backend.available)
    func evidence(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.defaultPolicy.approvals = .required }) { portal in
            let id = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/approve", token: portal.token("acme.compliance"), json: #"{"comment":"reviewed"}"#).status == .ok)
            #expect(try await Self.call(portal, id).status == .ok)
            #expect(try await portal.call(.put, "/portal/policy", token: portal.token("acme.admin"), json: #"{"approvals":"off"}"#).status == .ok)
            let unapproved = try #require(try await Self.create(portal, token: portal.token("acme.operator"))["id"]?.stringValue)

            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("approvals-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch)
            let keys = try await portal.services.checkpointer.verifierKeys(slug: "acme")
            let verified = try EvidenceVerifier().verify(bundle: file.path, keys: keys)
            #expect(verified.passed, "\(verified.problems)")
            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let document = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("approvals.json"))).objectValue ?? [:]
            let chain = try #require(document["chains"]?.arrayValue?.first?.objectValue, "\(document)")
            #expect(chain["integration"]?.stringValue == id && chain["decision"] == "approved")
            let requested = chain["requested"]?.objectValue ?? [:], decided = chain["decided"]?.objectValue ?? [:], used = chain["firstUse"]?.objectValue ?? [:]
            #expect(decided["by"] == "compliance@acme" && requested["by"] == "operator@acme" && decided["comment"] == "reviewed", "\(chain)")
            if case .int(let r)? = requested["seq"], case .int(let d)? = decided["seq"], case .int(let u)? = used["seq"] {
                #expect(r < d && d < u, "request, approval, first use in order: \(chain)")
            } else {
                Issue.record("seqs missing: \(chain)")
            }
            let flagged = (verified.manifest?.objectValue?["exceptions"]?.arrayValue ?? []).compactMap(\.objectValue).filter { $0["flag"] == "change_without_approval" }
            #expect(flagged.count == 1 && flagged.first?["integration"]?.stringValue == unapproved, "\(flagged)")
            let population = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/cc8.1.json"))).arrayValue ?? []
            let types = Set(population.compactMap { $0.objectValue?["type"]?.stringValue })
            #expect(types.isSuperset(of: ["integration.requested", "integration.approved", "policy.updated"]), "\(types)")
        }
    }
}
