import Foundation
import Integrations
import PortalCore
import Testing

/// The OpenAPI document's `ProviderSettings` (an integration's `config`) and `IntegrationConfiguration`'s
/// parser name the same members: a member the parser reads is documented, and a documented member is read.
@Suite("config: the OpenAPI schema and the parser agree")
struct ConfigurationSchemaTests {
    static func schema() throws -> [String: JSONValue] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/PortalServer/Resources/openapi.json")
        let document = try JSONValue.parse(try Data(contentsOf: url))
        return try #require(document.objectValue?["components"]?.objectValue?["schemas"]?.objectValue?["ProviderSettings"]?.objectValue)
    }

    static func properties(_ schema: [String: JSONValue]) -> [String: JSONValue] {
        schema["properties"]?.objectValue ?? [:]
    }

    @Test("the top-level members are the same, and unknown ones are refused by both")
    func topLevel() throws {
        let schema = try Self.schema()
        var reader = JSONObjectReader([:], pointer: "/config", errors: ValidationErrors())
        _ = IntegrationConfiguration.read(&reader)
        #expect(Set(Self.properties(schema).keys) == reader.knownKeys)
        #expect(schema["additionalProperties"] == .bool(false))
        #expect(throws: PortalError.self) { try IntegrationConfiguration.parse(["regoin": "eu-west-1"]) }
    }

    @Test("every member the schema documents inside oauth, jwt, cache, retry and subjectDeletion is one the parser reads")
    func nested() throws {
        let schema = Self.properties(try Self.schema())
        let required: [String: JSONValue] = ["oauth": ["tokenUrl": "https://idp.example/token"], "subjectDeletion": ["endpoint": "/users/{subjectId}"]]
        for name in ["oauth", "jwt", "cache", "retry", "subjectDeletion"] {
            // `anyOf: [the object, null]`: null is the same as absent.
            let nested = try #require(schema[name]?.objectValue?["anyOf"]?.arrayValue?.first?.objectValue)
            #expect(nested["additionalProperties"] == .bool(false), "\(name)")
            for member in Self.properties(nested).keys {
                var object = required[name]?.objectValue ?? [:]
                object[member] = ["not": "this type"]
                do {
                    _ = try IntegrationConfiguration.parse([name: .object(object)])
                } catch {
                    let unknown = error.fieldErrors.filter { $0.pointer == "/config/\(name)/\(member)" && $0.message.contains("not a known field") }
                    #expect(unknown.isEmpty, "\(name).\(member) is documented but not read")
                }
            }
            var unknown = required[name]?.objectValue ?? [:]
            unknown["zzNotAMember"] = 1
            let error = #expect(throws: PortalError.self) { try IntegrationConfiguration.parse([name: .object(unknown)]) }
            #expect(error?.fieldErrors.contains { $0.pointer == "/config/\(name)/zzNotAMember" } == true, "\(name)")
        }
    }
}
