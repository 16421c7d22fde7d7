package import Foundation
import Hummingbird
package import PortalCore
import Storage

/// Health, readiness, the OpenAPI document and `whoami`.
struct SystemRoutes {
    let database: Database

    func register(on router: Router<PortalRequestContext>, portal: RouterGroup<PortalRequestContext>, table: RouteTable) {
        table.open(router, .get, "/healthz") { _, _ in
            JSONOutput.response(["status": "ok"] as JSONValue)
        }
        table.open(router, .get, "/readyz") { _, _ in
            guard await self.database.isReachable() else {
                throw PortalError(.unavailable, "the database is not reachable")
            }
            return JSONOutput.response(["status": "ready", "database": "ok"] as JSONValue)
        }
        table.open(router, .get, "/openapi.json") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: try OpenAPIDocument.data()))
            )
        }
        table.guarded(portal, prefix: "/portal", .get, "/whoami", nil) { _, _, principal in
            JSONOutput.response([
                "tokenId": .string(principal.tokenID.uuidString.lowercased()),
                "organization": .string(principal.organizationSlug),
                "role": .string(principal.role.rawValue),
                "owner": .string(principal.owner),
                "permissions": .array(principal.role.permissions.map(\.rawValue).sorted().map(JSONValue.string)),
            ] as JSONValue)
        }
    }
}

/// The hand-kept OpenAPI 3.1 document, shipped as a resource.
package enum OpenAPIDocument {
    /// The document's bytes.
    package static func data() throws(PortalError) -> Data {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
              let data = try? Data(contentsOf: url)
        else {
            throw PortalError(.internal, "the OpenAPI document is missing from the build")
        }
        return data
    }
}
