//! What the supervisor reads as desired state (the microservices that should run) and the rollout
//! marks it writes back: the stable version, the version a rollback restores (the rollback's
//! rules, settings included, are [`crate::apps::rollback`]'s).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::subscriptions::{Subscription, of_application};

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
    /// The stable version's manifest as it became ready, while a re-upload of that version
    /// replaced it and is not ready yet: its instances may still run, and are charged.
    pub stable_manifest: Option<String>,
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
        "SELECT a.id, a.name, a.key, a.owner_tenant, a.active_version_id, a.stable_version_id, v.image_tag, v.image_id, v.manifest, a.bootstrap_user, a.bootstrap_password_sealed, a.stable_manifest
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
            stable_manifest: r.get(11)?,
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

/// Records that `version` with `manifest` became ready everywhere (the rollout finished): a
/// replaced manifest of the stable version no longer runs. Nothing when an upload or an
/// activation changed the active version or its manifest meanwhile: that is a rollout of its
/// own, and the manifest it replaced still runs.
pub fn mark_stable(
    conn: &Connection,
    application_id: i64,
    version: &str,
    manifest: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE applications SET stable_version_id = ?2, stable_manifest = NULL, rollout_message = NULL
         WHERE id = ?1 AND active_version_id = ?2
           AND (SELECT v.manifest FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?2) = ?3",
        params![application_id, version, manifest],
    )?;
    Ok(())
}

/// A re-upload of the stable `version` that was not ready within its deadline: the manifest it
/// replaced (`replaced`, as the pass read it) no longer runs, so it is no longer charged, and
/// `message` says why. False when the state changed meanwhile (another version is active or
/// stable, or the replaced manifest is another one).
pub fn forget_replaced(
    conn: &Connection,
    application_id: i64,
    version: &str,
    replaced: &str,
    message: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE applications SET stable_manifest = NULL, rollout_message = ?4
         WHERE id = ?1 AND active_version_id = ?2 AND stable_version_id = ?2 AND stable_manifest = ?3",
        params![application_id, version, replaced, message],
    )? > 0)
}

/// Makes `previous` the active version again in place of `failed`, with the reason, and
/// shows its manifest (and roles) on the application. False when the active version is no
/// longer `failed` (a newer upload or activation happened meanwhile).
pub fn restore_version(
    conn: &Connection,
    application_id: i64,
    failed: &str,
    previous: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let restored = conn.execute(
        "UPDATE applications SET active_version_id = ?3, rollout_message = ?4,
             manifest = COALESCE((SELECT v.manifest FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), manifest),
             roles = COALESCE((SELECT json_extract(v.manifest, '$.roles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), roles),
             required_roles = COALESCE((SELECT json_extract(v.manifest, '$.requiredRoles') FROM application_versions v WHERE v.application_id = ?1 AND v.version = ?3), required_roles)
         WHERE id = ?1 AND active_version_id = ?2",
        params![application_id, failed, previous, reason],
    )? > 0;
    if restored {
        super::subscriptions::sync_service_roles(conn, application_id)?;
    }
    Ok(restored)
}

/// Says why application `application_id`'s rollout stands where it is (a refused rollback),
/// while `failed` is still its active version (a newer upload or activation wins). True when
/// that changed the message: a refusal repeated after the next deadline, in the same words,
/// changes nothing and is not to be recorded again.
pub fn set_rollout_message(
    conn: &Connection,
    application_id: i64,
    failed: &str,
    message: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE applications SET rollout_message = ?3
         WHERE id = ?1 AND active_version_id = ?2 AND rollout_message IS NOT ?3",
        params![application_id, failed, message],
    )? > 0)
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
    fn a_rollout_message_is_set_once_and_only_on_the_version_it_is_about() {
        let conn = crate::store::test_conn(&["t1"]);
        conn.execute(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, stable_version_id, creation_time)
             VALUES (7, 't1', 'hello', 'hello-key', 'MICROSERVICE', 'PRIVATE', '{}', '2.0.0', '1.0.0', 'now')",
            [],
        )
        .unwrap();
        // (failed version named, message, changed, message now)
        let cases = [
            ("2.0.0", "refused: no room", true, Some("refused: no room")),
            ("2.0.0", "refused: no room", false, Some("refused: no room")),
            ("2.0.0", "refused: terms", true, Some("refused: terms")),
            // Not about the active version (a newer one was uploaded meanwhile): untouched.
            ("1.5.0", "refused: old", false, Some("refused: terms")),
        ];
        for (failed, message, changed, now) in cases {
            assert_eq!(
                set_rollout_message(&conn, 7, failed, message).unwrap(),
                changed,
                "{failed}: {message}"
            );
            assert_eq!(rollout_message(&conn, 7).unwrap().as_deref(), now);
        }
        // The version becoming stable clears it.
        conn.execute(
            "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, '2.0.0', 'sha256:b', 't', 'p', '{}', '')",
            [],
        )
        .unwrap();
        mark_stable(&conn, 7, "2.0.0", "{}").unwrap();
        assert_eq!(rollout_message(&conn, 7).unwrap(), None);
    }

    #[test]
    fn a_replaced_stable_manifest_is_kept_until_its_successor_is_ready_or_late() {
        let conn = crate::store::test_conn(&["t1"]);
        conn.execute_batch(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, stable_version_id, stable_manifest, creation_time)
             VALUES (7, 't1', 'hello', 'hello-key', 'MICROSERVICE', 'PRIVATE', '{\"n\":2}', '1.0.0', '1.0.0', '{\"n\":1}', 'now');
             INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, '1.0.0', 'sha256:b', 't', 'p', '{\"n\":2}', '');",
        )
        .unwrap();
        const OLD: &str = r#"{"n":1}"#;
        let replaced = || -> Option<String> {
            conn.query_row(
                "SELECT stable_manifest FROM applications WHERE id = 7",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        // Ready as another manifest than the one stored now (uploaded meanwhile): kept.
        mark_stable(&conn, 7, "1.0.0", r#"{"n":3}"#).unwrap();
        assert_eq!(replaced().as_deref(), Some(OLD));
        // Late, but the pass saw another replaced manifest: kept; the one it saw: forgotten.
        assert!(!forget_replaced(&conn, 7, "1.0.0", r#"{"n":0}"#, "late").unwrap());
        assert_eq!(replaced().as_deref(), Some(OLD));
        assert!(forget_replaced(&conn, 7, "1.0.0", OLD, "late").unwrap());
        assert_eq!(replaced(), None);
        assert_eq!(rollout_message(&conn, 7).unwrap().as_deref(), Some("late"));
        // Ready as stored: the replaced manifest no longer runs.
        conn.execute(
            "UPDATE applications SET stable_manifest = '{\"n\":1}' WHERE id = 7",
            [],
        )
        .unwrap();
        mark_stable(&conn, 7, "1.0.0", r#"{"n":2}"#).unwrap();
        assert_eq!(replaced(), None);
        assert_eq!(rollout_message(&conn, 7).unwrap(), None);
    }
}
