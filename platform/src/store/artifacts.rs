//! What a stored version is outside the database: its image and Berth's tag on it, and its
//! package file. Applications record them and deletion intents carry them (serialized in the
//! intent's body, so the field names are a stored format), so neither module owns the other.
//! Also the queries over every version's artifacts: which images, tags and package files are
//! still recorded (garbage collection, deletion intents) and what a tenant's packages cost.

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// One uploaded version of a microservice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub version: String,
    pub image_id: String,
    pub image_tag: String,
    pub package_file: String,
}

/// Every version `tenant` keeps: its package file and, when recorded, what it costs against
/// the storage quota.
pub fn kept_packages(
    conn: &Connection,
    tenant: &str,
) -> Result<Vec<(String, Option<u64>)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT v.package_file, v.stored_bytes FROM application_versions v
         JOIN applications a ON a.id = v.application_id WHERE a.owner_tenant = ?1",
    )?;
    let kept = stmt
        .query_map([tenant], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?
                    .map(|b| u64::try_from(b).unwrap_or(0)),
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(kept)
}

/// The image tags of every stored version (of every application).
pub fn image_tags(conn: &mut Connection) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT image_tag FROM application_versions")?;
    let tags = stmt.query_map([], |r| r.get(0))?;
    Ok(tags.collect::<Result<_, _>>()?)
}

/// The package files of every stored version (of every application).
pub fn package_files(
    conn: &mut Connection,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT package_file FROM application_versions")?;
    let files = stmt.query_map([], |r| r.get(0))?;
    Ok(files.collect::<Result<_, _>>()?)
}

/// True when any stored version (of any application) keeps its package in `package_file`.
pub fn package_recorded(conn: &Connection, package_file: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM application_versions WHERE package_file = ?1 LIMIT 1",
            [package_file],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// True when a stored version records `tag` on `image_id` (a later upload may have made the
/// tag an interrupted one had moved its own).
pub fn tag_recorded(conn: &Connection, tag: &str, image_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM application_versions WHERE image_tag = ?1 AND image_id = ?2 LIMIT 1",
            [tag, image_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// True when any stored version (of any application) uses this image.
pub fn image_in_use(conn: &Connection, image_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM application_versions WHERE image_id = ?1 LIMIT 1",
            [image_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
