/// The seed's `TestResult`: what testing an integration's connection, or sending a test webhook event,
/// answers.
public struct TestResult: Sendable, Encodable, Equatable {
    public var success: Bool
    public var message: String
    public var details: JSONValue

    public init(success: Bool, message: String, details: JSONValue) {
        self.success = success
        self.message = message
        self.details = details
    }
}

/// One page of a list, newest first, with the cursor of the next.
public struct Page<Item: Sendable & Encodable>: Sendable, Encodable {
    public var items: [Item]
    /// Pass as `cursor` to get the next page; absent on the last page.
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}
