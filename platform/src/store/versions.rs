//! The stored versions of one application as the versions API sees them: their tags, which one
//! is active (the `latest` tag, derived from the application, never stored), deleting one that
//! does not run, and making one active (the activation flow, a manual rollback, is
//! `apps::versions`'s).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::applications::{self, Version};

/// The tag that marks the active version.
pub const LATEST: &str = "latest";

/// One stored version with its tags (without `latest`).
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub version: String,
    pub image_id: String,
    pub upload_time: String,
    pub tags: Vec<String>,
}

/// An application's versions, oldest upload first, with the active and the stable one.
#[derive(Debug, Clone)]
pub struct Listing {
    pub active: Option<String>,
    /// The last version that became ready everywhere (what a failed rollout returns to).
    pub stable: Option<String>,
    pub versions: Vec<StoredVersion>,
}

/// The versions of the caller's application `id` (NotFound for another tenant's).
pub fn list(conn: &Connection, tenant: &str, id: i64) -> Result<Listing, StoreError> {
    let app = applications::get(conn, tenant, id)?;
    let mut stmt = conn.prepare(
        "SELECT version, image_id, upload_time FROM application_versions WHERE application_id = ?1 ORDER BY upload_time, version",
    )?;
    let mut versions = stmt
        .query_map([id], |r| {
            Ok(StoredVersion {
                version: r.get(0)?,
                image_id: r.get(1)?,
                upload_time: r.get(2)?,
                tags: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut tags = conn.prepare(
        "SELECT version, tag FROM application_version_tags WHERE application_id = ?1 ORDER BY tag",
    )?;
    let pairs = tags
        .query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (version, tag) in pairs {
        if let Some(v) = versions.iter_mut().find(|v| v.version == version) {
            v.tags.push(tag);
        }
    }
    Ok(Listing {
        active: app.active_version_id,
        stable: stable_version(conn, id)?,
        versions,
    })
}

fn stable_version(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT stable_version_id FROM applications WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// The version a tag names (`latest`: the active one); the API reads tags from the listing.
#[cfg(test)]
fn by_tag(
    conn: &Connection,
    tenant: &str,
    id: i64,
    tag: &str,
) -> Result<Option<String>, StoreError> {
    let app = applications::get(conn, tenant, id)?;
    if tag == LATEST {
        return Ok(app.active_version_id);
    }
    Ok(conn
        .query_row(
            "SELECT version FROM application_version_tags WHERE application_id = ?1 AND tag = ?2",
            params![id, tag],
            |r| r.get(0),
        )
        .optional()?)
}

/// Replaces the tags of `version` (`latest` excluded: see [`activate`]). A tag names one
/// version, so a tag another version had moves to this one.
pub fn set_tags(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    version: &str,
    tags: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    applications::get(&tx, tenant, id)?;
    require_version(&tx, id, version)?;
    tx.execute(
        "DELETE FROM application_version_tags WHERE application_id = ?1 AND version = ?2",
        params![id, version],
    )?;
    for tag in tags.iter().filter(|t| *t != LATEST) {
        tx.execute(
            "INSERT OR REPLACE INTO application_version_tags (application_id, version, tag) VALUES (?1, ?2, ?3)",
            params![id, version, tag],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub fn require_version(conn: &Connection, id: i64, version: &str) -> Result<Version, StoreError> {
    applications::version(conn, id, version)?
        .ok_or_else(|| StoreError::NotFound(format!("Application {id} has no version {version:?}")))
}

/// Deletes a stored version and its tags; returns it, so the caller removes its image tag and
/// package. Refused (Conflict) for the active version and for the stable one a running
/// rollout would return to.
pub fn delete(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    version: &str,
) -> Result<Version, StoreError> {
    let tx = conn.transaction()?;
    let app = applications::get(&tx, tenant, id)?;
    let stored = require_version(&tx, id, version)?;
    if app.active_version_id.as_deref() == Some(version) {
        return Err(StoreError::Conflict(format!(
            "Version {version} is the active version (tagged latest); activate another version before deleting it"
        )));
    }
    if stable_version(&tx, id)?.as_deref() == Some(version) {
        return Err(StoreError::Conflict(format!(
            "Version {version} is the last version that ran everywhere, which the rollout in progress returns to if it fails; delete it once the rollout finished"
        )));
    }
    tx.execute(
        "DELETE FROM application_version_tags WHERE application_id = ?1 AND version = ?2",
        params![id, version],
    )?;
    tx.execute(
        "DELETE FROM application_versions WHERE application_id = ?1 AND version = ?2",
        params![id, version],
    )?;
    tx.commit()?;
    Ok(stored)
}

/// Makes stored version `version` the active one of application `id` (it takes the `latest`
/// tag: the application shows its manifest and roles), in the caller's transaction. What else
/// follows (the subscribers' settings) is the flow's (`apps::versions`).
pub fn set_active(conn: &Connection, id: i64, version: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE applications SET active_version_id = ?2, rollout_message = NULL,
             manifest = COALESCE((SELECT v.manifest FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?2), manifest),
             roles = COALESCE((SELECT json_extract(v.manifest, '$.roles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?2), roles),
             required_roles = COALESCE((SELECT json_extract(v.manifest, '$.requiredRoles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?2), required_roles)
         WHERE id = ?1",
        params![id, version],
    )?;
    super::subscriptions::sync_service_roles(conn, id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let conn = super::super::test_conn(&["t1"]);
        conn.execute_batch(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, stable_version_id, creation_time)
               VALUES (7, 't1', 'hello', 'hello-key', 'MICROSERVICE', 'PRIVATE', '{}', '2.0.0', '2.0.0', 'now');
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, '1.0.0', 'sha256:a', 'berth/x/t1-7:1.0.0', 'p/1.zip', '{\"roles\":[\"R1\"]}', '2026-01-01');
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, '2.0.0', 'sha256:b', 'berth/x/t1-7:2.0.0', 'p/2.zip', '{\"roles\":[\"R2\"]}', '2026-01-02');",
        )
        .unwrap();
        conn
    }

    #[test]
    fn a_tag_names_one_version_and_moves() {
        let mut conn = store();
        set_tags(
            &mut conn,
            "t1",
            7,
            "1.0.0",
            &["stable".into(), "latest".into()],
        )
        .unwrap();
        assert_eq!(
            by_tag(&conn, "t1", 7, "stable").unwrap().as_deref(),
            Some("1.0.0")
        );
        assert_eq!(
            by_tag(&conn, "t1", 7, LATEST).unwrap().as_deref(),
            Some("2.0.0")
        );
        set_tags(&mut conn, "t1", 7, "2.0.0", &["stable".into()]).unwrap();
        let listing = list(&conn, "t1", 7).unwrap();
        let tags: Vec<_> = listing.versions.iter().map(|v| v.tags.clone()).collect();
        assert_eq!(tags, vec![Vec::<String>::new(), vec!["stable".to_owned()]]);
        assert!(matches!(
            set_tags(&mut conn, "t1", 7, "9.9.9", &[]),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(list(&conn, "t2", 7), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn the_active_version_cannot_be_deleted_an_older_one_can() {
        let mut conn = store();
        assert!(matches!(
            delete(&mut conn, "t1", 7, "2.0.0"),
            Err(StoreError::Conflict(_))
        ));
        set_tags(&mut conn, "t1", 7, "1.0.0", &["old".into()]).unwrap();
        let gone = delete(&mut conn, "t1", 7, "1.0.0").unwrap();
        assert_eq!(gone.package_file, "p/1.zip");
        assert_eq!(list(&conn, "t1", 7).unwrap().versions.len(), 1);
        assert_eq!(by_tag(&conn, "t1", 7, "old").unwrap(), None);
    }

    #[test]
    fn activating_takes_the_versions_manifest_and_roles() {
        let mut conn = store();
        set_active(&conn, 7, "1.0.0").unwrap();
        let app = applications::get(&conn, "t1", 7).unwrap();
        assert_eq!(app.active_version_id.as_deref(), Some("1.0.0"));
        assert_eq!(app.roles, vec!["R1".to_owned()]);
        // The stable version (2.0.0, what a failed rollout returns to) cannot go meanwhile.
        assert!(matches!(
            delete(&mut conn, "t1", 7, "2.0.0"),
            Err(StoreError::Conflict(_))
        ));
    }
}
