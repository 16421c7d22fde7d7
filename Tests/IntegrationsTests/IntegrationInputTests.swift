import Foundation
import Integrations
import PortalCore
import Testing

@Suite("Integration configuration validation")
struct IntegrationInputTests {
    static let seedExample: JSONValue = [
        "name": "Salesforce CRM", "type": "enterprise", "baseUrl": "https://api.salesforce.com", "authMethod": "oauth2",
        "credentials": ["clientId": "abc", "clientSecret": "def"],
    ]

    func pointers(_ body: JSONValue) -> [String: String] {
        do {
            _ = try IntegrationInput.parse(body)
            return [:]
        } catch {
            #expect(error.code == .validationFailed)
            return Dictionary(error.fieldErrors.map { ($0.pointer, $0.message) }, uniquingKeysWith: { a, _ in a })
        }
    }

    @Test("the seed's example is valid")
    func seedExample() throws {
        let input = try IntegrationInput.parse(Self.seedExample)
        #expect(input.name == "Salesforce CRM" && input.type == .enterprise && input.authMethod == .oauth2)
        #expect(input.credentials == ["clientId": "abc", "clientSecret": "def"])
        #expect(input.config == [:])
    }

    @Test("each auth method names the credentials it needs")
    func requiredCredentials() {
        var body = Self.seedExample
        body = body.merging(patch: ["authMethod": "api_key", "credentials": ["clientId": nil, "clientSecret": nil, "token": "x"]])
        #expect(pointers(body)["/credentials/apiKey"] == "is required for authMethod 'api_key'")
        body = body.merging(patch: ["authMethod": "basic_auth"])
        #expect(pointers(body)["/credentials/password"] != nil)
        body = body.merging(patch: ["authMethod": "aws_sigv4"])
        #expect(pointers(body)["/credentials/secretAccessKey"] != nil)
        body = body.merging(patch: ["authMethod": "jwt"])
        #expect(pointers(body).isEmpty)
        body = body.merging(patch: ["authMethod": "jwt", "credentials": ["token": nil, "other": "y"]])
        #expect(pointers(body)["/credentials"]?.contains("privateKey") == true)
    }

    @Test("wrong types, unknown enums, unknown fields and bad URLs name their field")
    func schemaViolations() {
        let errors = pointers([
            "name": "", "type": "crm", "baseUrl": "ftp://x", "authMethod": "oauth2", "credentials": ["clientId": 5],
            "config": [1], "rateLimits": ["burst": 0, "unknown": 1], "extra": true,
        ])
        #expect(errors["/name"] == "must not be empty")
        #expect(errors["/type"]?.hasPrefix("must be one of") == true)
        #expect(errors["/baseUrl"] == "must be an absolute http or https URL")
        #expect(errors["/credentials/clientId"] == "must be a string, not number")
        #expect(errors["/config"] == "must be an object, not array")
        #expect(errors["/rateLimits/burst"] != nil)
        #expect(errors["/rateLimits/unknown"] == "is not a known field")
        #expect(errors["/extra"] == "is not a known field")
        #expect(pointers(Self.seedExample.merging(patch: ["baseUrl": "https://user:pw@api.example.com"]))["/baseUrl"]?.contains("credentials") == true)
    }

    @Test("a masked value is not accepted as a new secret")
    func maskedOnCreate() {
        let body = Self.seedExample.merging(patch: ["credentials": ["clientSecret": "••••1234"]])
        #expect(pointers(body)["/credentials/clientSecret"] == "is a masked value; send the secret itself")
    }

    @Test("webhook configuration keeps its secret apart and namespaces the endpoint")
    func webhook() throws {
        let input = try IntegrationInput.parse(Self.seedExample.merging(patch: [
            "webhookConfig": [
                "endpoint": "/webhooks/salesforce", "events": ["user.created", "user.updated"], "secret": "webhook-secret",
                "signatureMethod": "hmac-sha256", "retryPolicy": ["maxRetries": 5, "baseDelay": 1000, "maxDelay": 60000],
            ],
        ]))
        #expect(input.webhookSecret == "webhook-secret")
        #expect(input.webhookConfig?.objectValue?["secret"] == nil)
        #expect(input.webhookConfig?.objectValue?["endpoint"] == "/webhooks/salesforce")
        let bad = pointers(Self.seedExample.merging(patch: ["webhookConfig": ["endpoint": "/webhooks/Sales Force", "events": []]]))
        #expect(bad["/webhookConfig/endpoint"] != nil)
        #expect(bad["/webhookConfig/secret"] == "is required")
    }

    @Test("a patch names its fields; null removes, masked means unchanged")
    func patch() throws {
        let patch = try IntegrationPatch.parse([
            "name": "New", "credentials": ["clientSecret": "••••1234", "old": nil], "rateLimits": nil, "status": "inactive",
        ])
        #expect(patch.fieldNames == ["credentials", "name", "rateLimits", "status"])
        #expect(patch.credentials?["old"] == .some(nil))
        #expect(patch.status == .inactive)
        #expect(throws: PortalError.self) { try IntegrationPatch.parse(["status": "error"]) }
        #expect(throws: PortalError.self) { try IntegrationPatch.parse(["id": "x"]) }
        #expect(throws: PortalError.self) { try IntegrationPatch.parse(["credentials": ["a": 1]]) }
    }
}
