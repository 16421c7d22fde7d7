import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

@Suite("Sync over HTTP")
struct SyncRouteTests {
    func waitForJob(_ portal: Portal, _ uri: String, token: String) async throws -> JSONValue {
        var job: JSONValue = .null
        _ = try await eventually {
            job = try await portal.call(.get, uri, token: token).json
            return job.objectValue?["status"] != "running"
        }
        return job
    }

    @Test("configure, start, watch, page through records, edit, resolve a conflict, cancel; bad configurations are 422s", arguments: Backend.available)
    func syncLifecycle(backend: Backend) async throws {
        try await FakeProvider.with { provider in
            try await withPortal(backend) { portal in
                let admin = portal.token("acme.admin")
                // A syncConfig the engine cannot use is refused with every field named.
                let bad = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                    {"name":"Bad","type":"identity_provider","baseUrl":"\(provider.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"},
                     "syncConfig":{"entities":{"users":{"endpoint":"/page/users","pagination":{"style":"page"}}},"conflictResolution":{"strategy":"merge","rules":[{"field":"plan","condition":"source.plan >","action":"overwrite"}]}}}
                    """)
                let problem = expectProblem(bad, .unprocessableContent)
                let pointers = Set((problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
                #expect(pointers == ["/syncConfig/entities/users/pagination/pageSize", "/syncConfig/conflictResolution/rules/0/condition"])

                provider.seed(250)
                let created = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                    {"name":"Directory","type":"identity_provider","baseUrl":"\(provider.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"},
                     "syncConfig":{"entities":{"users":{"endpoint":"/page/users","itemsPath":"/items","updatedSinceParam":"updated_since",
                       "pagination":{"style":"page","pageSizeParam":"per_page","pageSize":100}}},"conflictResolution":{"strategy":"manual"}}}
                    """)
                #expect(created.status == .created, "\(created.body.string)")
                let id = try #require(created.json.objectValue?["id"]?.stringValue)
                let started = try await portal.call(.post, "/portal/integrations/\(id)/sync", token: admin, json: #"{"syncType":"full","entities":["users"]}"#)
                #expect(started.status == .accepted, "\(started.body.string)")
                let jobID = try #require(started.json.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue)
                let job = try await waitForJob(portal, "/portal/integrations/\(id)/sync/jobs/\(jobID)", token: admin)
                #expect(job.objectValue?["status"] == "completed" && job.objectValue?["recordsProcessed"] == 250 && job.objectValue?["recordsTotal"] == 250)
                #expect(try await portal.call(.get, "/portal/integrations/\(id)/sync/jobs", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue?.count == 1)
                #expect(try await portal.call(.get, "/portal/integrations/\(id)/sync/jobs/\(jobID)", token: portal.token("globex.admin")).status == .notFound)

                // Records, 100 at a time.
                var seen: [String] = []
                var cursor: String?
                // Bounded: a cursor that repeats a page must fail the test, not hang it.
                for _ in 0..<10 {
                    let page = try await portal.call(.get, "/portal/integrations/\(id)/records/users?limit=100" + (cursor.map { "&cursor=\($0)" } ?? ""), token: admin).json
                    seen += (page.objectValue?["items"]?.arrayValue ?? []).compactMap { $0.objectValue?["recordId"]?.stringValue }
                    cursor = page.objectValue?["nextCursor"]?.stringValue
                    if cursor == nil { break }
                }
                #expect(cursor == nil, "three pages, then no cursor")
                #expect(seen.count == 250 && Set(seen).count == 250)
                expectProblem(try await portal.call(.get, "/portal/integrations/\(id)/records/users?cursor=bogus", token: admin), .unprocessableContent)

                // A local edit, then the provider's change: a conflict for review.
                let before = Timestamp.rfc3339(Date())
                let edited = try await portal.call(.patch, "/portal/integrations/\(id)/records/users/u-000001", token: admin, json: #"{"plan":"team"}"#)
                #expect(edited.status == .ok && edited.json.objectValue?["locallyModifiedAt"] != nil, "\(edited.body.string)")
                expectProblem(try await portal.call(.patch, "/portal/integrations/\(id)/records/users/u-999999", token: admin, json: #"{"plan":"x"}"#), .notFound)
                provider.update("u-000001", plan: "enterprise")
                let second = try await portal.call(.post, "/portal/integrations/\(id)/sync", token: admin, json: #"{"syncType":"incremental"}"#)
                let secondID = try #require(second.json.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue)
                let incremental = try await waitForJob(portal, "/portal/integrations/\(id)/sync/jobs/\(secondID)", token: admin)
                #expect(incremental.objectValue?["counts"]?.objectValue?["conflicts"] == 1, "\(incremental)")
                let changed = try await portal.call(.get, "/portal/integrations/\(id)/records/users?modified_after=\(before)", token: admin).json
                #expect(changed.objectValue?["items"]?.arrayValue?.compactMap { $0.objectValue?["change"]?.stringValue } == ["updated"])
                let conflicts = try await portal.call(.get, "/portal/integrations/\(id)/sync/conflicts?status=open", token: admin).json
                let conflictID = try #require(conflicts.objectValue?["items"]?.arrayValue?.first?.objectValue?["id"]?.stringValue)
                let resolved = try await portal.call(.post, "/portal/integrations/\(id)/sync/conflicts/\(conflictID)/resolve", token: admin, json: #"{"choose":"destination"}"#)
                #expect(resolved.status == .ok && resolved.json.objectValue?["status"] == "resolved")
                expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/sync/conflicts/\(conflictID)/resolve", token: admin, json: #"{"choose":"destination"}"#), .conflict)
                expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/sync/conflicts/\(conflictID)/resolve", token: admin, json: #"{"choose":"both"}"#), .unprocessableContent)

                // While a job runs (the provider stalls), a second start is a 409 naming it; cancelling stops it.
                provider.throttle(1_000, from: provider.requests + 2)
                let third = try await portal.call(.post, "/portal/integrations/\(id)/sync", token: admin, json: #"{"syncType":"full"}"#)
                let thirdID = try #require(third.json.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue)
                let refused = try await portal.call(.post, "/portal/integrations/\(id)/sync", token: admin, json: #"{"syncType":"full"}"#)
                #expect(expectProblem(refused, .conflict)["runningJobId"] == .string(thirdID))
                #expect(try await portal.call(.post, "/portal/integrations/\(id)/sync/jobs/\(thirdID)/cancel", token: admin).status == .accepted)
                provider.throttle(0)
                let cancelled = try await waitForJob(portal, "/portal/integrations/\(id)/sync/jobs/\(thirdID)", token: admin)
                #expect(cancelled.objectValue?["status"] == "cancelled", "\(cancelled)")
                expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/sync/jobs/\(thirdID)/cancel", token: admin), .conflict)
                expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/sync", token: admin, json: #"{"syncType":"sideways"}"#), .unprocessableContent)
            }
        }
    }
}
