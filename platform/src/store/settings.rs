//! The settings a manifest puts in subscribing tenants as tenant options: which categories an
//! application may claim, the options a subscription seeds, and how a new (or restored) version
//! updates them in every subscribed tenant.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::options::{self, TenantOption};

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
    let owner: String = conn
        .query_row(
            "SELECT owner_tenant FROM applications WHERE id = ?1",
            [application_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            StoreError::NotFound(format!("Could not find application by ID {application_id}"))
        })?;
    subscribed_tenants(conn, application_id)?
        .into_iter()
        .map(|tenant| {
            Ok(SettingsUpdate {
                owner: tenant == owner,
                settings: manifest_settings(&tenant, app_name, after, seal)?,
                tenant,
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

/// The tenants subscribed to `application_id`, which carry its settings.
pub fn subscribed_tenants(
    conn: &Connection,
    application_id: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT tenant_id FROM subscriptions WHERE application_id = ?1 ORDER BY tenant_id",
    )?;
    let rows = stmt.query_map([application_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
