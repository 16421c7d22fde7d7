package import Foundation

/// The seed's `TestResult`: what testing an integration's connection, or sending a test webhook event,
/// answers.
package struct TestResult: Sendable, Encodable, Equatable {
    package var success: Bool
    package var message: String
    package var details: JSONValue

    package init(success: Bool, message: String, details: JSONValue) {
        self.success = success
        self.message = message
        self.details = details
    }
}

/// One page of a list, newest first, with the cursor of the next.
package struct Page<Item: Sendable & Encodable>: Sendable, Encodable {
    package var items: [Item]
    /// Pass as `cursor` to get the next page; absent on the last page.
    package var nextCursor: String?

    package init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}
extension Page {
    /// The id a `cursor` this API returned stands for (nil without one); another text is a 422.
    package static func cursorID(_ cursor: String?) throws(PortalError) -> UUID? {
        guard let cursor else { return nil }
        guard let id = UUID(uuidString: cursor) else {
            throw PortalError.validation([.init(pointer: "?cursor", message: "is not a cursor this API returned")])
        }
        return id
    }
}

