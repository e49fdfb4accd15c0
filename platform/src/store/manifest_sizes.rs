//! What the manifests an owner keeps weigh, as `apps::manifest_budget` charges them: measured
//! by SQLite, never copied out or parsed.

use rusqlite::Connection;

use super::StoreError;

/// The bytes of the manifests one application shows or may show again: the active version's
/// (as stored, what every listing reads) and, while it differs, the stable version's, which a
/// failed rollout makes active again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBytes {
    pub application_id: i64,
    pub active: u64,
    /// The stable version and its manifest's bytes, when it is not the active one.
    pub stable: Option<(String, u64)>,
}

/// [`ManifestBytes`] of every application `owner` owns, in its caller's transaction when it
/// has one. SQLite measures the texts; none is copied out or parsed.
pub fn manifest_bytes(conn: &Connection, owner: &str) -> Result<Vec<ManifestBytes>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.id, COALESCE(length(CAST(a.manifest AS BLOB)), 0),
                CASE WHEN a.stable_version_id IS NOT a.active_version_id THEN a.stable_version_id END,
                (SELECT length(CAST(v.manifest AS BLOB)) FROM application_versions v
                  WHERE v.application_id = a.id AND v.version = a.stable_version_id
                    AND a.stable_version_id IS NOT a.active_version_id)
         FROM applications a WHERE a.owner_tenant = ?1 ORDER BY a.id",
    )?;
    let bytes = |n: i64| u64::try_from(n).unwrap_or(0);
    let rows = stmt
        .query_map([owner], |r| {
            let stable: Option<String> = r.get(2)?;
            let stable_bytes: Option<i64> = r.get(3)?;
            Ok(ManifestBytes {
                application_id: r.get(0)?,
                active: bytes(r.get(1)?),
                stable: stable.zip(stable_bytes.map(bytes)),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::store::applications::create;
    use crate::store::applications::tests::new_app;

    #[test]
    fn manifest_bytes_are_the_stored_texts_in_bytes_with_a_differing_stable_version() {
        let mut conn = super::super::test_conn(&["t1", "t2"]);
        let ids: Vec<i64> = (0..4)
            .map(|i| {
                create(&mut conn, &new_app("t1", &format!("m{i}")), None)
                    .unwrap()
                    .id
            })
            .collect();
        create(&mut conn, &new_app("t2", "other"), None).unwrap();
        // Bytes, not characters: "é" is two.
        let (small, big) = (r#"{"v":"é"}"#, format!(r#"{{"v":"{}"}}"#, "x".repeat(100)));
        let version = |id: i64, version: &str, manifest: &str| {
            conn.execute(
                    "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (?1, ?2, 'sha256:x', 't', 'p', ?3, '')",
                    params![id, version, manifest],
                )
                .unwrap();
        };
        version(ids[1], "1.0", &big);
        version(ids[1], "2.0", small);
        version(ids[2], "1.0", small);
        version(ids[3], "1.0", small);
        let state = |id: i64, manifest: &str, active: &str, stable: Option<&str>| {
            conn.execute(
                    "UPDATE applications SET manifest = ?2, active_version_id = ?3, stable_version_id = ?4 WHERE id = ?1",
                    params![id, manifest, active, stable],
                )
                .unwrap();
        };
        // ids[0]: never uploaded; ids[1]: 2.0 rolling out over the stable 1.0; ids[2]: stable
        // is active; ids[3]: its stable version's row is gone.
        state(ids[1], small, "2.0", Some("1.0"));
        state(ids[2], small, "1.0", Some("1.0"));
        state(ids[3], small, "1.0", Some("0.9"));
        let n = small.len() as u64;
        assert_eq!(n, 10);
        assert_eq!(
            manifest_bytes(&conn, "t1").unwrap(),
            vec![
                ManifestBytes {
                    application_id: ids[0],
                    active: 0,
                    stable: None
                },
                ManifestBytes {
                    application_id: ids[1],
                    active: n,
                    stable: Some(("1.0".into(), big.len() as u64)),
                },
                ManifestBytes {
                    application_id: ids[2],
                    active: n,
                    stable: None
                },
                ManifestBytes {
                    application_id: ids[3],
                    active: n,
                    stable: None
                },
            ]
        );
    }
}
