//! Schema migrations, applied in order at start; `PRAGMA user_version` records the last one.

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a released entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    domain TEXT NOT NULL UNIQUE,
    company TEXT NOT NULL,
    parent TEXT REFERENCES tenants(id),
    admin_name TEXT,
    admin_email TEXT,
    contact_name TEXT,
    contact_phone TEXT,
    custom_properties TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'ACTIVE',
    allow_create_tenants INTEGER NOT NULL DEFAULT 0,
    creation_time TEXT NOT NULL
);
CREATE TABLE users (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'USER',
    password_hash TEXT NOT NULL,
    email TEXT,
    first_name TEXT,
    last_name TEXT,
    display_name TEXT,
    phone TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    custom_properties TEXT NOT NULL DEFAULT '{}',
    last_password_change TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_name)
);
CREATE TABLE user_roles (
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_name, role),
    FOREIGN KEY (tenant_id, user_name) REFERENCES users(tenant_id, user_name) ON DELETE CASCADE
);
CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    custom_properties TEXT NOT NULL DEFAULT '{}',
    protected INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name)
);
CREATE TABLE group_roles (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (group_id, role)
);
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (group_id, user_name),
    FOREIGN KEY (tenant_id, user_name) REFERENCES users(tenant_id, user_name) ON DELETE CASCADE
);
CREATE TABLE applications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    availability TEXT NOT NULL DEFAULT 'PRIVATE',
    context_path TEXT,
    description TEXT,
    external_url TEXT,
    manifest TEXT,
    roles TEXT NOT NULL DEFAULT '[]',
    required_roles TEXT NOT NULL DEFAULT '[]',
    active_version_id TEXT,
    bootstrap_user TEXT,
    bootstrap_password_sealed TEXT,
    creation_time TEXT NOT NULL,
    UNIQUE (owner_tenant, name),
    UNIQUE (owner_tenant, key)
);
CREATE TABLE application_versions (
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    image_id TEXT NOT NULL,
    image_tag TEXT NOT NULL,
    package_file TEXT NOT NULL,
    manifest TEXT NOT NULL,
    upload_time TEXT NOT NULL,
    PRIMARY KEY (application_id, version)
);
CREATE TABLE options (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    category TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    encrypted INTEGER NOT NULL DEFAULT 0,
    editable INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, category, key)
);
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE subscriptions (
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    service_user TEXT NOT NULL,
    service_password_sealed TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    PRIMARY KEY (application_id, tenant_id)
);
CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id);
ALTER TABLE applications ADD COLUMN stable_version_id TEXT;
ALTER TABLE applications ADD COLUMN rollout_message TEXT;
"#,
    r#"
CREATE TABLE audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    application_id INTEGER,
    application_name TEXT,
    type TEXT NOT NULL,
    activity TEXT NOT NULL,
    text TEXT NOT NULL,
    severity TEXT NOT NULL,
    user_name TEXT NOT NULL,
    time TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_records_by_tenant ON audit_records (tenant_id, id);
CREATE INDEX audit_records_by_application ON audit_records (application_id, id);
"#,
    // Options written from a manifest's settings (a new version may replace them). Options from
    // before this column: a clear value equal to its setting's default in a subscribed
    // application's settings category counts as written from the manifest; encrypted ones
    // cannot be compared here and stay the tenant's.
    r#"
ALTER TABLE options ADD COLUMN from_manifest INTEGER NOT NULL DEFAULT 0;
UPDATE options SET from_manifest = 1
WHERE encrypted = 0 AND EXISTS (
    SELECT 1 FROM subscriptions s JOIN applications a ON a.id = s.application_id,
         json_each(a.manifest, '$.settings') j
    WHERE s.tenant_id = options.tenant_id
      AND options.category = COALESCE(json_extract(a.manifest, '$.settingsCategory'),
                                      json_extract(a.manifest, '$.contextPath'), a.name)
      AND json_extract(j.value, '$.key') = options.key
      AND json_extract(j.value, '$.defaultValue') = options.value
);
"#,
    // Credential generations: every login token carries its user's generation and is refused
    // once it moved on. The counter is global so a re-created user never gets an old value;
    // triggers move it on whatever code path changes a password, disables or creates a user.
    // Users and tokens from before keep generation 0 (their tokens stay valid until changed).
    r#"
CREATE TABLE credential_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO credential_generation (id, value) VALUES (1, 0);
ALTER TABLE users ADD COLUMN credential_generation INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER users_generation_on_insert AFTER INSERT ON users
BEGIN
    UPDATE credential_generation SET value = value + 1;
    UPDATE users SET credential_generation = (SELECT value FROM credential_generation)
    WHERE tenant_id = NEW.tenant_id AND user_name = NEW.user_name;
END;
CREATE TRIGGER users_generation_on_change AFTER UPDATE OF password_hash, enabled ON users
WHEN NEW.password_hash IS NOT OLD.password_hash OR NEW.enabled IS NOT OLD.enabled
BEGIN
    UPDATE credential_generation SET value = value + 1;
    UPDATE users SET credential_generation = (SELECT value FROM credential_generation)
    WHERE tenant_id = NEW.tenant_id AND user_name = NEW.user_name;
END;
"#,
    // Intents: operations that change Docker or the data dir besides the database (an upload's
    // image load, an application's deletion), recorded before they act and removed when done,
    // so a restart finishes or undoes what a kill interrupted. `body` is JSON (store::intents).
    r#"
CREATE TABLE intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL
);
"#,
    // The autoscaler's scale-down windows (store::autoscaler), so a restart keeps them.
    // `recommendations` is JSON: [[unix milliseconds, replicas], …].
    r#"
CREATE TABLE autoscaler_windows (
    deployment TEXT PRIMARY KEY,
    replicas INTEGER NOT NULL,
    recommendations TEXT NOT NULL
);
"#,
    // Tags on application versions (store::versions). `latest` is not stored: it is the
    // application's active version. No foreign key to the version row: an upload replaces a
    // snapshot's row (INSERT OR REPLACE), and its tags must survive that.
    r#"
CREATE TABLE application_version_tags (
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (application_id, tag)
);
"#,
    // Audit records appended per tenant (store::audit), so each tenant's own count decides
    // when its oldest records are pruned (the global record id let one tenant's appends be
    // timed so that another's never were).
    r#"
CREATE TABLE audit_appends (
    tenant_id TEXT PRIMARY KEY,
    appended INTEGER NOT NULL
);
"#,
    // The proxy resolves `/service/<segment>` by context path or name across all tenants, and a
    // logout sweeps expired revoked tokens: without these, both scanned whole tables (any
    // client naming a random service caused a scan).
    r#"
CREATE INDEX applications_by_name ON applications (name);
CREATE INDEX applications_by_context_path ON applications (context_path);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
"#,
    // The settings category each active manifest and kept version claims
    // (`store::settings::category_claim`, on every upload), looked up instead of computed from
    // every stored manifest. The expressions must stay those of the query.
    r#"
CREATE INDEX applications_by_settings_category ON applications (
    lower(COALESCE(json_extract(manifest, '$.settingsCategory'), json_extract(manifest, '$.contextPath'), name)));
CREATE INDEX application_versions_by_settings_category ON application_versions (
    lower(COALESCE(json_extract(manifest, '$.settingsCategory'), json_extract(manifest, '$.contextPath'))));
CREATE INDEX applications_by_lower_name ON applications (lower(name));
"#,
    // Whose logged-out token each row is (store::tokens), so one user's logouts are bounded.
    r#"
ALTER TABLE revoked_tokens ADD COLUMN tenant_id TEXT;
ALTER TABLE revoked_tokens ADD COLUMN user_name TEXT;
CREATE INDEX revoked_tokens_by_user ON revoked_tokens (tenant_id, user_name);
"#,
    // What is offered to every tenant (`store::subscriptions::offered`, `providedFor`
    // listings), selected without reading every tenant's applications.
    r#"
CREATE INDEX applications_by_availability ON applications (availability, owner_tenant);
"#,
    // What each kept version costs against its tenant's storage quota (`storage`), recorded
    // at upload so the quota check sums a column instead of opening every kept package
    // (NULL for versions kept before: measured from their package).
    r#"
ALTER TABLE application_versions ADD COLUMN stored_bytes INTEGER;
"#,
    // What each audit record weighs (`store::audit::record_bytes`), so a tenant's log is bounded
    // in bytes as well as in records; the index lets the prune sum them without reading rows.
    r#"
ALTER TABLE audit_records ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE audit_records SET bytes = 64 + length(CAST(type AS BLOB)) + length(CAST(activity AS BLOB))
    + length(CAST(text AS BLOB)) + length(CAST(user_name AS BLOB))
    + length(CAST(COALESCE(application_name, '') AS BLOB)) + length(CAST(details AS BLOB));
CREATE INDEX audit_records_bytes ON audit_records (tenant_id, id, bytes);
"#,
    // Whether another tenant's user did what a record says (`store::audit`): such records
    // are bounded apart from the tenant's own.
    r#"
ALTER TABLE audit_records ADD COLUMN by_other_tenant INTEGER NOT NULL DEFAULT 0;
CREATE INDEX audit_records_by_origin ON audit_records (tenant_id, by_other_tenant, id);
"#,
    // Only a microservice's subscription has a service user (`store::subscriptions`). Other
    // subscriptions recorded `service_<name>` too, which named a microservice's user of the
    // same name in that tenant: another owner's hosted application could rewrite its roles.
    r#"
UPDATE subscriptions SET service_user = '' WHERE application_id IN
    (SELECT id FROM applications WHERE type != 'MICROSERVICE');
"#,
    // The stable version's manifest as it became ready, once a re-upload of that version
    // replaced its row (`store::desired`): its instances keep running until the new upload is
    // ready, and the tenant's limits charge it meanwhile.
    r#"
ALTER TABLE applications ADD COLUMN stable_manifest TEXT;
"#,
    // Whether a version's `stored_bytes` counts its image at what Docker unpacks it to (gzip
    // layers decompressed). Versions kept before were recorded at `image.tar`'s size or not at
    // all: `apps::recount` counts them again after start and sets it; uploads record 1.
    r#"
ALTER TABLE application_versions ADD COLUMN cost_counted INTEGER NOT NULL DEFAULT 0;
"#,
];

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction together with the version bump.
pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))?
        .try_into()
        .unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "the database schema (version {current}) is newer than this berth (version {}); use a newer berth",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Applies the migrations before the one whose SQL contains `needle` (a test of that
/// migration starts from the schema before it).
#[cfg(test)]
pub(super) fn apply_before(conn: &mut Connection, needle: &str) -> Result<(), StoreError> {
    let version = MIGRATIONS
        .iter()
        .position(|sql| sql.contains(needle))
        .ok_or_else(|| StoreError::Invalid(format!("no migration contains {needle:?}")))?;
    for sql in &MIGRATIONS[..version] {
        conn.execute_batch(sql)?;
    }
    conn.pragma_update(None, "user_version", version as i64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn credential_generations_move_on_and_never_repeat() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, domain, company, creation_time) VALUES ('t1', 't1.example', 'T', 'now');",
        )
        .unwrap();
        let insert = "INSERT INTO users (tenant_id, user_name, password_hash, last_password_change, creation_time) VALUES ('t1', 'jane', 'h1', 'now', 'now')";
        let generation = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT credential_generation FROM users WHERE user_name = 'jane'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        conn.execute_batch(insert).unwrap();
        let mut seen = vec![generation(&conn)];
        let steps = [
            (
                "UPDATE users SET email = 'x' WHERE user_name = 'jane'",
                false,
            ),
            (
                "UPDATE users SET enabled = 1 WHERE user_name = 'jane'",
                false,
            ),
            (
                "UPDATE users SET password_hash = 'h2' WHERE user_name = 'jane'",
                true,
            ),
            (
                "UPDATE users SET enabled = 0 WHERE user_name = 'jane'",
                true,
            ),
            (
                "UPDATE users SET enabled = 1 WHERE user_name = 'jane'",
                true,
            ),
            ("DELETE FROM users WHERE user_name = 'jane'", false),
            (insert, true),
        ];
        for (sql, moves) in steps {
            conn.execute_batch(sql).unwrap();
            if sql.starts_with("DELETE") {
                continue;
            }
            let now = generation(&conn);
            assert_eq!(now != *seen.last().unwrap(), moves, "{sql}");
            if moves {
                assert!(!seen.contains(&now), "{sql}: {now} repeats {seen:?}");
            }
            seen.push(now);
        }
    }

    #[test]
    fn options_seeded_before_from_manifest_existed_count_as_seeded_when_they_hold_the_default() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            r#"
INSERT INTO tenants (id, domain, company, creation_time) VALUES ('t1', 't1.example', 'T', 'now');
INSERT INTO applications (id, owner_tenant, name, key, type, manifest, creation_time)
VALUES (1, 't1', 'app', 'app-key', 'MICROSERVICE',
        '{"contextPath":"ctx","settings":[{"key":"a","defaultValue":"1"},{"key":"b","defaultValue":"2"}]}', 'now');
INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time)
VALUES (1, 't1', 'service_app', 'x', 'now');
INSERT INTO options (tenant_id, category, key, value) VALUES
    ('t1', 'ctx', 'a', '1'), ('t1', 'ctx', 'b', 'edited'), ('t1', 'other', 'a', '1');
"#,
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let seeded: Vec<(String, String)> = conn
            .prepare("SELECT category, key FROM options WHERE from_manifest = 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seeded, vec![("ctx".to_owned(), "a".to_owned())]);
    }

    #[test]
    fn only_a_microservices_subscriptions_keep_a_service_user_name() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply_before(&mut conn, "SET service_user = ''").unwrap();
        conn.execute_batch(
            r#"
INSERT INTO tenants (id, domain, company, creation_time) VALUES
    ('v', 'v.example', 'V', 'now'), ('o', 'o.example', 'O', 'now');
INSERT INTO applications (id, owner_tenant, name, key, type, creation_time) VALUES
    (1, 'v', 'x', 'x-ms', 'MICROSERVICE', 'now'), (2, 'o', 'x', 'x-web', 'HOSTED', 'now');
INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time)
VALUES (1, 'v', 'service_x', 's', 'now'), (2, 'v', 'service_x', 's', 'now');
"#,
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT service_user FROM subscriptions ORDER BY application_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["service_x", ""]);
    }
}
