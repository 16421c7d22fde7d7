import Foundation
import PortalCore
import Sync
import Testing

@Suite("Sync configuration, pagination and mapping")
struct SyncConfigurationTests {
    @Test("the issue's syncConfig is read with defaults, and stored back in the same shape")
    func readsConfiguration() throws {
        let config = try SyncConfiguration.parse([
            "entities": [
                "users": [
                    "endpoint": "/users", "itemsPath": "/data", "idField": "id", "subjectIdField": "email", "updatedSinceParam": "updated_since",
                    "pagination": ["style": "cursor", "cursorParam": "after", "nextCursorPath": "/meta/next"],
                    "mapping": ["email": "/email", "name": "/profile/name", "seats": ["from": "/seats", "type": "integer"]],
                ],
                "groups": ["endpoint": "/groups", "pagination": ["style": "page", "pageParam": "p", "pageSizeParam": "per_page", "pageSize": 100]],
                "events": ["endpoint": "/events", "pagination": ["style": "link"]],
            ],
            "schedule": ["intervalSeconds": 3600],
            "conflictResolution": ["strategy": "merge", "rules": [["field": "plan", "condition": "source.updated_at > destination.updated_at", "action": "overwrite"]]],
        ])
        let users = try #require(config.entities["users"])
        #expect(users.pagination.style == .cursor && users.pagination.cursorParam == "after" && users.pagination.nextCursorPath == "/meta/next")
        #expect(users.updatedField == "updated_at" && users.subjectIdField == "email")
        #expect(config.entities["groups"]?.itemsPath == "" && config.entities["groups"]?.idField == "id")
        #expect(config.intervalSeconds == 3600)
        #expect(config.conflicts.strategy == .merge && config.conflicts.rules.count == 1)
        #expect(try SyncConfiguration.parse(config.json) == config, "the stored form reads back the same")
    }

    @Test("a bad syncConfig is one 422 naming every field")
    func refusesBadConfiguration() {
        do {
            _ = try SyncConfiguration.parse([
                "entities": [
                    "users": ["endpoint": "users", "itemsPath": "data", "pagination": ["style": "page"], "mapping": ["a..b": "/x", "c": "nope", "d": 5]],
                    "bad name": ["endpoint": "/x"],
                ],
                "schedule": ["intervalSeconds": 5],
                "conflictResolution": ["strategy": "merge", "rules": [["field": "x", "condition": "source.x >", "action": "overwrite"]]],
                "extra": true,
            ])
            Issue.record("accepted")
        } catch {
            let pointers = Set(error.fieldErrors.map(\.pointer))
            #expect(pointers == [
                "/syncConfig/entities/users/endpoint", "/syncConfig/entities/users/itemsPath", "/syncConfig/entities/users/pagination/pageSize",
                "/syncConfig/entities/users/mapping/a..b", "/syncConfig/entities/users/mapping/c", "/syncConfig/entities/users/mapping/d",
                "/syncConfig/entities/bad name", "/syncConfig/schedule/intervalSeconds", "/syncConfig/conflictResolution/rules/0/condition", "/syncConfig/extra",
            ])
        }
    }

    @Test("cursor pagination follows the next cursor until it is absent")
    func cursorPages() {
        var p = Pagination(style: .cursor)
        p.cursorParam = "after"
        p.nextCursorPath = "/meta/next"
        p.pageSizeParam = "limit"
        p.pageSize = 2
        #expect(p.firstQuery().map { "\($0.0)=\($0.1)" } == ["limit=2"])
        let next = p.next(after: ["data": [1, 2], "meta": ["next": "c2"]], headers: [], itemCount: 2, current: [("limit", "2")])
        #expect(next == .query([("limit", "2"), ("after", "c2")]))
        #expect(p.next(after: ["data": [1, 2], "meta": ["next": "c3"]], headers: [], itemCount: 2, current: [("limit", "2"), ("after", "c2")]) == .query([("limit", "2"), ("after", "c3")]))
        #expect(p.next(after: ["data": [1], "meta": ["next": nil]], headers: [], itemCount: 1, current: []) == nil)
        #expect(p.next(after: ["data": [], "meta": ["next": "loop"]], headers: [], itemCount: 0, current: []) == nil, "an empty page ends the list")
    }

    @Test("page pagination counts pages until a short one")
    func numberedPages() {
        var p = Pagination(style: .page)
        p.pageParam = "p"
        p.pageSize = 3
        p.pageSizeParam = "per_page"
        #expect(p.firstQuery().map { "\($0.0)=\($0.1)" } == ["p=1", "per_page=3"])
        #expect(p.next(after: [], headers: [], itemCount: 3, current: [("p", "1"), ("per_page", "3")]) == .query([("per_page", "3"), ("p", "2")]))
        #expect(p.next(after: [], headers: [], itemCount: 2, current: [("p", "2"), ("per_page", "3")]) == nil)
    }

    @Test("Link headers: rel=next among several links, quoted and unquoted, several values")
    func linkHeaders() {
        let p = Pagination(style: .link)
        let header = #"<https://api.example.test/users?page=1>; rel="first", <https://api.example.test/users?page=3&a=1,2>; rel="next last"; title="x, y""#
        #expect(p.next(after: [], headers: [("Link", header)], itemCount: 10, current: []) == .url("https://api.example.test/users?page=3&a=1,2"))
        #expect(LinkHeader.target(rel: "next", in: [#"<https://a.test/1>; rel=prev"#, #"<https://a.test/2>; REL=NEXT"#]) == "https://a.test/2")
        #expect(LinkHeader.target(rel: "next", in: [#"<https://a.test/1>; rel="prev""#]) == nil)
        #expect(p.next(after: [], headers: [], itemCount: 10, current: []) == nil)
    }

    @Test("mapping renames, nests and converts; an unconvertible value rejects the record")
    func mapping() throws {
        let config = try SyncConfiguration.parse([
            "entities": ["users": ["endpoint": "/users", "mapping": [
                "email": "/contact/email", "address.city": "/city", "seats": ["from": "/seats", "type": "integer"],
                "active": ["from": "/active", "type": "boolean"], "since": ["from": "/created", "type": "timestamp"], "code": ["from": "/code", "type": "string"],
            ]]],
        ])
        let mapping = try #require(config.entities["users"]?.mapping)
        let record = try mapping.apply(to: ["contact": ["email": "ada@example.test"], "city": "London", "seats": "42", "active": "yes", "created": 1_795_000_000, "code": 7])
        #expect(record == [
            "email": "ada@example.test", "address": ["city": "London"], "seats": 42, "active": true, "since": "2026-11-18T11:06:40.000000Z", "code": "7",
        ])
        #expect(try mapping.apply(to: ["city": "Paris"]) == ["address": ["city": "Paris"]], "missing fields are left out")
        #expect(throws: FieldMapping.Failure.self) { try mapping.apply(to: ["seats": "many"]) }
        #expect(config.entities["users"]?.recordID(of: ["id": 12]) == "12")
        #expect(config.entities["users"]?.recordID(of: ["id": ""]) == nil)
    }
}
