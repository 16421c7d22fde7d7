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
