//! The settings a manifest puts in subscribing tenants as tenant options: which categories an
//! application may claim, the options a manifest's settings make, and the tenants that carry
//! them. How a new (or restored) version changes them is `apps::settings_propagation`'s rule.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::options::TenantOption;

/// One manifest setting as the option it puts in a subscribing tenant (`from_manifest` set,
/// `credentials.` values sealed already for that tenant).
#[derive(Debug, Clone)]
pub struct Setting {
    pub option: TenantOption,
    /// A new version resets a value the tenant edited (the manifest's `overwriteOnUpdate`).
    pub overwrite_on_update: bool,
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

/// Whether another microservice's active manifest or kept version claims category `?2` (the
/// asking application is `?1`): each branch is written as its expression index (migrations) is.
const CATEGORY_TAKEN: &str = "SELECT 1 FROM applications a
     WHERE lower(COALESCE(json_extract(a.manifest, '$.settingsCategory'),
                          json_extract(a.manifest, '$.contextPath'), a.name)) = lower(?2)
       AND a.manifest IS NOT NULL AND a.type = 'MICROSERVICE' AND a.id != ?1
     UNION ALL
     SELECT 1 FROM application_versions v JOIN applications a ON a.id = v.application_id
     WHERE lower(COALESCE(json_extract(v.manifest, '$.settingsCategory'),
                          json_extract(v.manifest, '$.contextPath'))) = lower(?2)
       AND a.type = 'MICROSERVICE' AND a.id != ?1
     UNION ALL
     SELECT 1 FROM applications a JOIN application_versions v ON v.application_id = a.id
     WHERE lower(a.name) = lower(?2)
       AND json_extract(v.manifest, '$.settingsCategory') IS NULL
       AND json_extract(v.manifest, '$.contextPath') IS NULL
       AND a.type = 'MICROSERVICE' AND a.id != ?1
     LIMIT 1";

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
    // kept version (a rollback may bring an older version's category back), looked up through
    // expression indexes instead of reading every stored manifest: it runs on every upload,
    // under the store's lock.
    let taken = conn
        .query_row(
            CATEGORY_TAKEN,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let conn = super::super::test_conn(&["t1"]);
        conn.execute_batch(
            r#"
INSERT INTO applications (id, owner_tenant, name, key, type, manifest, creation_time) VALUES
    (1, 't1', 'Alpha', 'a', 'MICROSERVICE', '{"settingsCategory":"Cat"}', 'now'),
    (2, 't1', 'beta', 'b', 'MICROSERVICE', '{"contextPath":"ctx"}', 'now'),
    (3, 't1', 'gamma', 'g', 'MICROSERVICE', NULL, 'now'),
    (4, 't1', 'hosted', 'h', 'HOSTED', '{"settingsCategory":"web"}', 'now');
INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES
    (2, '0.9', 'i', 't', 'p', '{"settingsCategory":"old-cat"}', 'now'),
    (3, '1.0', 'i', 't', 'p', '{}', 'now');
"#,
        )
        .unwrap();
        conn
    }

    #[test]
    fn a_category_is_taken_by_any_active_manifest_or_kept_version_of_another_service() {
        let conn = store();
        // (asking application, category, taken)
        let cases = [
            (9, "cat", true),      // 1's settingsCategory, case folded
            (1, "Cat", false),     // its own
            (9, "CTX", true),      // 2's contextPath
            (9, "old-cat", true),  // 2's kept version
            (2, "old-cat", false), // its own kept version
            (9, "gamma", true),    // 3's kept version falls back to its name
            (9, "alpha", false),   // 1 names its category: its name is free
            (9, "web", false),     // not a microservice
            (9, "free", false),
        ];
        for (app, category, taken) in cases {
            let claim = category_claim(&conn, app, category).unwrap();
            assert_eq!(
                claim == CategoryClaim::Taken,
                taken,
                "{app} {category}: {claim:?}"
            );
        }
    }

    #[test]
    fn the_claim_looks_categories_up_rather_than_reading_every_manifest() {
        let conn = store();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {CATEGORY_TAKEN}"))
            .unwrap()
            .query_map(params![9, "x"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("SCAN"), "{plan}");
    }
}
