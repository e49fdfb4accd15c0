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

/// A kept version whose recorded cost does not count its image at what Docker unpacks it to
/// (kept before gzip layers were counted): `apps::recount` counts it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncounted {
    pub application_id: i64,
    pub version: String,
    pub package_file: String,
}

/// Every kept version not counted yet ([`Uncounted`]), in a stable order. Uploads record theirs
/// counted, so the list only shrinks.
pub fn uncounted(conn: &Connection) -> Result<Vec<Uncounted>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT application_id, version, package_file FROM application_versions
         WHERE cost_counted = 0 ORDER BY application_id, version",
    )?;
    let versions = stmt
        .query_map([], |r| {
            Ok(Uncounted {
                application_id: r.get(0)?,
                version: r.get(1)?,
                package_file: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(versions)
}

/// Records that `version` was counted, at `cost` (None: it keeps its recorded cost, its package
/// could not be counted), in one statement. A version deleted or re-uploaded meanwhile (its row
/// replaced, counted by its upload) is left alone: false.
pub fn record_count(
    conn: &Connection,
    version: &Uncounted,
    cost: Option<u64>,
) -> Result<bool, StoreError> {
    let cost = cost.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
    let changed = conn.execute(
        "UPDATE application_versions SET stored_bytes = COALESCE(?4, stored_bytes), cost_counted = 1
         WHERE application_id = ?1 AND version = ?2 AND package_file = ?3 AND cost_counted = 0",
        rusqlite::params![
            version.application_id,
            version.version,
            version.package_file,
            cost
        ],
    )?;
    Ok(changed == 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Versions 1.0 (recorded at 500), 2.0 (no cost recorded) and 3.0 (counted at upload) of
    /// application 7, as a Berth from before the count would have left the first two.
    fn kept() -> Connection {
        let conn = crate::store::test_conn(&["t1"]);
        conn.execute_batch(
            "INSERT INTO applications (id, owner_tenant, name, key, type, creation_time)
                 VALUES (7, 't1', 'svc', 'svc-key', 'MICROSERVICE', 'now');
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time, stored_bytes) VALUES
                 (7, '1.0', 'sha256:a', 't1', 'p/1.zip', '{}', 'now', 500),
                 (7, '2.0', 'sha256:b', 't2', 'p/2.zip', '{}', 'now', NULL);
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time, stored_bytes, cost_counted)
                 VALUES (7, '3.0', 'sha256:c', 't3', 'p/3.zip', '{}', 'now', 900, 1);",
        )
        .unwrap();
        conn
    }

    fn uncounted_version(version: &str, package_file: &str) -> Uncounted {
        Uncounted {
            application_id: 7,
            version: version.into(),
            package_file: package_file.into(),
        }
    }

    #[test]
    fn the_recount_takes_every_version_not_counted_once() {
        let conn = kept();
        assert_eq!(
            uncounted(&conn).unwrap(),
            [
                uncounted_version("1.0", "p/1.zip"),
                uncounted_version("2.0", "p/2.zip")
            ]
        );
        // Counted: the new cost; not countable: the cost recorded (none) stays. Both are done.
        assert!(record_count(&conn, &uncounted_version("1.0", "p/1.zip"), Some(7000)).unwrap());
        assert!(record_count(&conn, &uncounted_version("2.0", "p/2.zip"), None).unwrap());
        assert_eq!(uncounted(&conn).unwrap(), []);
        assert_eq!(
            kept_packages(&conn, "t1").unwrap(),
            [
                ("p/1.zip".to_owned(), Some(7000)),
                ("p/2.zip".to_owned(), None),
                ("p/3.zip".to_owned(), Some(900)),
            ]
        );
        // Once only: a second count changes nothing.
        assert!(!record_count(&conn, &uncounted_version("1.0", "p/1.zip"), Some(1)).unwrap());
        assert_eq!(kept_packages(&conn, "t1").unwrap()[0].1, Some(7000));
    }

    #[test]
    fn a_version_replaced_while_it_was_counted_keeps_its_uploads_cost() {
        let conn = kept();
        let before = uncounted(&conn).unwrap();
        // Re-uploaded meanwhile: a new package, counted at upload (its row replaced).
        conn.execute(
            "INSERT OR REPLACE INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time, stored_bytes, cost_counted)
             VALUES (7, '1.0', 'sha256:d', 't4', 'p/4.zip', '{}', 'now', 650, 1)",
            [],
        )
        .unwrap();
        assert!(!record_count(&conn, &before[0], Some(7000)).unwrap());
        let kept = kept_packages(&conn, "t1").unwrap();
        assert!(
            kept.contains(&("p/4.zip".to_owned(), Some(650))),
            "{kept:?}"
        );
        assert!(
            !kept.iter().any(|(_, cost)| *cost == Some(7000)),
            "{kept:?}"
        );
    }
}
