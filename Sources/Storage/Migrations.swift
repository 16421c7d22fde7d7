import Foundation
package import Logging
import PortalCore
import SQLKit

/// One versioned schema change, written once for both dialects.
///
/// The DDL uses type tokens that become the dialect's types: `{uuid}` (UUID / TEXT), `{json}`
/// (JSONB / TEXT), `{time}` (TIMESTAMPTZ / REAL seconds since 1970), `{bool}` (BOOLEAN / INTEGER) and
/// `{blob}` (BYTEA / BLOB).
/// Statements that differ beyond types list a per-dialect variant.
struct Migration: Sendable {
    var version: Int
    var name: String
    var statements: @Sendable (Database.Dialect) -> [String]
    /// Rows the migration inserts, after its statements, in the same transaction.
    var seed: (@Sendable (any SQLDatabase) async throws -> Void)? = nil
}

/// Applies the migrations the database has not seen yet, in order, each in its own transaction.
package struct Migrator: Sendable {
    private let database: Database
    private let logger: Logger

    package init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    /// The highest migration version this build knows.
    package static var latestVersion: Int { Schema.migrations.map(\.version).max() ?? 0 }

    /// Brings the schema up to date and returns the versions applied now (empty when it already was).
    ///
    /// Safe to run from several processes at once: PostgreSQL takes a transaction-scoped advisory lock,
    /// SQLite's `BEGIN IMMEDIATE` holds the file's write lock, and each migration re-checks its version
    /// inside the transaction.
    @discardableResult
    package func migrate() async throws -> [Int] {
        let dialect = database.dialect
        try await database.write { db in
            try await AdvisoryLock.migrations.take(in: db)
            try await db.raw(SQLQueryString(Schema.expand("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                  version INTEGER PRIMARY KEY,
                  name TEXT NOT NULL,
                  applied_at {time} NOT NULL
                )
                """, for: dialect))).run()
        }
        var applied: [Int] = []
        for migration in Schema.migrations.sorted(by: { $0.version < $1.version }) {
            let didApply = try await database.write { db -> Bool in
                try await AdvisoryLock.migrations.take(in: db)
                let existing = try await db.raw(
                    "SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)"
                ).first()
                if existing != nil { return false }
                for statement in migration.statements(dialect) {
                    try await db.raw(SQLQueryString(Schema.expand(statement, for: dialect))).run()
                }
                try await migration.seed?(db.sql)
                try await db.raw("""
                    INSERT INTO schema_migrations (version, name, applied_at)
                    VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Date()))
                    """).run()
                return true
            }
            if didApply {
                logger.info("applied migration", metadata: [
                    "portal.migration": "\(migration.version)", "portal.migration_name": "\(migration.name)",
                ])
                applied.append(migration.version)
            }
        }
        return applied
    }

    /// The highest version applied to the database, or 0 for a new one.
    package func currentVersion() async throws -> Int {
        try await database.read { db in
            let exists: Bool
            switch database.dialect {
            case .sqlite:
                exists = try await db.raw(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
                ).first() != nil
            case .postgres:
                exists = try await db.raw(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'"
                ).first() != nil
            }
            guard exists else { return 0 }
            let row = try await db.raw("SELECT MAX(version) AS v FROM schema_migrations").first()
            return try row?.decodeNil(column: "v") == false ? try row?.decode(column: "v", as: Int.self) ?? 0 : 0
        }
    }
}

/// The schema, as the ordered list of migrations.
enum Schema {
    static func expand(_ ddl: String, for dialect: Database.Dialect) -> String {
        let types: [(String, String)] = switch dialect {
        case .postgres: [("{uuid}", "UUID"), ("{json}", "JSONB"), ("{time}", "TIMESTAMPTZ"), ("{bool}", "BOOLEAN"), ("{blob}", "BYTEA")]
        case .sqlite: [("{uuid}", "TEXT"), ("{json}", "TEXT"), ("{time}", "REAL"), ("{bool}", "INTEGER"), ("{blob}", "BLOB")]
        }
        return types.reduce(ddl) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "organizations, tokens, keys, integrations and the seed's tables") { dialect in
            var statements = [
                """
                CREATE TABLE organizations (
                  id {uuid} PRIMARY KEY,
                  slug TEXT NOT NULL UNIQUE,
                  name TEXT NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
                """
                CREATE TABLE api_tokens (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  token_hash TEXT NOT NULL UNIQUE,
                  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'compliance', 'auditor')),
                  owner TEXT NOT NULL,
                  description TEXT,
                  created_by {uuid},
                  created_at {time} NOT NULL,
                  expires_at {time},
                  revoked_at {time},
                  last_used_at {time}
                )
                """,
                "CREATE INDEX api_tokens_org ON api_tokens (organization_id, id)",
                """
                CREATE TABLE data_keys (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  created_at {time} NOT NULL
                )
                """,
                "CREATE INDEX data_keys_org ON data_keys (organization_id, id)",
                """
                CREATE TABLE data_key_wraps (
                  data_key_id {uuid} NOT NULL REFERENCES data_keys(id),
                  master_key_id TEXT NOT NULL,
                  wrapped TEXT NOT NULL,
                  created_at {time} NOT NULL,
                  PRIMARY KEY (data_key_id, master_key_id)
                )
                """,
                """
                CREATE TABLE integrations (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  name TEXT NOT NULL CHECK (length(name) <= 255),
                  type TEXT NOT NULL,
                  base_url TEXT CHECK (length(base_url) <= 500),
                  auth_method TEXT NOT NULL,
                  credentials {json} NOT NULL,
                  config {json} NOT NULL DEFAULT '{}',
                  rate_limits {json},
                  webhook_config {json},
                  sync_config {json},
                  status TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('active', 'inactive', 'error', 'pending')),
                  error_message TEXT,
                  last_sync {time},
                  created_by {uuid},
                  created_at {time} NOT NULL,
                  updated_at {time} NOT NULL,
                  deleted_at {time}
                )
                """,
                "CREATE INDEX integrations_org ON integrations (organization_id, id)",
                "CREATE UNIQUE INDEX integrations_org_name ON integrations (organization_id, name) WHERE deleted_at IS NULL",
                """
                CREATE TABLE integration_requests (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  method TEXT NOT NULL CHECK (length(method) <= 10),
                  endpoint TEXT NOT NULL CHECK (length(endpoint) <= 500),
                  request_body {json},
                  response_status INTEGER,
                  response_body {json},
                  duration_ms INTEGER,
                  error_message TEXT,
                  created_at {time} NOT NULL
                )
                """,
                "CREATE INDEX integration_requests_integration ON integration_requests (integration_id, id)",
                """
                CREATE TABLE webhook_events (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  event_type TEXT NOT NULL CHECK (length(event_type) <= 100),
                  payload {json} NOT NULL,
                  signature TEXT CHECK (length(signature) <= 255),
                  status TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'failed', 'retrying')),
                  retry_count INTEGER NOT NULL DEFAULT 0,
                  error_message TEXT,
                  processed_at {time},
                  created_at {time} NOT NULL
                )
                """,
                "CREATE INDEX webhook_events_integration ON webhook_events (integration_id, id)",
                """
                CREATE TABLE sync_jobs (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  sync_type TEXT NOT NULL CHECK (length(sync_type) <= 50),
                  status TEXT NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
                  records_processed INTEGER NOT NULL DEFAULT 0,
                  records_total INTEGER,
                  error_message TEXT,
                  started_at {time} NOT NULL,
                  completed_at {time}
                )
                """,
                "CREATE INDEX sync_jobs_integration ON sync_jobs (integration_id, id)",
            ]
            // An organization's slug names its ledger origin and webhook paths: it never changes.
            switch dialect {
            case .sqlite:
                statements.append("""
                    CREATE TRIGGER organizations_slug_immutable BEFORE UPDATE OF slug ON organizations
                    WHEN NEW.slug IS NOT OLD.slug
                    BEGIN SELECT RAISE(ABORT, 'an organization slug is immutable'); END
                    """)
            case .postgres:
                statements.append("""
                    CREATE FUNCTION organizations_slug_immutable() RETURNS trigger AS $$
                    BEGIN
                      IF NEW.slug IS DISTINCT FROM OLD.slug THEN
                        RAISE EXCEPTION 'an organization slug is immutable';
                      END IF;
                      RETURN NEW;
                    END $$ LANGUAGE plpgsql
                    """)
                statements.append("""
                    CREATE TRIGGER organizations_slug_immutable BEFORE UPDATE ON organizations
                    FOR EACH ROW EXECUTE FUNCTION organizations_slug_immutable()
                    """)
            }
            return statements
        },
        Migration(version: 2, name: "the audit ledger: entries, tiles, heads, checkpoints, signing keys, outbox", statements: { _ in
            [
                """
                CREATE TABLE ledger_heads (
                  organization_id {uuid} PRIMARY KEY REFERENCES organizations(id),
                  size BIGINT NOT NULL,
                  root {blob} NOT NULL,
                  last_hash {blob} NOT NULL,
                  updated_at {time} NOT NULL
                )
                """,
                """
                CREATE TABLE ledger_entries (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  seq BIGINT NOT NULL,
                  entry {blob} NOT NULL,
                  hash {blob} NOT NULL,
                  PRIMARY KEY (organization_id, seq)
                )
                """,
                """
                CREATE TABLE ledger_tiles (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  level INTEGER NOT NULL,
                  idx BIGINT NOT NULL,
                  hashes {blob} NOT NULL,
                  PRIMARY KEY (organization_id, level, idx)
                )
                """,
                """
                CREATE TABLE ledger_checkpoints (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  size BIGINT NOT NULL,
                  root {blob} NOT NULL,
                  note TEXT NOT NULL,
                  created_at {time} NOT NULL,
                  keep_reason TEXT,
                  PRIMARY KEY (organization_id, size)
                )
                """,
                """
                CREATE TABLE signing_keys (
                  id {uuid} PRIMARY KEY,
                  ed25519_public {blob} NOT NULL,
                  mldsa65_public {blob} NOT NULL,
                  sealed_private {json} NOT NULL,
                  active {bool} NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
                """
                CREATE TABLE audit_outbox (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  event {json} NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
            ]
        }, seed: { db in
            // The platform ledger records events that belong to no organization; it is a ledger like any
            // other, so it has an organizations row (its slug cannot be chosen by anyone).
            try await db.raw("""
                INSERT INTO organizations (id, slug, name, created_at)
                VALUES (\(bind: Organization.platformID), \(bind: Organization.platformSlug), 'Platform', \(bind: Date(timeIntervalSince1970: 0)))
                """).run()
        }),
        Migration(version: 3, name: "OAuth 2.0 tokens of integrations", statements: { _ in
            [
                """
                CREATE TABLE integration_tokens (
                  integration_id {uuid} PRIMARY KEY REFERENCES integrations(id),
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  sealed {json} NOT NULL,
                  token_type TEXT NOT NULL,
                  scope TEXT,
                  expires_at {time},
                  refresh_failures INTEGER NOT NULL DEFAULT 0,
                  next_attempt_at {time},
                  updated_at {time} NOT NULL
                )
                """,
            ]
        }),
        Migration(version: 4, name: "OAuth 2.0 authorization requests (state and PKCE verifier)", statements: { _ in
            [
                """
                CREATE TABLE oauth_states (
                  state_hash TEXT PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  token_id {uuid} NOT NULL,
                  sealed_verifier {json} NOT NULL,
                  redirect_uri TEXT NOT NULL,
                  expires_at {time} NOT NULL,
                  used_at {time}
                )
                """,
            ]
        }),
        Migration(version: 5, name: "webhook endpoints, the webhook queue, and the records store", statements: { _ in
            [
                """
                CREATE TABLE webhook_endpoints (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
                  scheme TEXT NOT NULL CHECK (length(scheme) <= 50),
                  events {json} NOT NULL,
                  config {json} NOT NULL,
                  sealed_secret {json} NOT NULL,
                  created_by {uuid},
                  created_at {time} NOT NULL,
                  updated_at {time} NOT NULL,
                  deleted_at {time}
                )
                """,
                "CREATE UNIQUE INDEX webhook_endpoints_name ON webhook_endpoints (organization_id, name) WHERE deleted_at IS NULL",
                "CREATE INDEX webhook_endpoints_integration ON webhook_endpoints (integration_id, id)",
                // The seed's webhook_events, with what verification, dedup and the durable queue need. `payload`
                // holds the raw body sealed by the vault.
                "ALTER TABLE webhook_events ADD COLUMN endpoint_id {uuid} REFERENCES webhook_endpoints(id)",
                "ALTER TABLE webhook_events ADD COLUMN provider_event_id TEXT",
                "ALTER TABLE webhook_events ADD COLUMN dedup_key TEXT",
                "ALTER TABLE webhook_events ADD COLUMN headers {json}",
                "ALTER TABLE webhook_events ADD COLUMN body_digest TEXT",
                "ALTER TABLE webhook_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE webhook_events ADD COLUMN available_at {time}",
                "ALTER TABLE webhook_events ADD COLUMN lease_owner TEXT",
                "ALTER TABLE webhook_events ADD COLUMN lease_until {time}",
                "ALTER TABLE webhook_events ADD COLUMN note TEXT",
                "CREATE UNIQUE INDEX webhook_events_dedup ON webhook_events (endpoint_id, dedup_key)",
                "CREATE INDEX webhook_events_queue ON webhook_events (status, available_at)",
                """
                CREATE TABLE sync_records (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  entity TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 100),
                  record_id TEXT NOT NULL CHECK (length(record_id) BETWEEN 1 AND 255),
                  data {json} NOT NULL,
                  source TEXT NOT NULL,
                  source_event_id TEXT,
                  created_at {time} NOT NULL,
                  updated_at {time} NOT NULL,
                  deleted_at {time},
                  PRIMARY KEY (integration_id, entity, record_id)
                )
                """,
            ]
        }),
        // Issue 7: sync jobs with progress, checkpoints and leases; records with their base version and local
        // edits; conflicts for review; each entity's high-water mark and each integration's schedule.
        Migration(version: 6, name: "sync engine", statements: { _ in
            [
                "ALTER TABLE sync_jobs ADD COLUMN entity TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE sync_jobs ADD COLUMN counts {json}",
                "ALTER TABLE sync_jobs ADD COLUMN checkpoint {json}",
                "ALTER TABLE sync_jobs ADD COLUMN cancel_requested {bool} NOT NULL DEFAULT FALSE",
                "ALTER TABLE sync_jobs ADD COLUMN lease_owner TEXT",
                "ALTER TABLE sync_jobs ADD COLUMN lease_until {time}",
                "ALTER TABLE sync_jobs ADD COLUMN requested_by TEXT",
                "ALTER TABLE sync_jobs ADD COLUMN since_mark TEXT",
                // One running job per integration and entity: the race guard behind the 409.
                "CREATE UNIQUE INDEX sync_jobs_running ON sync_jobs (integration_id, entity) WHERE status = 'running'",
                "ALTER TABLE sync_records ADD COLUMN source_data {json}",
                "ALTER TABLE sync_records ADD COLUMN local_modified_at {time}",
                "ALTER TABLE sync_records ADD COLUMN last_job_id {uuid}",
                "CREATE INDEX sync_records_changes ON sync_records (integration_id, entity, updated_at, record_id)",
                """
                CREATE TABLE sync_conflicts (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  entity TEXT NOT NULL,
                  record_id TEXT NOT NULL,
                  job_id {uuid},
                  source {json} NOT NULL,
                  destination {json} NOT NULL,
                  base {json},
                  flagged {json} NOT NULL,
                  status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
                  resolution {json},
                  resolved_by TEXT,
                  created_at {time} NOT NULL,
                  resolved_at {time}
                )
                """,
                "CREATE INDEX sync_conflicts_integration ON sync_conflicts (integration_id, status, id)",
                """
                CREATE TABLE sync_cursors (
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  entity TEXT NOT NULL,
                  high_water TEXT,
                  updated_at {time} NOT NULL,
                  PRIMARY KEY (integration_id, entity)
                )
                """,
                """
                CREATE TABLE sync_schedules (
                  integration_id {uuid} PRIMARY KEY REFERENCES integrations(id),
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  paused {bool} NOT NULL DEFAULT FALSE,
                  next_run_at {time},
                  updated_at {time} NOT NULL
                )
                """,
            ]
        }),
        // DESIGN 4.1: each data subject's salt (for ledger commitments) and encryption key, found by a keyed
        // hash of the subject id (`lookup`); deleting the row makes the subject's stored records unreadable.
        // Erased subjects stay suppressed by their lookup, so a later sync does not bring them back.
        Migration(version: 7, name: "subject keys", statements: { _ in
            [
                """
                CREATE TABLE subject_keys (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  lookup TEXT NOT NULL CHECK (length(lookup) = 64),
                  salt {blob} NOT NULL,
                  sealed_key {json} NOT NULL,
                  created_at {time} NOT NULL,
                  PRIMARY KEY (organization_id, lookup)
                )
                """,
                """
                CREATE TABLE erased_subjects (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  lookup TEXT NOT NULL CHECK (length(lookup) = 64),
                  erased_at {time} NOT NULL,
                  PRIMARY KEY (organization_id, lookup)
                )
                """,
            ]
        }),
        // Issue 8: monitoring. Rollups are per instance (several instances sharing a database each write
        // their own rows, and readers merge them); alert state, silences, receivers and the notification log.
        Migration(version: 8, name: "metric rollups, alert states, silences, receivers, notifications, service leases", statements: { _ in
            [
                """
                CREATE TABLE metric_rollups (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL,
                  resolution INTEGER NOT NULL CHECK (resolution IN (60, 3600)),
                  bucket_start BIGINT NOT NULL,
                  instance_id TEXT NOT NULL,
                  stats TEXT NOT NULL,
                  PRIMARY KEY (integration_id, resolution, bucket_start, instance_id)
                )
                """,
                "CREATE INDEX metric_rollups_window ON metric_rollups (organization_id, resolution, bucket_start)",
                """
                CREATE TABLE alert_states (
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  fingerprint TEXT NOT NULL,
                  rule TEXT NOT NULL,
                  labels {json} NOT NULL,
                  annotations {json} NOT NULL,
                  state TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
                  value DOUBLE PRECISION,
                  active_at {time} NOT NULL,
                  fired_at {time},
                  resolved_at {time},
                  last_seen_at {time} NOT NULL,
                  last_notified_at {time},
                  PRIMARY KEY (organization_id, fingerprint)
                )
                """,
                "CREATE INDEX alert_states_recent ON alert_states (organization_id, state, last_seen_at)",
                """
                CREATE TABLE alert_silences (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  matchers {json} NOT NULL,
                  starts_at {time} NOT NULL,
                  ends_at {time} NOT NULL,
                  comment TEXT NOT NULL,
                  created_by TEXT NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
                "CREATE INDEX alert_silences_active ON alert_silences (organization_id, ends_at)",
                """
                CREATE TABLE alert_receivers (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  name TEXT NOT NULL,
                  kind TEXT NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams', 'sendgrid')),
                  config {json} NOT NULL,
                  sealed_secrets {json} NOT NULL,
                  created_at {time} NOT NULL,
                  updated_at {time} NOT NULL,
                  UNIQUE (organization_id, name)
                )
                """,
                """
                CREATE TABLE alert_notifications (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  receiver_id {uuid} NOT NULL,
                  fingerprint TEXT NOT NULL,
                  status TEXT NOT NULL,
                  attempts INTEGER NOT NULL,
                  delivered {bool} NOT NULL,
                  http_status INTEGER,
                  error TEXT,
                  created_at {time} NOT NULL
                )
                """,
                "CREATE INDEX alert_notifications_recent ON alert_notifications (organization_id, created_at)",
                """
                CREATE TABLE service_leases (
                  name TEXT PRIMARY KEY,
                  owner TEXT NOT NULL,
                  lease_until {time} NOT NULL
                )
                """,
                """
                CREATE TABLE platform_secrets (
                  name TEXT PRIMARY KEY,
                  digest {blob} NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
                """
                CREATE TABLE ledger_verifications (
                  organization_id {uuid} PRIMARY KEY REFERENCES organizations(id),
                  passed {bool} NOT NULL,
                  size BIGINT NOT NULL,
                  message TEXT,
                  verified_at {time} NOT NULL
                )
                """,
            ]
        }),
        // Issue 9: retention periods per organization (null: keep).
        Migration(version: 9, name: "retention policies", statements: { _ in
            [
                """
                CREATE TABLE retention_policies (
                  organization_id {uuid} PRIMARY KEY REFERENCES organizations(id),
                  request_logs_days INTEGER,
                  stored_bodies_days INTEGER,
                  webhook_payloads_days INTEGER,
                  updated_by TEXT NOT NULL,
                  updated_at {time} NOT NULL
                )
                """,
            ]
        }),
        // Issue 9: GDPR Art. 30 processing metadata of each integration.
        Migration(version: 10, name: "integration processing metadata", statements: { _ in
            ["ALTER TABLE integrations ADD COLUMN processing {json}"]
        }),
        // Issue 9: evidence bundles requested over the API, built by a background service.
        Migration(version: 11, name: "reports", statements: { _ in
            [
                """
                CREATE TABLE reports (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  kind TEXT NOT NULL CHECK (kind IN ('soc2', 'gdpr')),
                  period_from TEXT NOT NULL,
                  period_to TEXT NOT NULL,
                  at_size BIGINT,
                  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
                  requested_by TEXT NOT NULL,
                  lease_owner TEXT,
                  lease_until {time},
                  error TEXT,
                  checkpoint_size BIGINT,
                  manifest_digest TEXT,
                  bundle {blob},
                  bundle_bytes BIGINT,
                  created_at {time} NOT NULL,
                  completed_at {time}
                )
                """,
                "CREATE INDEX reports_queue ON reports (status, created_at)",
                "CREATE INDEX reports_organization ON reports (organization_id, id)",
            ]
        }),
        // Issue 16: replays for schemes whose signature covers no timestamp (github, shopify, twilio, hmac,
        // shared-secret) are found by the body's SHA-256, unique per endpoint. Events already stored get it
        // too (the earliest of each endpoint and body; later copies were replays and keep none).
        Migration(version: 12, name: "webhook replay digests", statements: { _ in
            [
                "ALTER TABLE webhook_events ADD COLUMN replay_digest TEXT",
                """
                UPDATE webhook_events SET replay_digest = body_digest
                WHERE body_digest IS NOT NULL
                  AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE scheme IN ('github', 'shopify', 'twilio', 'hmac', 'shared-secret'))
                  AND NOT EXISTS (
                    SELECT 1 FROM webhook_events older
                    WHERE older.endpoint_id = webhook_events.endpoint_id AND older.body_digest = webhook_events.body_digest
                      AND (older.created_at < webhook_events.created_at OR (older.created_at = webhook_events.created_at AND older.id < webhook_events.id))
                  )
                """,
                "CREATE UNIQUE INDEX webhook_events_replay ON webhook_events (endpoint_id, replay_digest)",
            ]
        }),
        // Issue 16: keys for keyed hashes that must not change with the master key (the subject lookup), kept
        // sealed under the platform's data key, so a master-key rotation re-wraps them like every data key.
        Migration(version: 13, name: "purpose keys", statements: { _ in
            [
                """
                CREATE TABLE purpose_keys (
                  label TEXT PRIMARY KEY,
                  sealed TEXT NOT NULL,
                  created_at {time} NOT NULL
                )
                """,
            ]
        }),
        // Issue 16: data keys rotate by count and age. Each key counts the values sealed under it; keys made
        // before this migration have an unknown count (NULL), which makes them due: every organization gets
        // a fresh data key on its next write, and the old one stays for reading.
        Migration(version: 14, name: "data key seal counts", statements: { _ in
            ["ALTER TABLE data_keys ADD COLUMN sealed_count BIGINT"]
        }),
        // Issue 19: a sequencer batch's ledger writes in one round trip on PostgreSQL (LedgerStore.append).
        // It takes the ledger's advisory lock first, then checks the head, so every statement after the lock
        // sees what the previous holder committed (PL/pgSQL takes a snapshot per statement); it writes
        // nothing and answers false when the head moved. SQLite runs the same steps as statements.
        Migration(version: 15, name: "ledger append function (PostgreSQL)", statements: { dialect in
            guard dialect == .postgres else { return [] }
            return [
                """
                CREATE OR REPLACE FUNCTION portal_ledger_append(
                  p_org UUID, p_lock_class INTEGER, p_lock_text TEXT, p_expected_size BIGINT, p_expected_last BYTEA,
                  p_seqs BIGINT[], p_entries BYTEA[], p_hashes BYTEA[],
                  p_tile_levels INTEGER[], p_tile_indexes BIGINT[], p_tile_hashes BYTEA[],
                  p_size BIGINT, p_root BYTEA, p_last BYTEA, p_at TIMESTAMPTZ
                ) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
                DECLARE
                  current_size BIGINT;
                  current_last BYTEA;
                BEGIN
                  PERFORM pg_advisory_xact_lock(p_lock_class, hashtext(p_lock_text));
                  SELECT size, last_hash INTO current_size, current_last FROM ledger_heads WHERE organization_id = p_org;
                  IF NOT FOUND OR current_size <> p_expected_size OR current_last <> p_expected_last THEN
                    RETURN FALSE;
                  END IF;
                  INSERT INTO ledger_entries (organization_id, seq, entry, hash)
                    SELECT p_org, e.seq, e.entry, e.hash FROM unnest(p_seqs, p_entries, p_hashes) AS e(seq, entry, hash);
                  INSERT INTO ledger_tiles (organization_id, level, idx, hashes)
                    SELECT p_org, t.level, t.idx, t.hashes FROM unnest(p_tile_levels, p_tile_indexes, p_tile_hashes) AS t(level, idx, hashes)
                    ON CONFLICT (organization_id, level, idx) DO UPDATE SET hashes = excluded.hashes;
                  UPDATE ledger_heads SET size = p_size, root = p_root, last_hash = p_last, updated_at = p_at
                    WHERE organization_id = p_org;
                  RETURN TRUE;
                END
                $$
                """,
            ]
        }),
        // Issue 20: the web console's sessions. The cookie's secret is stored as its SHA-256 only; a session
        // acts as the API token that signed in, and ends with it.
        Migration(version: 16, name: "console sessions", statements: { _ in
            [
                """
                CREATE TABLE console_sessions (
                  id {uuid} PRIMARY KEY,
                  secret_hash TEXT NOT NULL UNIQUE,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  token_id {uuid} NOT NULL REFERENCES api_tokens(id),
                  created_at {time} NOT NULL,
                  last_seen_at {time} NOT NULL,
                  expires_at {time} NOT NULL,
                  ended_at {time},
                  end_reason TEXT
                )
                """,
                "CREATE INDEX console_sessions_token ON console_sessions (token_id, created_at)",
            ]
        }),
        // Issue 21: approvals of integrations with separation of duties, and each organization's policies.
        // `approved_digest` pins the material configuration last approved; `serving` holds that approved
        // configuration (its credentials sealed as the row's are) while a change to it waits for approval.
        // Integrations made before this migration count as approved as they are.
        Migration(version: 17, name: "integration approvals and organization policies", statements: { _ in
            [
                """
                CREATE TABLE organization_policies (
                  organization_id {uuid} PRIMARY KEY REFERENCES organizations(id),
                  policy {json} NOT NULL,
                  updated_at {time} NOT NULL,
                  updated_by TEXT NOT NULL
                )
                """,
                """
                CREATE TABLE integration_approvals (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  digest TEXT NOT NULL,
                  changed TEXT NOT NULL,
                  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'superseded')),
                  requested_by {uuid} NOT NULL,
                  requested_owner TEXT NOT NULL,
                  requested_at {time} NOT NULL,
                  decided_by {uuid},
                  decided_owner TEXT,
                  decided_at {time},
                  comment TEXT
                )
                """,
                "CREATE INDEX integration_approvals_organization ON integration_approvals (organization_id, state, id)",
                "CREATE INDEX integration_approvals_integration ON integration_approvals (integration_id, id)",
                "CREATE UNIQUE INDEX integration_approvals_one_pending ON integration_approvals (integration_id) WHERE state = 'pending'",
                "ALTER TABLE integrations ADD COLUMN approved_digest TEXT",
                "ALTER TABLE integrations ADD COLUMN serving {json}",
            ]
        }),
        // Issue 21: security reviews of integrations (the vendor's questionnaire, DPA, reviewer, next due date).
        Migration(version: 18, name: "security reviews", statements: { _ in
            [
                """
                CREATE TABLE security_reviews (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  integration_id {uuid} NOT NULL REFERENCES integrations(id),
                  answers {json} NOT NULL,
                  dpa_on_file {bool} NOT NULL,
                  dpa_reference TEXT,
                  outcome TEXT NOT NULL CHECK (outcome IN ('approved', 'approved_with_conditions', 'rejected')),
                  notes TEXT,
                  reviewer TEXT NOT NULL,
                  reviewer_token {uuid} NOT NULL,
                  reviewed_at {time} NOT NULL,
                  next_due {time} NOT NULL
                )
                """,
                "CREATE INDEX security_reviews_integration ON security_reviews (organization_id, integration_id, reviewed_at)",
            ]
        }),
        // Issue 21: ISO/IEC 27001 bundles. PostgreSQL changes the check; SQLite cannot alter one, so the table
        // is made again with it and its rows copied (the migration's transaction covers the whole of it).
        Migration(version: 19, name: "iso27001 reports", statements: { dialect in
            switch dialect {
            case .postgres:
                return [
                    "ALTER TABLE reports DROP CONSTRAINT IF EXISTS reports_kind_check",
                    "ALTER TABLE reports ADD CONSTRAINT reports_kind_check CHECK (kind IN ('soc2', 'gdpr', 'iso27001'))",
                ]
            case .sqlite:
                return [
                    """
                    CREATE TABLE reports_new (
                      id {uuid} PRIMARY KEY,
                      organization_id {uuid} NOT NULL REFERENCES organizations(id),
                      kind TEXT NOT NULL CHECK (kind IN ('soc2', 'gdpr', 'iso27001')),
                      period_from TEXT NOT NULL,
                      period_to TEXT NOT NULL,
                      at_size BIGINT,
                      status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
                      requested_by TEXT NOT NULL,
                      lease_owner TEXT,
                      lease_until {time},
                      error TEXT,
                      checkpoint_size BIGINT,
                      manifest_digest TEXT,
                      bundle {blob},
                      bundle_bytes BIGINT,
                      created_at {time} NOT NULL,
                      completed_at {time}
                    )
                    """,
                    "INSERT INTO reports_new SELECT * FROM reports",
                    "DROP TABLE reports",
                    "ALTER TABLE reports_new RENAME TO reports",
                    "CREATE INDEX reports_queue ON reports (status, created_at)",
                    "CREATE INDEX reports_organization ON reports (organization_id, id)",
                ]
            }
        }),
        // Issue 21: bulk operations on integrations, each one job with its per-item results.
        Migration(version: 20, name: "bulk jobs", statements: { _ in
            [
                """
                CREATE TABLE bulk_jobs (
                  id {uuid} PRIMARY KEY,
                  organization_id {uuid} NOT NULL REFERENCES organizations(id),
                  action TEXT NOT NULL,
                  filter {json} NOT NULL,
                  counts {json} NOT NULL,
                  items {json} NOT NULL,
                  requested_by TEXT NOT NULL,
                  created_at {time} NOT NULL,
                  completed_at {time} NOT NULL
                )
                """,
                "CREATE INDEX bulk_jobs_organization ON bulk_jobs (organization_id, id)",
            ]
        }),
    ]
}
