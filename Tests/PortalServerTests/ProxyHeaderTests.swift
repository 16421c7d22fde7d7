import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// The transparent proxy serves upstream bytes from the portal's origin (issue 16, item 15): every proxied
/// response is sandboxed, never sniffed and not readable cross-origin, whatever the upstream said.
@Suite("Proxy response headers")
struct ProxyHeaderTests {
    static let csp = HTTPField.Name("Content-Security-Policy")!
    static let nosniff = HTTPField.Name("X-Content-Type-Options")!
    static let corp = HTTPField.Name("Cross-Origin-Resource-Policy")!

    @Test("a proxied text/html response is sandboxed and nosniff; the upstream's own policy does not survive")
    func htmlIsSandboxed() async throws {
        try await withPortal(.sqlite) { portal in
            let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Pages","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-pages-123456"},
                 "rateLimits":{"requestsPerSecond":100,"burst":100}}
                """)
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let token = portal.token("acme.operator")

            let page = try await portal.call(.get, "/portal/integrations/\(id)/proxy/html", token: token)
            #expect(page.status == .ok && page.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(page.body.string.contains("<script>"))
            #expect(page.headers[values: Self.csp] == ["sandbox; default-src 'none'; frame-ancestors 'none'"])
            #expect(page.headers[values: Self.nosniff] == ["nosniff"])
            #expect(page.headers[values: Self.corp] == ["same-origin"])
            #expect(!page.headers.contains { $0.value.contains("unsafe-inline") || $0.value == "sniff-away" || $0.value == "cross-origin" })

            // Every proxied answer, JSON and error statuses included.
            for path in ["/echo/json", "/status/404"] {
                let other = try await portal.call(.get, "/portal/integrations/\(id)/proxy\(path)", token: token)
                #expect(other.headers[Self.csp]?.hasPrefix("sandbox;") == true && other.headers[Self.nosniff] == "nosniff", "\(path)")
            }
            #expect(portal.upstream.calls("/html") == 1)
        }
    }
}
