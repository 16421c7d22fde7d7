import Foundation
import Integrations
import PortalCore
import Storage
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

    @Test("config is read member by member: a typo, a wrong type or a bad value is a 422 naming it, never a silent default")
    func typedConfiguration() throws {
        let body = Self.seedExample.merging(patch: ["authMethod": "aws_sigv4", "credentials": ["accessKeyId": "A", "secretAccessKey": "S"]])
        var errors = pointers(body.merging(patch: ["config": ["regoin": "eu-west-1", "service": "s3"]]))
        #expect(errors == ["/config/regoin": "is not a known field"])
        errors = pointers(body.merging(patch: ["config": [
            "region": "EU West", "keyLocation": "cookie", "keyHeader": "X Key", "storeBodies": "yes", "testMethod": "DELETE",
            "retry": ["maxAttempts": 50, "tries": 2], "cache": ["ttlSeconds": -1], "endpoints": ["users/{id}"],
            "oauth": ["tokenUrl": "ftp://x", "grantType": "password", "scopes": ["a"], "scope": "a"],
            "jwt": ["algorithm": "none", "audience": 5], "subjectDeletion": ["endpoint": "/users/me"],
            "headers": ["X-Account": 7],
        ]]))
        for pointer in [
            "/config/region", "/config/keyLocation", "/config/keyHeader", "/config/storeBodies", "/config/testMethod",
            "/config/retry/maxAttempts", "/config/retry/tries", "/config/cache/ttlSeconds", "/config/endpoints/0",
            "/config/oauth/tokenUrl", "/config/oauth/grantType", "/config/oauth/scope", "/config/jwt/algorithm", "/config/jwt/audience",
            "/config/subjectDeletion/endpoint", "/config/headers/X-Account",
        ] {
            #expect(errors[pointer] != nil, "\(pointer) is named")
        }
        #expect(errors.count == 16, "\(errors)")
        // The seed's OAuth names at the top level, and a credential in config, are told where they belong.
        errors = pointers(body.merging(patch: ["config": ["scope": "api", "clientSecret": "s"]]))
        #expect(errors["/config/scope"] == "belongs in config.oauth, as config.oauth.scopes")
        #expect(errors["/config/clientSecret"]?.contains("send it in credentials") == true)

        let configuration = try IntegrationConfiguration.parse([
            "region": "eu-west-1", "service": "execute-api", "keyLocation": "query", "keyParam": "key",
            "oauth": ["tokenUrl": "https://login.example/token", "grantType": "jwt_bearer", "scopes": ["a", "b"], "tokenParams": ["audience": "x"]],
            "jwt": ["algorithm": "ES256", "audience": ["x", "y"], "expiresIn": 60], "retry": ["maxAttempts": 5, "retryNonIdempotent": true],
            "cache": ["ttlSeconds": 30], "testEndpoint": "/me", "testMethod": "POST", "subjectDeletion": ["method": "post", "endpoint": "/users/{subjectId}"],
        ])
        #expect(configuration.sigV4 == .init(region: "eu-west-1", service: "execute-api"))
        #expect(configuration.apiKey.location == .query && configuration.apiKey.parameter == "key" && configuration.apiKey.header == "X-API-Key")
        #expect(configuration.oauth?.grantType == .jwtBearer && configuration.oauth?.scopes == ["a", "b"] && configuration.oauth?.clientAuth == .basic)
        #expect(configuration.oauth?.tokenParameters.map { "\($0.0)=\($0.1)" } == ["audience=x"])
        #expect(configuration.jwt?.algorithm == .es256 && configuration.jwt?.expiresIn == 60 && configuration.jwt?.audience == ["x", "y"])
        #expect(configuration.retry == .init(maxAttempts: 5, baseDelay: 200, maxDelay: 5_000, retryNonIdempotent: true))
        #expect(configuration.cache == .init(ttlSeconds: 30, endpoints: nil))
        #expect(configuration.testEndpoint == "/me" && configuration.testMethod == "POST")
        #expect(configuration.subjectDeletion == .init(method: "POST", endpoint: "/users/{subjectId}"))
        // Defaults where nothing is said.
        let empty = try IntegrationConfiguration.parse([:])
        #expect(empty == IntegrationConfiguration())
        #expect(empty.sigV4.region == "us-east-1" && empty.retry.maxAttempts == 3 && empty.testEndpoint == "/")
    }

    @Test("a stored configuration from before the check is read leniently: unknown members ignored, bad ones take their defaults")
    func storedConfiguration() {
        let stored = IntegrationConfiguration.stored(["regoin": "x", "region": "eu-west-2", "retry": ["maxAttempts": 99], "keyLocation": "cookie"])
        #expect(stored.sigV4.region == "eu-west-2")
        #expect(stored.retry.maxAttempts == 3)
        #expect(stored.apiKey.location == .header)
        #expect(IntegrationConfiguration.stored(.string("not an object")) == IntegrationConfiguration())
    }
}
