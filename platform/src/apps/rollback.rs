//! Rolling back a failed rollout: the version that was stable becomes active again, and every
//! subscribed tenant's settings follow it as after an upload (keys it lacks deleted, the others
//! at its defaults; what a subscriber wrote stays its own). The supervisor decides when and
//! calls this through [`crate::supervisor::Settings::roll_back`], since the flows depend on the
//! supervisor's handle and not the other way round.

use rusqlite::Connection;

use super::settings_propagation;

use crate::limits::Maxima;
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::desired;
use crate::store::settings::Seal;

/// Rolls application `application_id` back from `failed` to `previous` with `reason`, in one
/// transaction. Returns the application as it is now, None when the active version changed
/// meanwhile (a newer upload wins). Invalid, changing nothing, when `previous` would move the
/// terms other subscribed tenants agreed to (`super::terms`), or take a tenant over a resource
/// maximum (`super::limits::check_rollback`): the failed version stays active, and the stable
/// one, still charged, keeps what it runs. The options caps do not stop it
/// (`settings_propagation::follow_back` says why), nor the manifest budget, which charged the
/// stable version's manifest through the rollout (`super::manifest_budget`), so the rollback
/// never adds to it.
pub fn roll_back(
    conn: &mut Connection,
    maxima: &Maxima,
    application_id: i64,
    failed: &str,
    previous: &str,
    reason: &str,
    seal: &Seal<'_>,
) -> Result<Option<Application>, StoreError> {
    let tx = conn.transaction()?;
    let before = applications::get_any(&tx, application_id)?;
    let failed_manifest = desired::version_image(&tx, application_id, failed)?
        .and_then(|(_, text)| manifests_schema::validate(&text).ok());
    if !desired::restore_version(&tx, application_id, failed, previous, reason)? {
        return Ok(None);
    }
    let after = applications::get_any(&tx, application_id)?;
    super::terms::check_kept(&tx, &before, &super::terms::Terms::of(&after))?;
    super::limits::check_rollback(
        &tx,
        application_id,
        failed_manifest.as_ref().map(|m| &m.manifest),
        previous,
        maxima,
    )?;
    settings_propagation::follow_back(&tx, &before, &after, seal)?;
    tx.commit()?;
    Ok(Some(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_seal(_: &str, _: &str, _: &str, v: &str) -> Result<String, StoreError> {
        Ok(v.to_owned())
    }

    fn manifest(version: &str, category: &str, required: &str) -> String {
        format!(
            r#"{{"apiVersion":"2","name":"hello","version":"{version}","provider":{{"name":"x"}},"settingsCategory":"{category}","requiredRoles":[{required}]}}"#
        )
    }

    const GI: u64 = 1 << 30;

    fn maxima(tenant_memory: u64) -> Maxima {
        let limits = crate::limits::LimitSettings {
            replicas: 10,
            tenant_containers: 10,
            tenant_memory: Some(tenant_memory),
            ..crate::limits::LimitSettings::default()
        }
        .resolve(crate::limits::Host {
            millicores: 4000,
            memory_bytes: 8 * GI,
            only_port: None,
            exec_probes: true,
        })
        .unwrap();
        Maxima {
            limits,
            autoscale_max: 5,
        }
    }

    fn sized(version: &str, memory: &str) -> String {
        format!(
            r#"{{"apiVersion":"2","name":"hello","version":"{version}","provider":{{"name":"x"}},"resources":{{"memory":"{memory}"}}}}"#
        )
    }

    /// A running microservice of `t1`: application `id` with `versions` stored, `active` the
    /// active one and `stable` the stable one.
    fn running(conn: &Connection, id: i64, versions: &[(&str, &str)], active: &str, stable: &str) {
        let manifest = versions.iter().find(|(v, _)| *v == active).unwrap().1;
        conn.execute(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, stable_version_id, bootstrap_user, bootstrap_password_sealed, creation_time)
             VALUES (?1, 't1', ?2, ?3, 'MICROSERVICE', 'PRIVATE', ?4, ?5, ?6, 'b', 'p', 'now')",
            rusqlite::params![id, format!("app{id}"), format!("app{id}-key"), manifest, active, stable],
        )
        .unwrap();
        for (version, text) in versions {
            conn.execute(
                "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (?1, ?2, 'sha256:a', 't', 'p.zip', ?3, 'now')",
                rusqlite::params![id, version, text],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO subscriptions VALUES (?1, 't1', ?2, 's', 'now')",
            rusqlite::params![id, format!("u{id}")],
        )
        .unwrap();
    }

    #[test]
    fn a_rollback_the_tenant_has_no_room_for_leaves_the_failed_version() {
        // Application 7 rolls out a tiny 2.0.0 over a 512Mi 1.0.0; application 8 runs 512Mi.
        let setup = || {
            let conn = crate::store::test_conn(&["t1"]);
            let versions = [
                ("1.0.0", sized("1.0.0", "512Mi")),
                ("2.0.0", sized("2.0.0", "16Mi")),
            ];
            let versions: Vec<(&str, &str)> =
                versions.iter().map(|(v, m)| (*v, m.as_str())).collect();
            running(&conn, 7, &versions, "2.0.0", "1.0.0");
            running(
                &conn,
                8,
                &[("1.0.0", &sized("1.0.0", "512Mi"))],
                "1.0.0",
                "1.0.0",
            );
            conn
        };
        let active = |conn: &Connection| applications::get_any(conn, 7).unwrap().active_version_id;
        // Room for both: rolled back.
        let mut conn = setup();
        let back = roll_back(
            &mut conn,
            &maxima(GI),
            7,
            "2.0.0",
            "1.0.0",
            "not ready",
            &no_seal,
        );
        assert!(matches!(back, Ok(Some(_))), "{back:?}");
        assert_eq!(active(&conn).as_deref(), Some("1.0.0"));
        // 768Mi (maxima lowered since, or state of a Berth that charged the active version
        // alone): 1Gi with 1.0.0 back is refused, naming the maximum; nothing changes.
        let mut conn = setup();
        let refused = roll_back(
            &mut conn,
            &maxima(768 << 20),
            7,
            "2.0.0",
            "1.0.0",
            "not ready",
            &no_seal,
        );
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("with version 1.0.0 active again") && m.contains("tenant_max_memory")),
            "{refused:?}"
        );
        assert_eq!(active(&conn).as_deref(), Some("2.0.0"));
        assert_eq!(desired::rollout_message(&conn, 7).unwrap(), None);
    }

    #[test]
    fn a_rollback_that_would_move_subscribers_terms_leaves_the_failed_version() {
        let mut conn = crate::store::test_conn(&["t1", "t2"]);
        let stable = manifest("1.0.0", "victim", "");
        let failed = manifest("2.0.0", "svc", "");
        let more_roles = manifest("3.0.0", "svc", r#""ROLE_TENANT_ADMIN""#);
        conn.execute(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, creation_time)
             VALUES (7, 't1', 'hello', 'hello-key', 'MICROSERVICE', 'MARKET', ?1, '2.0.0', 'now')",
            [&failed],
        )
        .unwrap();
        for (version, text) in [
            ("1.0.0", &stable),
            ("2.0.0", &failed),
            ("3.0.0", &more_roles),
        ] {
            conn.execute(
                "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, ?1, 'sha256:a', 't', 'p.zip', ?2, 'now')",
                [version, text.as_str()],
            )
            .unwrap();
        }
        let active = |conn: &Connection| applications::get_any(conn, 7).unwrap().active_version_id;
        // Subscribed only by its owner: the rollback goes through.
        conn.execute(
            "INSERT INTO subscriptions VALUES (7, 't1', 'u', 's', 'now')",
            [],
        )
        .unwrap();
        let back = roll_back(
            &mut conn,
            &maxima(GI),
            7,
            "2.0.0",
            "1.0.0",
            "not ready",
            &no_seal,
        )
        .unwrap();
        assert!(back.is_some());
        assert_eq!(active(&conn).as_deref(), Some("1.0.0"));
        // Back on 2.0.0, another tenant subscribes: the stable version's category would reach
        // its options of "victim", and 3.0.0's roles would be new to its service user.
        conn.execute(
            "UPDATE applications SET active_version_id = '2.0.0', manifest = ?1 WHERE id = 7",
            [&failed],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO subscriptions VALUES (7, 't2', 'u2', 's', 'now')",
            [],
        )
        .unwrap();
        for (to, named) in [("1.0.0", "\"victim\""), ("3.0.0", "ROLE_TENANT_ADMIN")] {
            let refused = roll_back(
                &mut conn,
                &maxima(GI),
                7,
                "2.0.0",
                to,
                "not ready",
                &no_seal,
            );
            assert!(
                matches!(&refused, Err(StoreError::Invalid(m)) if m.contains(named)),
                "{to}: {refused:?}"
            );
            assert_eq!(active(&conn).as_deref(), Some("2.0.0"), "{to}");
        }
    }
}
