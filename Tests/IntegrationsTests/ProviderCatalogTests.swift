import Foundation
import Integrations
import PortalCore
import Storage
import Testing

@Suite("Provider catalog")
struct ProviderCatalogTests {
    /// Sample values for a preset's credentials and parameters.
    static func body(for preset: ProviderCatalog.Preset) -> JSONValue {
        let credentials = Dictionary(uniqueKeysWithValues: preset.credentialNames.map { ($0, JSONValue.string("sample-\($0)-0123456789")) })
        let parameters = Dictionary(uniqueKeysWithValues: preset.parameters.map { ($0.name, JSONValue.string($0.example ?? "sample")) })
        return ["preset": .string(preset.id), "parameters": .object(parameters), "credentials": .object(credentials)]
    }

    func fieldErrors(_ body: () throws -> Void) -> [String: String] {
        do {
            try body()
            return [:]
        } catch let error as PortalError {
            #expect(error.code == .validationFailed)
            return Dictionary(error.fieldErrors.map { ($0.pointer, $0.message) }, uniquingKeysWith: { a, _ in a })
        } catch {
            Issue.record("unexpected \(error)")
            return [:]
        }
    }

    @Test("the built-in catalog has the seed's providers, one per other category, and GitHub, Stripe and HubSpot")
    func coverage() throws {
        let catalog = try ProviderCatalog.builtIn()
        let ids = Set(catalog.providers.map(\.id))
        let named = [
            "okta", "auth0", "azure-ad", "active-directory", "aws-s3", "google-cloud-storage", "azure-blob-storage", "dropbox-business",
            "google-analytics", "mixpanel", "amplitude", "sendgrid", "twilio", "slack", "microsoft-teams", "salesforce", "github", "stripe", "hubspot",
        ]
        #expect(Set(named).subtracting(ids).isEmpty, "missing \(Set(named).subtracting(ids).sorted())")
        let categories = Set(catalog.providers.map(\.category))
        for category in ["Vulnerability scanner", "SIEM", "Threat intelligence", "Compliance tool", "ERP", "HR system", "Document management", "Custom analytics"] {
            #expect(categories.contains(category), "no preset for \(category)")
        }
        #expect(Set(catalog.providers.map(\.type)) == Set(IntegrationType.allCases))
    }

    @Test("every preset expands, with its sample credentials and parameters, into a valid integration with no placeholder left")
    func everyPresetIsValid() throws {
        let catalog = try ProviderCatalog.builtIn()
        let grants: Set<String> = ["client_credentials", "authorization_code", "jwt_bearer"]
        for preset in catalog.providers {
            let expanded = try catalog.expand(Self.body(for: preset))
            let input = try IntegrationInput.parse(expanded)
            #expect(input.type == preset.type && input.authMethod == preset.authMethod, "\(preset.id)")
            #expect(!JSONValue.encodeText(expanded).contains("{{") || preset.authMethod == .custom, "\(preset.id) keeps a placeholder")
            #expect(input.config.objectValue?["preset"] == .string(preset.id))
            #expect(input.config.objectValue?["testEndpoint"]?.stringValue?.isEmpty == false, "\(preset.id) has no test endpoint")
            #expect(input.rateLimits != nil, "\(preset.id) has no rate limits")
            #expect(URL(string: input.baseURL)?.scheme == "https", "\(preset.id): \(input.baseURL)")
            if let oauth = input.config.objectValue?["oauth"]?.objectValue {
                #expect(oauth["tokenUrl"]?.stringValue.flatMap(URL.init(string:))?.scheme == "https", "\(preset.id)")
                #expect(grants.contains(oauth["grantType"]?.stringValue ?? "client_credentials"), "\(preset.id)")
                #expect(["basic", "post", "private_key_jwt"].contains(oauth["clientAuth"]?.stringValue ?? "basic"), "\(preset.id)")
                if oauth["grantType"] == "authorization_code" { #expect(oauth["authorizationUrl"] != nil, "\(preset.id)") }
            }
        }
    }

    @Test("a preset needs only credentials and parameters; given fields win; config merges")
    func expansion() throws {
        let catalog = try ProviderCatalog.builtIn()
        let body: JSONValue = [
            "preset": "okta", "parameters": ["domain": "acme.okta.com"], "name": "Okta (production)",
            "credentials": ["clientId": "0oa123", "privateKey": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----"],
            "config": ["oauth": ["scopes": ["okta.users.read"]]],
        ]
        let input = try IntegrationInput.parse(try catalog.expand(body))
        #expect(input.name == "Okta (production)" && input.type == .identityProvider && input.authMethod == .oauth2)
        #expect(input.baseURL == "https://acme.okta.com/api/v1")
        let oauth = input.config.objectValue?["oauth"]?.objectValue ?? [:]
        #expect(oauth["tokenUrl"] == "https://acme.okta.com/oauth2/v1/token" && oauth["clientAuth"] == "private_key_jwt")
        #expect(oauth["scopes"] == ["okta.users.read"], "the given scopes replace the preset's")
        #expect(input.credentials["clientId"] == "0oa123")

        // A body without a preset is left alone.
        #expect(try catalog.expand(["name": "x"]) == ["name": "x"])
    }

    @Test("unknown presets, missing or unsafe parameters and missing credentials are 422s naming the field")
    func refusals() throws {
        let catalog = try ProviderCatalog.builtIn()
        #expect(fieldErrors { _ = try catalog.expand(["preset": "nope", "credentials": [:]]) }.keys.sorted() == ["/preset"])
        #expect(fieldErrors { _ = try catalog.expand(["preset": "aws-s3", "credentials": ["accessKeyId": "a", "secretAccessKey": "b"], "parameters": ["bucket": "b"]]) }
            .keys.sorted() == ["/parameters/region"])
        let unsafe = fieldErrors { _ = try catalog.expand(["preset": "okta", "credentials": ["clientId": "a", "privateKey": "k"], "parameters": ["domain": "evil.example/x?"]]) }
        #expect(unsafe["/parameters/domain"]?.contains("only letters") == true)
        let unknown = fieldErrors { _ = try catalog.expand(["preset": "stripe", "credentials": ["apiKey": "k"], "parameters": ["region": "x"]]) }
        #expect(unknown.keys.sorted() == ["/parameters/region"])
        #expect(fieldErrors { _ = try catalog.expand(["preset": "okta", "credentials": ["clientId": "a"], "parameters": ["domain": "acme.okta.com"]]) }
            .keys.sorted() == ["/credentials/privateKey"])
    }

    @Test("a catalog file with an undeclared placeholder, an unknown auth method or a duplicate id is refused with the place")
    func badCatalogs() {
        func message(_ yaml: String) -> String? {
            do {
                _ = try ProviderCatalog(yaml: yaml, source: "test.yaml")
                return nil
            } catch {
                return error.message
            }
        }
        let good = """
            version: 1
            providers:
              - {id: a, name: A, type: analytics, category: C, authMethod: api_key, credentials: [{name: apiKey, label: K}], baseUrl: "https://{{host}}", parameters: [{name: host, label: H}]}
            """
        #expect(message(good) == nil)
        #expect(message(good.replacingOccurrences(of: "{{host}}", with: "{{hots}}"))?.contains("{{hots}}") == true)
        #expect(message(good.replacingOccurrences(of: "api_key", with: "smoke_signals"))?.contains("authMethod") == true)
        #expect(message(good + "\n" + good.split(separator: "\n").last!)?.contains("twice") == true)
        #expect(message("version: 1\nproviders: [")?.contains("not valid YAML") == true)
        #expect(message(good.replacingOccurrences(of: "credentials: [{name: apiKey, label: K}]", with: "credentials: []"))?.contains("credentials") == true)
    }
}
