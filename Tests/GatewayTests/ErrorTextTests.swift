import AsyncHTTPClient
@testable import Gateway
import NIOCore
import NIOPosix
import Testing

/// What the gateway stores and shows of a failed call is fixed text: the HTTP client's errors quote header
/// values (an API key among them) and hosts, and `integration_requests.error_message` and
/// `metrics.lastError` are read by auditors.
@Suite("Gateway error text")
struct ErrorTextTests {
    @Test("client errors are described without their payload")
    func noPayload() {
        let secret = "sk-live-0123456789abcdef"
        let errors: [any Error] = [
            HTTPClientError.invalidHeaderFieldValues([secret + "\n"]), HTTPClientError.invalidHeaderFieldNames([secret]),
            HTTPClientError.connectTimeout, HTTPClientError.remoteConnectionClosed, HTTPClientError.invalidURL,
            IOError(errnoCode: 111, reason: "connect to \(secret).example.test"), ChannelError.connectPending,
        ]
        for error in errors {
            let text = Gateway.describe(error)
            #expect(!text.contains(secret) && !text.contains("sk-live"), "\(text)")
            #expect(!text.isEmpty && text.count <= 60, "\(text)")
        }
        #expect(Gateway.describe(HTTPClientError.invalidHeaderFieldValues([secret])) == "a header name or value is not allowed in HTTP")
        #expect(Gateway.describe(IOError(errnoCode: 111, reason: "x")) == "connection failed")
    }
}
