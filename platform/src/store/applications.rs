//! Applications owned by a tenant, their uploaded versions (image + package) and the bootstrap
//! user created for each microservice.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

pub use super::artifacts::Version;
use super::intents::{self, DeletionIntent, Intent};
use super::users::{self, NewUser};
use super::{Page, StoreError, conflict_on_unique, timestamp};

#[derive(Debug, Clone)]
pub struct Application {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub key: String,
    pub app_type: String,
    pub availability: String,
    pub context_path: Option<String>,
    pub description: Option<String>,
    pub external_url: Option<String>,
    pub manifest: Option<Value>,
    pub roles: Vec<String>,
    pub required_roles: Vec<String>,
    pub active_version_id: Option<String>,
    pub bootstrap_user: Option<String>,
    pub bootstrap_password_sealed: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewApplication {
    pub owner: String,
    pub name: String,
    pub key: String,
    pub app_type: String,
    pub availability: String,
    pub context_path: Option<String>,
    pub description: Option<String>,
    pub external_url: Option<String>,
    pub roles: Vec<String>,
    pub required_roles: Vec<String>,
}

/// The bootstrap user to create with a microservice; `password_sealed` is the encrypted
/// clear password (so the API can hand it out), `user.password_hash` its argon2 hash.
#[derive(Debug, Clone)]
pub struct NewBootstrapUser {
    pub user: NewUser,
    pub password_sealed: String,
}

/// Changes to an application; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ApplicationUpdate {
    pub name: Option<String>,
    pub key: Option<String>,
    pub availability: Option<String>,
    pub context_path: Option<String>,
    pub description: Option<String>,
    pub external_url: Option<String>,
    pub roles: Option<Vec<String>>,
    pub required_roles: Option<Vec<String>>,
}

/// Filters of the application list.
#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    pub name: Option<String>,
    pub app_type: Option<String>,
    pub owner: Option<String>,
}

/// What an accepted upload records.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub version: Version,
    /// What the kept package costs against the tenant's storage quota.
    pub stored_bytes: u64,
    pub manifest: Value,
    pub roles: Vec<String>,
    pub required_roles: Vec<String>,
    pub context_path: Option<String>,
    /// The upload's intent, finished in the same transaction as the record.
    pub intent: Option<i64>,
}

impl Application {
    /// What a subscriber is checked against (see [`super::subscriptions::Agreed`]).
    pub fn agreed(&self) -> super::subscriptions::Agreed {
        super::subscriptions::Agreed {
            required_roles: self.required_roles.clone(),
            manifest: self.manifest.clone(),
            availability: self.availability.clone(),
        }
    }
}

/// The validated, defaults-resolved manifest of an application (None before the first upload).
pub fn resolved_manifest(app: &Application) -> Option<manifests_schema::Manifest> {
    let text = app.manifest.as_ref()?.to_string();
    manifests_schema::validate(&text).ok().map(|v| v.manifest)
}

const COLUMNS: &str = "id, owner_tenant, name, key, type, availability, context_path, description, external_url, manifest, roles, required_roles, active_version_id, bootstrap_user, bootstrap_password_sealed";

type RawApplication = (Application, Option<String>, String, String);

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawApplication> {
    Ok((
        Application {
            id: row.get(0)?,
            owner: row.get(1)?,
            name: row.get(2)?,
            key: row.get(3)?,
            app_type: row.get(4)?,
            availability: row.get(5)?,
            context_path: row.get(6)?,
            description: row.get(7)?,
            external_url: row.get(8)?,
            manifest: None,
            roles: Vec::new(),
            required_roles: Vec::new(),
            active_version_id: row.get(12)?,
            bootstrap_user: row.get(13)?,
            bootstrap_password_sealed: row.get(14)?,
        },
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
    ))
}

fn finish((mut app, manifest, roles, required): RawApplication) -> Result<Application, StoreError> {
    app.manifest = manifest.map(|m| serde_json::from_str(&m)).transpose()?;
    app.roles = serde_json::from_str(&roles)?;
    app.required_roles = serde_json::from_str(&required)?;
    Ok(app)
}

fn duplicate_message(owner: &str, name: &str, key: &str) -> String {
    format!(
        "Application for tenant {owner} with properties ( name:{name} or key:{key} ) already exists"
    )
}

/// Most applications one tenant may own: each brings a bootstrap user, rows every listing
/// reads and, once uploaded, versions; far more than a tenant runs.
pub const MAX_PER_TENANT: i64 = 1_000;

pub fn create(
    conn: &mut Connection,
    app: &NewApplication,
    bootstrap: Option<&NewBootstrapUser>,
) -> Result<Application, StoreError> {
    let tx = conn.transaction()?;
    let owned: i64 = tx.query_row(
        "SELECT COUNT(*) FROM applications WHERE owner_tenant = ?1",
        [&app.owner],
        |r| r.get(0),
    )?;
    if owned >= MAX_PER_TENANT {
        return Err(StoreError::Invalid(format!(
            "Tenant {} owns {owned} applications, as many as one tenant may; delete some before creating more",
            app.owner
        )));
    }
    tx.execute(
        "INSERT INTO applications (owner_tenant, name, key, type, availability, context_path, description, external_url, roles, required_roles, bootstrap_user, bootstrap_password_sealed, creation_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            app.owner,
            app.name,
            app.key,
            app.app_type,
            app.availability,
            app.context_path,
            app.description,
            app.external_url,
            serde_json::to_string(&app.roles)?,
            serde_json::to_string(&app.required_roles)?,
            bootstrap.map(|b| &b.user.user_name),
            bootstrap.map(|b| &b.password_sealed),
            timestamp()
        ],
    )
    .map_err(|e| conflict_on_unique(e, || duplicate_message(&app.owner, &app.name, &app.key)))?;
    let id = tx.last_insert_rowid();
    if let Some(bootstrap) = bootstrap {
        users::create_user(&tx, &app.owner, &bootstrap.user)?;
    }
    let created = get(&tx, &app.owner, id)?;
    tx.commit()?;
    Ok(created)
}

/// The application `id` if `tenant` owns it; NotFound otherwise (other tenants' ids are not revealed).
pub fn get(conn: &Connection, tenant: &str, id: i64) -> Result<Application, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM applications WHERE id = ?1 AND owner_tenant = ?2"),
        params![id, tenant],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound(format!("Could not find application by ID {id}")))
}

/// The application `id` whoever owns it (subscriptions, the supervisor); NotFound if absent.
pub fn get_any(conn: &Connection, id: i64) -> Result<Application, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM applications WHERE id = ?1"),
        params![id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound(format!("Could not find application by ID {id}")))
}

/// The application whose bootstrap user is `user` in `tenant`, if any.
pub fn by_bootstrap_user(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> Result<Option<Application>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM applications WHERE owner_tenant = ?1 AND bootstrap_user = ?2"
        ),
        params![tenant, user],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// The ids of the applications `tenant` owns matching `filter`, in order.
pub fn owned_ids(
    conn: &Connection,
    tenant: &str,
    filter: &ApplicationFilter,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id FROM applications WHERE owner_tenant = ?1 AND (?2 IS NULL OR name = ?2)
         AND (?3 IS NULL OR type = ?3) AND (?4 IS NULL OR owner_tenant = ?4) ORDER BY id",
    )?;
    let ids = stmt
        .query_map(
            params![tenant, filter.name, filter.app_type, filter.owner],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Most versions one application keeps: each is a row with its manifest, a package on the
/// data disk and an image tag, and every upload's quota check reads every kept package.
pub const MAX_VERSIONS: i64 = 100;

/// Conflict when application `id` keeps as many versions as it may, so `version` (a new one)
/// cannot be added.
pub fn room_for_a_version(conn: &Connection, id: i64, version: &str) -> Result<(), StoreError> {
    let kept: i64 = conn.query_row(
        "SELECT COUNT(*) FROM application_versions WHERE application_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    if kept >= MAX_VERSIONS {
        return Err(StoreError::Conflict(format!(
            "Application {id} keeps {kept} versions, as many as an application may; delete versions it no longer needs (DELETE /application/applications/{id}/versions?version=…) before uploading version {version}"
        )));
    }
    Ok(())
}

/// Keeps the ids of applications that have (`has`) or have no stored version.
pub fn retain_by_versions(
    conn: &Connection,
    ids: &mut Vec<i64>,
    has: bool,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("SELECT EXISTS(SELECT 1 FROM application_versions WHERE application_id = ?1)")?;
    let mut kept = Vec::with_capacity(ids.len());
    for id in ids.drain(..) {
        if stmt.query_row([id], |r| r.get::<_, bool>(0))? == has {
            kept.push(id);
        }
    }
    *ids = kept;
    Ok(())
}

pub fn list(
    conn: &Connection,
    tenant: &str,
    filter: &ApplicationFilter,
    page: Page,
) -> Result<(Vec<Application>, u64), StoreError> {
    let clause = "owner_tenant = ?1 AND (?2 IS NULL OR name = ?2) AND (?3 IS NULL OR type = ?3) AND (?4 IS NULL OR owner_tenant = ?4)";
    let args = params![tenant, filter.name, filter.app_type, filter.owner];
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM applications WHERE {clause}"),
        args,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM applications WHERE {clause} ORDER BY id LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            tenant,
            filter.name,
            filter.app_type,
            filter.owner,
            page.limit_sql(),
            page.offset_sql()
        ],
        from_row,
    )?;
    let apps = rows.map(|r| finish(r?)).collect::<Result<Vec<_>, _>>()?;
    Ok((apps, total.try_into().unwrap_or(0)))
}

/// Applies `update` to the caller's application `id`, unless `allowed` (given the application
/// before and after, in the same transaction) refuses the result.
pub fn update(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    update: &ApplicationUpdate,
    allowed: &dyn Fn(&Connection, &Application, &Application) -> Result<(), StoreError>,
) -> Result<Application, StoreError> {
    let tx = conn.transaction()?;
    let current = get(&tx, tenant, id)?;
    let current_copy = current.clone();
    let name = update.name.clone().unwrap_or(current.name);
    let key = update.key.clone().unwrap_or(current.key);
    tx.execute(
        "UPDATE applications SET name = ?3, key = ?4, availability = ?5, context_path = ?6, description = ?7, external_url = ?8, roles = ?9, required_roles = ?10
         WHERE id = ?1 AND owner_tenant = ?2",
        params![
            id,
            tenant,
            name,
            key,
            update.availability.clone().unwrap_or(current.availability),
            update.context_path.clone().or(current.context_path),
            update.description.clone().or(current.description),
            update.external_url.clone().or(current.external_url),
            serde_json::to_string(update.roles.as_ref().unwrap_or(&current.roles))?,
            serde_json::to_string(update.required_roles.as_ref().unwrap_or(&current.required_roles))?,
        ],
    )
    .map_err(|e| conflict_on_unique(e, || duplicate_message(tenant, &name, &key)))?;
    if update.required_roles.is_some() {
        super::subscriptions::sync_service_roles(&tx, id)?;
    }
    let updated = get(&tx, tenant, id)?;
    allowed(&tx, &current_copy, &updated)?;
    tx.commit()?;
    Ok(updated)
}

/// The settings options an application's manifest wrote in its subscribers' tenants: its
/// settings category and the setting keys.
#[derive(Debug, Clone, Default)]
pub struct ManifestOptions {
    pub category: String,
    pub keys: Vec<String>,
}

/// Deletes the application, its versions, its bootstrap user, its subscriptions with their
/// service users, and the settings options its manifest wrote in the subscribers' tenants
/// (options a tenant wrote itself stay). Records, in the same transaction, the intent to
/// remove what lives outside the database (images, tags, `package_dir`); returns it.
pub fn delete(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    options: &ManifestOptions,
    package_dir: &str,
) -> Result<(i64, DeletionIntent), StoreError> {
    let tx = conn.transaction()?;
    let deleted = delete_in(&tx, tenant, id, options, package_dir)?;
    tx.commit()?;
    Ok(deleted)
}

/// [`delete`] inside the caller's transaction (a tenant's deletion deletes all its
/// applications in one).
pub fn delete_in(
    tx: &Connection,
    tenant: &str,
    id: i64,
    options: &ManifestOptions,
    package_dir: &str,
) -> Result<(i64, DeletionIntent), StoreError> {
    let app = get(tx, tenant, id)?;
    let versions = versions(tx, id)?;
    for subscriber in super::settings::subscribed_tenants(tx, id)? {
        for key in &options.keys {
            super::options::delete_seeded(tx, &subscriber, &options.category, key)?;
        }
    }
    if let Some(user) = &app.bootstrap_user {
        tx.execute(
            "DELETE FROM users WHERE tenant_id = ?1 AND user_name = ?2",
            params![tenant, user],
        )?;
    }
    // Service users of its subscriptions live in the subscribing tenants: no cascade reaches
    // them. Only a microservice has them; a user of another's name is not its own.
    if app.app_type == "MICROSERVICE" {
        tx.execute(
            "DELETE FROM users WHERE kind = 'SERVICE' AND (tenant_id, user_name) IN (SELECT tenant_id, service_user FROM subscriptions WHERE application_id = ?1)",
            [id],
        )?;
    }
    tx.execute("DELETE FROM applications WHERE id = ?1", [id])?;
    let intent = DeletionIntent {
        tenant: tenant.to_owned(),
        application_id: id,
        versions,
        package_dir: package_dir.to_owned(),
    };
    let intent_id = intents::record(tx, &Intent::DeleteApplication(intent.clone()))?;
    Ok((intent_id, intent))
}

pub fn versions(conn: &Connection, id: i64) -> Result<Vec<Version>, StoreError> {
    let mut stmt = conn.prepare("SELECT version, image_id, image_tag, package_file FROM application_versions WHERE application_id = ?1 ORDER BY upload_time")?;
    let rows = stmt.query_map([id], |r| {
        Ok(Version {
            version: r.get(0)?,
            image_id: r.get(1)?,
            image_tag: r.get(2)?,
            package_file: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn version(conn: &Connection, id: i64, version: &str) -> Result<Option<Version>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT version, image_id, image_tag, package_file FROM application_versions WHERE application_id = ?1 AND version = ?2",
            params![id, version],
            |r| Ok(Version { version: r.get(0)?, image_id: r.get(1)?, image_tag: r.get(2)?, package_file: r.get(3)? }),
        )
        .optional()?)
}

/// Records an accepted upload in the caller's transaction: inserts or replaces the version row
/// (keeping the stable version's manifest when it replaces that one's), makes it active and
/// finishes the intent (the subscribers' settings are the flow's). Returns
/// the version it replaced, if any.
pub fn record_upload(
    tx: &Connection,
    tenant: &str,
    id: i64,
    record: &UploadRecord,
) -> Result<(Application, Option<Version>), StoreError> {
    get(tx, tenant, id)?;
    let previous = version(tx, id, &record.version.version)?;
    if previous.is_none() {
        room_for_a_version(tx, id, &record.version.version)?;
    }
    let manifest_text = serde_json::to_string(&record.manifest)?;
    // Replacing the stable version's row: the manifest it became ready with keeps running (and
    // charged) until this upload is ready; the first replaced one, if it was replaced already
    // and the later uploads never became ready.
    tx.execute(
        "UPDATE applications SET stable_manifest = COALESCE(stable_manifest,
             (SELECT v.manifest FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?2))
         WHERE id = ?1 AND stable_version_id = ?2",
        params![id, record.version.version],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time, stored_bytes, cost_counted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
        params![id, record.version.version, record.version.image_id, record.version.image_tag, record.version.package_file, manifest_text, timestamp(), i64::try_from(record.stored_bytes).unwrap_or(i64::MAX)],
    )?;
    tx.execute(
        // A new rollout: a message about an earlier one (a rollback, a refused one) is done.
        "UPDATE applications SET manifest = ?2, roles = ?3, required_roles = ?4, context_path = COALESCE(?5, context_path), active_version_id = ?6, rollout_message = NULL WHERE id = ?1",
        params![
            id,
            manifest_text,
            serde_json::to_string(&record.roles)?,
            serde_json::to_string(&record.required_roles)?,
            record.context_path,
            record.version.version
        ],
    )?;
    super::subscriptions::sync_service_roles(tx, id)?;
    if let Some(intent) = record.intent {
        intents::finish(tx, intent)?;
    }
    let app = get(tx, tenant, id)?;
    Ok((app, previous))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn store() -> Connection {
        super::super::test_conn(&["t1", "t2"])
    }

    /// A private hosted application of `owner` (other stores' tests make theirs with it).
    pub(in crate::store) fn new_app(owner: &str, name: &str) -> NewApplication {
        NewApplication {
            owner: owner.into(),
            name: name.into(),
            key: format!("{name}-key"),
            app_type: "HOSTED".into(),
            availability: "PRIVATE".into(),
            context_path: None,
            description: None,
            external_url: None,
            roles: Vec::new(),
            required_roles: Vec::new(),
        }
    }

    #[test]
    fn an_upload_ends_an_earlier_rollouts_message() {
        let mut conn = store();
        let app = create(&mut conn, &new_app("t1", "svc"), None).unwrap();
        conn.execute(
            "UPDATE applications SET rollout_message = 'rollback refused' WHERE id = ?1",
            [app.id],
        )
        .unwrap();
        let record = UploadRecord {
            version: super::super::artifacts::Version {
                version: "2.0.0".into(),
                image_id: "sha256:1".into(),
                image_tag: "berth/x:2.0.0".into(),
                package_file: "p.zip".into(),
            },
            stored_bytes: 1,
            manifest: serde_json::json!({}),
            roles: Vec::new(),
            required_roles: Vec::new(),
            context_path: None,
            intent: None,
        };
        record_upload(&conn, "t1", app.id, &record).unwrap();
        assert_eq!(
            super::super::desired::rollout_message(&conn, app.id).unwrap(),
            None
        );
        // Its cost was counted at upload: nothing to recount.
        assert_eq!(super::super::artifacts::uncounted(&conn).unwrap(), []);
    }

    #[test]
    fn re_uploading_the_stable_version_keeps_the_manifest_it_was_ready_with() {
        let mut conn = store();
        let app = create(&mut conn, &new_app("t1", "svc"), None).unwrap();
        let upload = |version: &str, n: u32| UploadRecord {
            version: super::super::artifacts::Version {
                version: version.into(),
                image_id: format!("sha256:{n}"),
                image_tag: format!("berth/x:{version}"),
                package_file: format!("p{n}.zip"),
            },
            stored_bytes: 1,
            manifest: serde_json::json!({ "n": n }),
            roles: Vec::new(),
            required_roles: Vec::new(),
            context_path: None,
            intent: None,
        };
        let replaced = |conn: &Connection| -> Option<String> {
            conn.query_row(
                "SELECT stable_manifest FROM applications WHERE id = ?1",
                [app.id],
                |r| r.get(0),
            )
            .unwrap()
        };
        record_upload(&conn, "t1", app.id, &upload("1.0", 1)).unwrap();
        super::super::desired::mark_stable(&conn, app.id, "1.0", r#"{"n":1}"#).unwrap();
        assert_eq!(replaced(&conn), None, "ready as stored");
        // (upload, version, manifest number, replaced manifest after it)
        let steps = [
            ("the stable version again", "1.0", 2, Some(r#"{"n":1}"#)),
            (
                "again, never ready: the first stays",
                "1.0",
                3,
                Some(r#"{"n":1}"#),
            ),
            (
                "another version: it still runs",
                "2.0",
                4,
                Some(r#"{"n":1}"#),
            ),
        ];
        for (step, version, n, expected) in steps {
            record_upload(&conn, "t1", app.id, &upload(version, n)).unwrap();
            assert_eq!(replaced(&conn).as_deref(), expected, "{step}");
        }
        super::super::desired::mark_stable(&conn, app.id, "2.0", r#"{"n":4}"#).unwrap();
        assert_eq!(replaced(&conn), None, "2.0 ready");
        // A version that is not the stable one, replaced: nothing of it was ever ready.
        record_upload(&conn, "t1", app.id, &upload("1.0", 5)).unwrap();
        record_upload(&conn, "t1", app.id, &upload("1.0", 6)).unwrap();
        assert_eq!(replaced(&conn), None, "1.0 is not stable any more");
    }

    #[test]
    fn a_tenant_owns_a_bounded_number_of_applications() {
        let mut conn = store();
        for i in 0..MAX_PER_TENANT {
            create(&mut conn, &new_app("t1", &format!("a{i}")), None).unwrap();
        }
        let refused = create(&mut conn, &new_app("t1", "one-more"), None);
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("owns 1000 applications")),
            "{refused:?}"
        );
        // Another tenant is not affected.
        create(&mut conn, &new_app("t2", "one-more"), None).unwrap();
    }

    #[test]
    fn the_offered_listing_selects_what_availability_offers_through_indexes() {
        use crate::store::subscriptions::{OFFERED, offered, offered_to};
        let mut conn = crate::store::test_conn(&["o", "sub", "subsub", "other", "management"]);
        let mut ids = Vec::new();
        for availability in ["PRIVATE", "SHARED", "MARKET"] {
            let app = NewApplication {
                owner: "o".into(),
                name: availability.to_lowercase(),
                key: format!("{availability}-key"),
                app_type: "MICROSERVICE".into(),
                availability: availability.into(),
                context_path: None,
                description: None,
                external_url: None,
                roles: Vec::new(),
                required_roles: Vec::new(),
            };
            ids.push((availability, create(&mut conn, &app, None).unwrap().id));
        }
        let tenants = [
            ("o", Some("management")),
            ("sub", Some("o")),
            ("subsub", Some("sub")),
            ("other", Some("management")),
            ("management", None),
        ];
        for (tenant, parent) in tenants {
            let listed = offered(&conn, tenant, parent, None, None).unwrap();
            for (availability, id) in &ids {
                assert_eq!(
                    listed.contains(id),
                    offered_to(availability, "o", tenant, parent),
                    "{availability} to {tenant}"
                );
            }
        }
        assert_eq!(
            offered(&conn, "other", None, Some("market"), Some("MICROSERVICE")).unwrap(),
            vec![ids[2].1]
        );
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {OFFERED}"))
            .unwrap()
            .query_map(params!["t", "p", None::<String>, None::<String>], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("applications_by_availability") && !plan.contains("SCAN applications"),
            "{plan}"
        );
    }

    #[test]
    fn an_application_keeps_a_bounded_number_of_versions() {
        let mut conn = store();
        let id = create(&mut conn, &new_app("t1", "many"), None).unwrap().id;
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time)
             SELECT ?1, '1.0.' || i, 'sha256:x', 't', 'p', '{}', '' FROM n",
            params![id, MAX_VERSIONS - 1],
        )
        .unwrap();
        room_for_a_version(&conn, id, "2.0.0").unwrap();
        conn.execute(
            "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (?1, '2.0.0', 'sha256:x', 't', 'p', '{}', '')",
            [id],
        )
        .unwrap();
        let refused = room_for_a_version(&conn, id, "3.0.0");
        assert!(
            matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("keeps 100 versions") && m.contains("3.0.0")),
            "{refused:?}"
        );
        // Another application is not affected.
        let other = create(&mut conn, &new_app("t1", "few"), None).unwrap().id;
        room_for_a_version(&conn, other, "1.0.0").unwrap();
    }

    #[test]
    fn the_proxys_lookup_by_name_or_context_path_uses_indexes() {
        let conn = store();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT a.id FROM applications a
                 WHERE a.type = 'MICROSERVICE' AND (a.context_path = ?1 OR a.name = ?1)",
            )
            .unwrap()
            .query_map(["svc"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("applications_by_name") && plan.contains("applications_by_context_path"),
            "{plan}"
        );
    }
}
