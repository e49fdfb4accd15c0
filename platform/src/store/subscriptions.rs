//! Subscriptions of tenants to applications: the service user each one creates in the
//! subscribing tenant, the settings it seeds there as tenant options, and the queries the
//! supervisor (desired deployments) and the proxy (`/service/<name>` resolution) build on.

use rusqlite::{Connection, OptionalExtension, params};

use super::applications::{self, Application};
use super::options::{self, TenantOption};
use super::users::{NewUser, UserKind};
use super::{Page, StoreError, conflict_on_unique, timestamp};

/// One subscription with its service user's credentials (password still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub application_id: i64,
    pub tenant: String,
    pub service_user: String,
    pub service_password_sealed: String,
}

/// What a subscription creates in the subscribing tenant.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub application_id: i64,
    pub tenant: String,
    /// The service user (its `bootstrap` flag is ignored: it is stored as a service user).
    pub service_user: NewUser,
    /// False for applications without containers (hosted/external): no service user is made.
    pub create_service_user: bool,
    pub service_password_sealed: String,
    /// The manifest's `requiredRoles`, granted to the service user.
    pub required_roles: Vec<String>,
    /// The manifest's `settings` as options of the settings category (values sealed already
    /// for `credentials.` keys). Existing options of the same key are kept (the subscriber's
    /// own values win).
    pub settings: Vec<Setting>,
}

/// One manifest setting as the option it puts in a subscribing tenant (`from_manifest` set,
/// `credentials.` values sealed already for that tenant).
#[derive(Debug, Clone)]
pub struct Setting {
    pub option: TenantOption,
    /// A new version resets a value the tenant edited (the manifest's `overwriteOnUpdate`).
    pub overwrite_on_update: bool,
}

/// A new version's settings for one subscribed tenant.
#[derive(Debug, Clone)]
pub struct SettingsUpdate {
    pub tenant: String,
    /// The tenant owns the application (the manifest's `editable` and `overwriteOnUpdate`
    /// then apply to the values it wrote).
    pub owner: bool,
    /// (category, key) of the previous version's settings.
    pub previous: Vec<(String, String)>,
    pub settings: Vec<Setting>,
}

/// Whether an application of `owner` with `availability` is offered to `tenant` (whose parent
/// is `parent`): its owner always; MARKET to every tenant; SHARED to the owner's direct
/// subtenants only (a sub-subtenant is its own parent's customer, as in Cumulocity, where a
/// tenant offers only what it owns to the subtenants it created); PRIVATE to nobody else.
pub fn offered_to(availability: &str, owner: &str, tenant: &str, parent: Option<&str>) -> bool {
    tenant == owner
        || match availability {
            "MARKET" => true,
            "SHARED" => parent == Some(owner),
            _ => false,
        }
}

/// The applications offered to `tenant` (parent `parent`) by [`offered_to`], with an optional
/// name and type filter, by id.
pub fn offered(
    conn: &Connection,
    tenant: &str,
    parent: Option<&str>,
    name: Option<&str>,
    app_type: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, owner_tenant, availability FROM applications
         WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR type = ?2) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![name, app_type], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, owner, availability) = row?;
        if offered_to(&availability, &owner, tenant, parent) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Tenant-option categories of the platform itself (Cumulocity's and Berth's): an
/// application's settings never go there, or a provider would set a subscriber's platform
/// options (`microservice.runtime` holds the egress proxy of the tenant's own services).
const RESERVED_CATEGORIES: &[&str] = &[
    "microservice",
    "system",
    "configuration",
    "access.control",
    "password",
    "alarm.type.mapping",
    "oauth.internal",
    "token.publickey",
    "berth",
];
/// Every category under these is reserved as well.
const RESERVED_PREFIXES: &[&str] = &["microservice.", "berth."];

/// Whether `category` belongs to the platform (case-insensitive).
pub fn is_reserved_category(category: &str) -> bool {
    let lower = category.to_ascii_lowercase();
    RESERVED_CATEGORIES.contains(&lower.as_str())
        || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Whether an application may keep its settings in a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategoryClaim {
    Free,
    /// A platform category.
    Reserved,
    /// The category of another microservice's active manifest or of any of its kept versions:
    /// two applications sharing one would overwrite and delete each other's settings, and
    /// each one's service would read the other's secrets.
    Taken,
}

/// Whether `category` may hold the settings of application `application_id`. Compared
/// case-insensitively, as a tenant could not tell the two apart. (An application without a
/// manifest has no settings and claims no category.)
pub fn category_claim(
    conn: &Connection,
    application_id: i64,
    category: &str,
) -> Result<CategoryClaim, StoreError> {
    if is_reserved_category(category) {
        return Ok(CategoryClaim::Reserved);
    }
    // The same rule as `Manifest::settings_category_or`, over the active manifest and every
    // kept version (a rollback may bring an older version's category back).
    let taken = conn
        .query_row(
            "SELECT 1 FROM applications a
             WHERE a.type = 'MICROSERVICE' AND a.id != ?1 AND (
                 a.manifest IS NOT NULL AND lower(COALESCE(json_extract(a.manifest, '$.settingsCategory'),
                                json_extract(a.manifest, '$.contextPath'), a.name)) = lower(?2)
                 OR EXISTS (SELECT 1 FROM application_versions v WHERE v.application_id = a.id
                     AND lower(COALESCE(json_extract(v.manifest, '$.settingsCategory'),
                                        json_extract(v.manifest, '$.contextPath'), a.name)) = lower(?2)))
             LIMIT 1",
            params![application_id, category],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    Ok(if taken {
        CategoryClaim::Taken
    } else {
        CategoryClaim::Free
    })
}

/// Keys with this prefix are stored sealed, and handed to the service decrypted and unprefixed.
pub const SEALED_PREFIX: &str = "credentials.";

/// Seals a setting's default for a tenant: (tenant, category, key, clear value) → sealed value.
pub type Seal<'a> = dyn Fn(&str, &str, &str, &str) -> Result<String, StoreError> + 'a;

/// A manifest's `settings` as the options they put in `tenant`: the default values,
/// `credentials.` ones sealed for that tenant. Used when a tenant subscribes and when the
/// active version changes (an upload, a rollback).
pub fn manifest_settings(
    tenant: &str,
    app_name: &str,
    manifest: &manifests_schema::Manifest,
    seal: &Seal<'_>,
) -> Result<Vec<Setting>, StoreError> {
    let category = manifest.settings_category_or(app_name);
    let mut settings = Vec::new();
    for setting in &manifest.settings {
        let encrypted = setting.key.starts_with(SEALED_PREFIX);
        let value = if encrypted {
            seal(tenant, category, &setting.key, &setting.default_value)?
        } else {
            setting.default_value.clone()
        };
        settings.push(Setting {
            option: TenantOption {
                category: category.to_owned(),
                key: setting.key.clone(),
                value,
                encrypted,
                editable: setting.editable,
                from_manifest: true,
            },
            overwrite_on_update: setting.overwrite_on_update,
        });
    }
    Ok(settings)
}

/// What changing an application's active manifest from `before` to `after` does to the
/// settings of each subscribed tenant (apply with [`update_settings`] in the same transaction).
pub fn settings_updates(
    conn: &Connection,
    application_id: i64,
    app_name: &str,
    before: Option<&manifests_schema::Manifest>,
    after: &manifests_schema::Manifest,
    seal: &Seal<'_>,
) -> Result<Vec<SettingsUpdate>, StoreError> {
    let previous: Vec<(String, String)> = before
        .map(|m| {
            let category = m.settings_category_or(app_name);
            m.settings
                .iter()
                .map(|s| (category.to_owned(), s.key.clone()))
                .collect()
        })
        .unwrap_or_default();
    let owner = applications::get_any(conn, application_id)?.owner;
    of_application(conn, application_id)?
        .into_iter()
        .map(|sub| {
            Ok(SettingsUpdate {
                owner: sub.tenant == owner,
                settings: manifest_settings(&sub.tenant, app_name, after, seal)?,
                tenant: sub.tenant,
                previous: previous.clone(),
            })
        })
        .collect()
}

/// Brings a subscribed tenant's settings options to a new version's settings: keys the new
/// version no longer has are removed, new keys added, and each other option takes the new
/// default. A value the tenant wrote itself is kept: in a subscriber's tenant always (a
/// provider never changes or removes a subscriber's own option), in the owner's tenant when
/// the setting stays editable and is not `overwriteOnUpdate`.
pub fn update_settings(conn: &Connection, update: &SettingsUpdate) -> Result<(), StoreError> {
    let tenant = update.tenant.as_str();
    for (category, key) in &update.previous {
        let still = update
            .settings
            .iter()
            .any(|s| s.option.category == *category && s.option.key == *key);
        let old = options::get(conn, tenant, category, key)?;
        if !still && old.is_some_and(|o| o.from_manifest || update.owner) {
            options::delete(conn, tenant, category, key)?;
        }
    }
    for setting in &update.settings {
        let new = &setting.option;
        let old = options::get(conn, tenant, &new.category, &new.key)?;
        if old
            .as_ref()
            .is_some_and(|o| !o.from_manifest && !update.owner)
        {
            // A subscriber's own value: the provider neither changes nor locks it.
            continue;
        }
        let keep = old
            .is_some_and(|old| !old.from_manifest && new.editable && !setting.overwrite_on_update);
        if keep {
            conn.execute(
                "UPDATE options SET editable = 1 WHERE tenant_id = ?1 AND category = ?2 AND key = ?3",
                params![tenant, new.category, new.key],
            )?;
        } else {
            options::replace(conn, tenant, new)?;
        }
    }
    Ok(())
}

/// Creates the subscription, its service user with the required roles and the settings
/// options, in one transaction. Conflict when the tenant is already subscribed.
pub fn subscribe(conn: &mut Connection, new: &NewSubscription) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            new.application_id,
            new.tenant,
            new.service_user.user_name,
            new.service_password_sealed,
            timestamp()
        ],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "Tenant {} is already subscribed to application {}",
                new.tenant, new.application_id
            )
        })
    })?;
    let now = timestamp();
    if !new.create_service_user {
        tx.commit()?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO users (tenant_id, user_name, kind, password_hash, enabled, last_password_change, creation_time) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
        params![
            new.tenant,
            new.service_user.user_name,
            UserKind::Service.as_str(),
            new.service_user.password_hash,
            now
        ],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "User {} already exists in tenant {}; rename or delete it to subscribe",
                new.service_user.user_name, new.tenant
            )
        })
    })?;
    for role in &new.required_roles {
        tx.execute(
            "INSERT OR IGNORE INTO user_roles (tenant_id, user_name, role) VALUES (?1, ?2, ?3)",
            params![new.tenant, new.service_user.user_name, role],
        )?;
    }
    for setting in &new.settings {
        let option = &setting.option;
        if options::get(&tx, &new.tenant, &option.category, &option.key)?.is_none() {
            options::put(&tx, &new.tenant, option)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Removes the subscription, its service user and the settings options Berth wrote in
/// `category` with the given keys (values the tenant wrote stay: they are its own). Returns the removed subscription, NotFound when there was none.
pub fn unsubscribe(
    conn: &mut Connection,
    application_id: i64,
    tenant: &str,
    settings_category: &str,
    setting_keys: &[String],
) -> Result<Subscription, StoreError> {
    let tx = conn.transaction()?;
    let found = get(&tx, application_id, tenant)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "Tenant {tenant} is not subscribed to application {application_id}"
        ))
    })?;
    tx.execute(
        "DELETE FROM subscriptions WHERE application_id = ?1 AND tenant_id = ?2",
        params![application_id, tenant],
    )?;
    tx.execute(
        "DELETE FROM users WHERE tenant_id = ?1 AND user_name = ?2 AND kind = ?3",
        params![tenant, found.service_user, UserKind::Service.as_str()],
    )?;
    for key in setting_keys {
        options::delete_seeded(&tx, tenant, settings_category, key)?;
    }
    tx.commit()?;
    Ok(found)
}

pub fn get(
    conn: &Connection,
    application_id: i64,
    tenant: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE application_id = ?1 AND tenant_id = ?2",
            params![application_id, tenant],
            row_to_subscription,
        )
        .optional()?)
}

fn row_to_subscription(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        application_id: r.get(0)?,
        tenant: r.get(1)?,
        service_user: r.get(2)?,
        service_password_sealed: r.get(3)?,
    })
}

/// Every subscription of an application, by tenant id.
pub fn of_application(
    conn: &Connection,
    application_id: i64,
) -> Result<Vec<Subscription>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE application_id = ?1 ORDER BY tenant_id",
    )?;
    let rows = stmt.query_map([application_id], row_to_subscription)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The application ids `tenant` is subscribed to (a window of them) and their total.
pub fn of_tenant(
    conn: &Connection,
    tenant: &str,
    page: Page,
) -> Result<(Vec<i64>, u64), StoreError> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM subscriptions WHERE tenant_id = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT application_id FROM subscriptions WHERE tenant_id = ?1 ORDER BY application_id LIMIT ?2 OFFSET ?3",
    )?;
    let ids = stmt
        .query_map(params![tenant, page.limit_sql(), page.offset_sql()], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    Ok((ids, total.try_into().unwrap_or(0)))
}

/// The subscription whose service user is `user` of `tenant`, if any.
pub fn by_service_user(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE tenant_id = ?1 AND service_user = ?2",
            params![tenant, user],
            row_to_subscription,
        )
        .optional()?)
}

/// Roles that subscriptions make assignable in `tenant` (the `roles` of subscribed applications).
pub fn assignable_roles(conn: &Connection, tenant: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.roles FROM applications a JOIN subscriptions s ON s.application_id = a.id WHERE s.tenant_id = ?1",
    )?;
    let mut roles = Vec::new();
    for text in stmt.query_map([tenant], |r| r.get::<_, String>(0))? {
        let list: Vec<String> = serde_json::from_str(&text?)?;
        roles.extend(list);
    }
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// Where a `/service/<segment>/…` request goes, as the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    pub application_id: i64,
    pub name: String,
    pub owner: String,
    /// PER_TENANT: each subscribed tenant has its own deployment.
    pub per_tenant: bool,
    /// Whether the caller's tenant is subscribed (otherwise the proxy must refuse).
    pub caller_subscribed: bool,
}

/// Resolves `/service/<segment>` for a caller of `caller_tenant`: microservices whose
/// `contextPath` or name equals `segment`, preferring one the caller's tenant is subscribed
/// to, then one it owns. None when no microservice has that name or context path.
pub fn resolve_service(
    conn: &Connection,
    segment: &str,
    caller_tenant: &str,
) -> Result<Option<ServiceTarget>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT a.id, a.name, a.owner_tenant, COALESCE(json_extract(a.manifest, '$.isolation'), 'MULTI_TENANT'),
                    EXISTS (SELECT 1 FROM subscriptions s WHERE s.application_id = a.id AND s.tenant_id = ?2) AS subscribed
             FROM applications a
             WHERE a.type = 'MICROSERVICE' AND (a.context_path = ?1 OR a.name = ?1)
             ORDER BY subscribed DESC, a.owner_tenant = ?2 DESC, a.context_path = ?1 DESC, a.id
             LIMIT 1",
            params![segment, caller_tenant],
            |r| {
                Ok(ServiceTarget {
                    application_id: r.get(0)?,
                    name: r.get(1)?,
                    owner: r.get(2)?,
                    per_tenant: r.get::<_, String>(3)? == "PER_TENANT",
                    caller_subscribed: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// A microservice that should run: its active version is known and at least one tenant is
/// subscribed. The supervisor's desired state is the list of these.
#[derive(Debug, Clone)]
pub struct DesiredApplication {
    pub application_id: i64,
    pub name: String,
    pub key: String,
    pub owner: String,
    pub active_version: String,
    pub stable_version: Option<String>,
    pub image_tag: String,
    /// The image id behind the tag (changes when a SNAPSHOT is re-uploaded).
    pub image_id: String,
    /// The active version's manifest, as stored (resolved, defaults included).
    pub manifest: String,
    pub bootstrap_user: String,
    pub bootstrap_password_sealed: String,
    pub subscriptions: Vec<Subscription>,
}

/// Every microservice with an active version and ≥1 subscription.
pub fn desired(conn: &Connection) -> Result<Vec<DesiredApplication>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.name, a.key, a.owner_tenant, a.active_version_id, a.stable_version_id, v.image_tag, v.image_id, v.manifest, a.bootstrap_user, a.bootstrap_password_sealed
         FROM applications a JOIN application_versions v ON v.application_id = a.id AND v.version = a.active_version_id
         WHERE a.type = 'MICROSERVICE' AND a.bootstrap_user IS NOT NULL AND a.bootstrap_password_sealed IS NOT NULL
           AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.application_id = a.id)
         ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DesiredApplication {
            application_id: r.get(0)?,
            name: r.get(1)?,
            key: r.get(2)?,
            owner: r.get(3)?,
            active_version: r.get(4)?,
            stable_version: r.get(5)?,
            image_tag: r.get(6)?,
            image_id: r.get(7)?,
            manifest: r.get(8)?,
            bootstrap_user: r.get(9)?,
            bootstrap_password_sealed: r.get(10)?,
            subscriptions: Vec::new(),
        })
    })?;
    let mut apps = rows.collect::<Result<Vec<_>, _>>()?;
    for app in &mut apps {
        app.subscriptions = of_application(conn, app.application_id)?;
    }
    Ok(apps)
}

/// The image tag and manifest of one version (for rollouts that still run the previous one).
pub fn version_image(
    conn: &Connection,
    application_id: i64,
    version: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT image_tag, manifest FROM application_versions WHERE application_id = ?1 AND version = ?2",
            params![application_id, version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Records that `version` became ready everywhere (the rollout finished).
pub fn mark_stable(
    conn: &Connection,
    application_id: i64,
    version: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE applications SET stable_version_id = ?2, rollout_message = NULL WHERE id = ?1 AND active_version_id = ?2",
        params![application_id, version],
    )?;
    Ok(())
}

/// Rolls a failed rollout back: the active version returns to `previous`, with the reason, and
/// the subscribed tenants' settings return to that version's. Returns the application as it
/// is now, None when the active version changed meanwhile (a newer upload wins).
pub fn roll_back(
    conn: &mut Connection,
    application_id: i64,
    failed: &str,
    previous: &str,
    reason: &str,
    seal: &Seal<'_>,
) -> Result<Option<Application>, StoreError> {
    let tx = conn.transaction()?;
    let before = applications::get_any(&tx, application_id)?;
    // The application shows the manifest (and roles) of the version that is active again.
    let changed = tx.execute(
        "UPDATE applications SET active_version_id = ?3, rollout_message = ?4,
             manifest = COALESCE((SELECT v.manifest FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), manifest),
             roles = COALESCE((SELECT json_extract(v.manifest, '$.roles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), roles),
             required_roles = COALESCE((SELECT json_extract(v.manifest, '$.requiredRoles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), required_roles)
         WHERE id = ?1 AND active_version_id = ?2",
        params![application_id, failed, previous, reason],
    )? > 0;
    if !changed {
        return Ok(None);
    }
    let after = applications::get_any(&tx, application_id)?;
    if let Some(restored) = applications::resolved_manifest(&after) {
        let old = applications::resolved_manifest(&before);
        for update in settings_updates(
            &tx,
            application_id,
            &after.name,
            old.as_ref(),
            &restored,
            seal,
        )? {
            update_settings(&tx, &update)?;
        }
    }
    tx.commit()?;
    Ok(Some(after))
}

/// The last rollout failure of an application, if any.
pub fn rollout_message(
    conn: &Connection,
    application_id: i64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT rollout_message FROM applications WHERE id = ?1",
            [application_id],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_offers_an_application_to_these_tenants() {
        // (availability, tenant, tenant's parent, offered) for an application owned by "o".
        let cases = [
            ("PRIVATE", "o", Some("management"), true),
            ("PRIVATE", "sub", Some("o"), false),
            ("PRIVATE", "other", Some("management"), false),
            ("SHARED", "o", Some("management"), true),
            ("SHARED", "sub", Some("o"), true),
            ("SHARED", "subsub", Some("sub"), false),
            ("SHARED", "other", Some("management"), false),
            ("SHARED", "management", None, false),
            ("MARKET", "other", Some("management"), true),
            ("MARKET", "subsub", Some("sub"), true),
            ("UNKNOWN", "sub", Some("o"), false),
        ];
        for (availability, tenant, parent, offered) in cases {
            assert_eq!(
                offered_to(availability, "o", tenant, parent),
                offered,
                "{availability} to {tenant}"
            );
        }
    }

    /// An option as a case states it: (value, written from the manifest, editable).
    type Stated = Option<(&'static str, bool, bool)>;

    #[test]
    fn a_new_version_changes_only_what_berth_wrote_in_a_subscribers_tenant() {
        // (owner's tenant, option before, in the previous version, new setting (default,
        // editable, overwriteOnUpdate), option after)
        #[allow(clippy::type_complexity)]
        let cases: &[(bool, Stated, bool, Option<(&str, bool, bool)>, Stated)] = &[
            (
                false,
                Some(("mine", false, true)),
                true,
                None,
                Some(("mine", false, true)),
            ),
            (false, Some(("p", true, true)), true, None, None),
            (true, Some(("mine", false, true)), true, None, None),
            (
                false,
                Some(("mine", false, true)),
                true,
                Some(("p2", false, true)),
                Some(("mine", false, true)),
            ),
            (
                false,
                Some(("mine", false, true)),
                false,
                Some(("p2", true, true)),
                Some(("mine", false, true)),
            ),
            (
                true,
                Some(("mine", false, true)),
                true,
                Some(("p2", false, true)),
                Some(("p2", true, false)),
            ),
            (
                true,
                Some(("mine", false, true)),
                true,
                Some(("p2", true, false)),
                Some(("mine", false, true)),
            ),
            (
                true,
                Some(("mine", false, true)),
                true,
                Some(("p2", true, true)),
                Some(("p2", true, true)),
            ),
            (
                false,
                Some(("p", true, true)),
                true,
                Some(("p2", true, false)),
                Some(("p2", true, true)),
            ),
            (
                false,
                None,
                false,
                Some(("p2", false, true)),
                Some(("p2", true, false)),
            ),
        ];
        for (i, (owner, before, previous, new, after)) in cases.iter().enumerate() {
            let mut conn = Connection::open_in_memory().unwrap();
            crate::store::migrations::apply(&mut conn).unwrap();
            conn.execute(
                "INSERT INTO tenants (id, domain, company, creation_time) VALUES ('t', 't.example', 'T', 'now')",
                [],
            )
            .unwrap();
            let option = |value: &str, from_manifest: bool, editable: bool| TenantOption {
                category: "cat".into(),
                key: "k".into(),
                value: value.into(),
                encrypted: false,
                editable,
                from_manifest,
            };
            if let Some((value, from_manifest, editable)) = before {
                options::replace(&conn, "t", &option(value, *from_manifest, *editable)).unwrap();
            }
            let update = SettingsUpdate {
                tenant: "t".into(),
                owner: *owner,
                previous: if *previous {
                    vec![("cat".into(), "k".into())]
                } else {
                    Vec::new()
                },
                settings: new
                    .iter()
                    .map(|(default, editable, overwrite)| Setting {
                        option: option(default, true, *editable),
                        overwrite_on_update: *overwrite,
                    })
                    .collect(),
            };
            update_settings(&conn, &update).unwrap();
            let found = options::get(&conn, "t", "cat", "k")
                .unwrap()
                .map(|o| (o.value, o.from_manifest, o.editable));
            let want = after.map(|(v, m, e)| (v.to_owned(), m, e));
            assert_eq!(found, want, "case {i}");
        }
    }

    #[test]
    fn platform_categories_are_reserved() {
        let cases = [
            ("microservice.runtime", true),
            ("Microservice.Runtime", true),
            ("microservice", true),
            ("microservice.anything", true),
            ("microservices", false),
            ("system", true),
            ("configuration", true),
            ("access.control", true),
            ("password", true),
            ("alarm.type.mapping", true),
            ("oauth.internal", true),
            ("token.publicKey", true),
            ("berth.limits", true),
            ("mysvc", false),
            ("systemx", false),
            ("my.system", false),
        ];
        for (category, reserved) in cases {
            assert_eq!(is_reserved_category(category), reserved, "{category}");
        }
    }
}
