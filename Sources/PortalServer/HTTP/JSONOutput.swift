package import Foundation
package import Hummingbird
import PortalCore

/// The one JSON encoder configuration of the API: compact, sorted keys, unescaped slashes.
package enum JSONOutput {
    /// Encodes `value`; our response types always encode, so a failure is a bug reported as `internal`.
    package static func encode(_ value: some Encodable) -> Data {
        // The same bytes without the Codable containers.
        if let json = value as? JSONValue { return Data(json.sortedText.utf8) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)) ?? Data(#"{"error":"encoding failed"}"#.utf8)
    }

    /// A JSON response.
    package static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: encode(value)))
        )
    }
}
