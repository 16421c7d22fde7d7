import Foundation
import Hummingbird
import Ledger
import Monitoring
import PortalCore
import Storage
import Synchronization

/// The ledger's read side for auditors under `/ledger/{slug}/` (DESIGN section 4.2): the checkpoint, tlog
/// tiles and entry bundles with the exact bytes an offline copy holds, plus JSON entries and proofs.
struct LedgerRoutes {
    let checkpointer: LedgerCheckpointer
    let database: Database
    let ledgerReader: LedgerReader
    let verification: LedgerVerificationRun
    /// Published checkpoints the ledger is held to (`PORTAL_CHECKPOINT_DIR`), as `LedgerWatch` is.
    let publishedDirectory: String?
    /// Organizations with a verification running on this instance: one each at a time.
    let verifying = VerificationsInFlight()

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let reader = self.ledgerReader
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/checkpoint", .readLedger) { _, context, principal in
            let org = try await organization(context, principal)
            guard let checkpoint = try await latestOrCut(org, principal.organizationSlug) else { throw PortalError.notFound("checkpoint (the ledger is empty)") }
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: checkpoint.note))
            )
        }
        table.guarded(group, prefix: "/ledger", .post, "/{slug}/verifications", .readLedger) { _, context, principal in
            let org = try await organization(context, principal)
            guard verifying.begin(org) else {
                throw PortalError(.conflict, "a verification of this ledger is already running; its result will be the latest")
            }
            defer { verifying.end(org) }
            let start = ContinuousClock.now
            let result = try await verification.verify(
                organizationID: org, slug: principal.organizationSlug, publishedDirectory: publishedDirectory,
                actor: principal.tokenID.uuidString.lowercased()
            )
            let elapsed = ContinuousClock.now - start
            var answer: [String: JSONValue] = [
                "passed": .bool(result.passed), "size": .int(result.size), "root": .string(Data(result.root).base64EncodedString()),
                "checkpointsChecked": .int(Int64(result.checkpointsChecked)),
                "milliseconds": .int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000),
            ]
            if let failure = result.failure { answer["failure"] = ["seq": .int(failure.seq), "message": .string(failure.message)] }
            return JSONOutput.response(JSONValue.object(answer))
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/keys", .readLedger) { _, context, principal in
            _ = try await organization(context, principal)
            let keys = try await self.checkpointer.verifierKeys(slug: principal.organizationSlug)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: keys.map(\.text).joined(separator: "\n") + "\n"))
            )
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/tile/**", .readLedger, documentedPath: "/{slug}/tile/{path}") { _, context, principal in
            let org = try await organization(context, principal)
            let request = try Tiles.parse(context.parameters.getCatchAll().joined(separator: "/"))
            let data: Data?
            if let level = request.level {
                data = try await reader.tile(org, level: level, index: request.index, width: request.width)
            } else {
                data = try await reader.entryBundle(org, index: request.index, width: request.width)
            }
            guard let data else { throw PortalError.notFound("tile") }
            return Response(
                status: .ok,
                headers: [.contentType: "application/octet-stream", .cacheControl: "public, max-age=31536000, immutable"],
                body: .init(byteBuffer: ByteBuffer(bytes: data))
            )
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/entries", .readLedger) { request, context, principal in
            let org = try await organization(context, principal)
            let from = try request.queryInteger("from", default: 0, in: 0...Int.max)
            let limit = try request.queryInteger("limit", default: 100, in: 1...1000)
            let rows = try await reader.entries(org, from: Int64(from), limit: limit + 1)
            var items: [JSONValue] = []
            for row in rows.prefix(limit) { items.append(try Self.entryJSON(row)) }
            var body: [String: JSONValue] = ["entries": .array(items)]
            if rows.count > limit, let next = rows.last?.seq { body["nextFrom"] = .int(next) }
            return JSONOutput.response(JSONValue.object(body))
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/entries/{seq}", .readLedger) { _, context, principal in
            let org = try await organization(context, principal)
            guard let seqText = context.parameters.get("seq"), let seq = Int64(seqText), seq >= 0 else { throw PortalError.notFound("entry") }
            guard let row = try await reader.entries(org, from: seq, limit: 1).first, row.seq == seq else { throw PortalError.notFound("entry") }
            var checkpoint = try await reader.latestCheckpoint(org)
            if checkpoint.map({ $0.size <= seq }) ?? true {
                checkpoint = try await self.checkpointer.cut(organizationID: org, slug: principal.organizationSlug)
            }
            guard let checkpoint, checkpoint.size > seq else { throw PortalError(.unavailable, "no checkpoint covers this entry yet; retry shortly") }
            let proof = try await reader.inclusionProof(org, seq: seq, size: checkpoint.size)
            var body = try Self.entryJSON(row)
            if case .object(var members) = body {
                members["treeSize"] = .int(checkpoint.size)
                members["inclusionProof"] = .array(proof.map { .string(Data($0).base64EncodedString()) })
                members["checkpoint"] = .string(checkpoint.note)
                body = .object(members)
            }
            return JSONOutput.response(body)
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/proofs/consistency", .readLedger) { request, context, principal in
            let org = try await organization(context, principal)
            guard let latest = try await latestOrCut(org, principal.organizationSlug) else { throw PortalError.notFound("checkpoint (the ledger is empty)") }
            let to = Int64(try request.queryInteger("to", default: Int(latest.size), in: 1...Int.max))
            let from = Int64(try request.queryInteger("from", default: 1, in: 1...Int.max))
            guard from <= to else {
                throw PortalError.validation([.init(pointer: "?from", message: "must not exceed to (\(to))")])
            }
            guard let head = try await reader.head(org), to <= head.size else {
                throw PortalError.validation([.init(pointer: "?to", message: "is larger than the ledger")])
            }
            let proof = try await reader.consistencyProof(org, old: from, new: to)
            var body: [String: JSONValue] = [
                "from": .int(from), "to": .int(to), "proof": .array(proof.map { .string(Data($0).base64EncodedString()) }),
            ]
            if to == latest.size { body["checkpoint"] = .string(latest.note) }
            return JSONOutput.response(JSONValue.object(body))
        }
        table.guarded(group, prefix: "/ledger", .get, "/{slug}/export", .readLedger) { _, context, principal in
            let org = try await organization(context, principal)
            let slug = principal.organizationSlug
            var checkpoint = try await self.checkpointer.cut(organizationID: org, slug: slug)
            if checkpoint == nil { checkpoint = try await reader.latestCheckpoint(org) }
            guard let checkpoint else {
                throw PortalError.notFound("checkpoint (the ledger is empty)")
            }
            let keys = try await self.checkpointer.verifierKeys(slug: slug)
            let exporter = LedgerExporter(database: self.database)
            let published = self.checkpointer.configuration.publishDirectory
            let body = ResponseBody { writer in
                _ = try await exporter.export(
                    organizationID: org, checkpoint: checkpoint, keys: keys, publishedDirectory: published, slug: slug
                ) { chunk in try await writer.write(ByteBuffer(bytes: chunk)) }
                try await writer.finish(nil)
            }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/zstd",
                    .contentDisposition: "attachment; filename=\"\(slug)-ledger-\(checkpoint.size).tar.zst\"",
                    .cacheControl: "no-store",
                ],
                body: body
            )
        }
        table.guarded(group, prefix: "/ledger", .post, "/{slug}/checkpoints", .readLedger) { _, context, principal in
            let org = try await organization(context, principal)
            // Another cutter (the checkpoint service, another instance) holds the ledger's checkpoint lock for
            // milliseconds: wait for it rather than answer 409.
            guard let row = try await self.checkpointer.cutWaiting(organizationID: org, slug: principal.organizationSlug) else {
                throw PortalError(.conflict, "the ledger is empty, or another instance kept cutting a checkpoint; retry shortly")
            }
            return JSONOutput.response(JSONValue.object([
                "size": .int(row.size), "root": .string(Data(row.root).base64EncodedString()), "note": .string(row.note),
            ]), status: .created)
        }
    }

    /// The caller's organization when `{slug}` names it; 404 otherwise (flagged when the slug is another
    /// organization's, so the attempt is ledgered).
    private func organization(_ context: PortalRequestContext, _ principal: Principal) async throws -> UUID {
        let slug = context.parameters.get("slug") ?? ""
        guard slug == principal.organizationSlug else {
            let exists = try await self.database.read { db in try await OrganizationStore(db).find(slug: slug) != nil }
            throw PortalError.notFound("ledger", acrossOrganizations: exists)
        }
        return principal.organizationID
    }

    private func latestOrCut(_ org: UUID, _ slug: String) async throws -> LedgerCheckpointRow? {
        if let latest = try await self.ledgerReader.latestCheckpoint(org) { return latest }
        return try await self.checkpointer.cut(organizationID: org, slug: slug)
    }

    static func entryJSON(_ row: LedgerEntryRow) throws -> JSONValue {
        let entry = try JSONValue.parse(Data(row.bytes))
        return ["seq": .int(row.seq), "hash": .string(Hex.encode(row.hash)), "entry": entry]
    }
}

/// The organizations whose ledger this instance is verifying (a bound: one verification each at a time).
final class VerificationsInFlight: Sendable {
    private let running = Mutex<Set<UUID>>([])

    func begin(_ organization: UUID) -> Bool { running.withLock { $0.insert(organization).inserted } }

    func end(_ organization: UUID) { _ = running.withLock { $0.remove(organization) } }
}
