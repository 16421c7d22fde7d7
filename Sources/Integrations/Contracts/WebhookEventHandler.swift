package import Foundation
package import PortalCore
package import Storage

/// A received event as handlers see it: the body opened and parsed.
package struct ReceivedWebhookEvent: Sendable {
    package var id: UUID
    package var organizationID: UUID
    package var integrationID: UUID
    package var endpointID: UUID
    package var eventType: String
    package var providerEventID: String?
    /// The body as JSON (a string when it is not JSON, such as a form post).
    package var payload: JSONValue
    package var receivedAt: Date

    package init(
        id: UUID, organizationID: UUID, integrationID: UUID, endpointID: UUID, eventType: String, providerEventID: String?, payload: JSONValue, receivedAt: Date
    ) {
        self.id = id
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.endpointID = endpointID
        self.eventType = eventType
        self.providerEventID = providerEventID
        self.payload = payload
        self.receivedAt = receivedAt
    }
}

/// Handles events of some types (DESIGN section 2). `handle` runs inside the transaction that marks the
/// event processed and appends `webhook.processed`, so its writes happen exactly once with them; it
/// returns a note for the event's log, or throws to fail the attempt (retried by the endpoint's policy).
package protocol WebhookEventHandler: Sendable {
    /// Types taken: exact names, or a prefix pattern such as `user.*`.
    var eventTypes: [String] { get }
    func handle(_ event: ReceivedWebhookEvent, in db: Transaction) async throws -> String?
}
