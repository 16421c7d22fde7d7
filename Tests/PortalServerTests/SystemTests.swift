import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalServer
import PortalTestSupport
import Storage
import Testing

@Suite("System routes and the OpenAPI document")
struct SystemTests {
    @Test("health, readiness and request ids", arguments: [Backend.sqlite])
    func health(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let health = try await portal.call(.get, "/healthz", token: nil)
            #expect(health.status == .ok && health.json == ["status": "ok"])
            #expect(health.headers[.init("X-Request-Id")!]?.count == 16)
            let ready = try await portal.call(.get, "/readyz", token: nil)
            #expect(ready.status == .ok && ready.json == ["status": "ready", "database": "ok"])
            let echoed = try await portal.call(.get, "/healthz", token: nil, headers: [.init("X-Request-Id")!: "trace-abc-123"])
            #expect(echoed.headers[.init("X-Request-Id")!] == "trace-abc-123")
            let problem = try await portal.call(.get, "/portal/whoami", token: nil, headers: [.init("X-Request-Id")!: "trace-xyz"])
            #expect(expectProblem(problem, .unauthorized)["requestId"] == "trace-xyz")
        }
    }

    @Test("readiness fails with 503 when the database cannot be reached")
    func notReady() async throws {
        var settings = PortalSettings()
        settings.databaseURL = "postgres://nobody@127.0.0.1:1/none?sslmode=disable"
        settings.masterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        let database = try Database(url: settings.databaseURL, logger: quietLogger)
        let services = try PortalServices(settings: settings, database: database, logger: quietLogger)
        let app = Application(router: try buildRouter(services: services).0, services: [database], logger: quietLogger)
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            expectProblem(response, .serviceUnavailable)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test("the OpenAPI document lists exactly the routes the router serves, with their permissions")
    func openAPIMatchesRoutes() throws {
        var settings = PortalSettings()
        settings.masterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        let database = try Database(url: "sqlite:///tmp/unused-\(UUID().uuidString).sqlite", logger: quietLogger)
        let (router, table) = try buildRouter(services: try PortalServices(settings: settings, database: database, logger: quietLogger))
        let document = try JSONValue.parse(try OpenAPIDocument.data())
        #expect(document.objectValue?["openapi"] == "3.1.0")
        var documented: [String: String?] = [:]
        for (path, item) in document.objectValue?["paths"]?.objectValue ?? [:] {
            for (method, operation) in item.objectValue ?? [:] where ["get", "post", "put", "patch", "delete"].contains(method) {
                documented["\(method.uppercased()) \(path)"] = operation.objectValue?["x-portal-permission"]?.stringValue
            }
        }
        // The tile route's catch-all `**` is documented as one `{path}` parameter. The web console's HTML
        // pages (`/` and `/console/...`) are not part of the API: they call the documented routes.
        let all = router.routes.map {
            "\($0.method.rawValue) \($0.path.description.hasPrefix("/") ? "" : "/")\($0.path)".replacingOccurrences(of: "**", with: "{path}")
        }
        let served = Set(all.filter { !$0.hasSuffix(" /") && !$0.contains(" /console") })
        #expect(all.count - served.count >= 10, "the console's pages are served")
        let tabled = Set(table.map(\.description))
        #expect(served == tabled, "the route table and the router disagree")
        #expect(Set(documented.keys) == served, "missing from the document: \(served.subtracting(documented.keys)); not served: \(Set(documented.keys).subtracting(served))")
        for route in table {
            #expect(documented[route.description] == .some(route.permission?.rawValue), "permission of \(route)")
        }
    }
}
