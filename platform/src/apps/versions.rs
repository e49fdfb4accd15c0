//! Changing an application's stored versions: activating one (a manual rollback or
//! roll-forward, by giving it the tag `latest`), re-tagging, and deleting one that does not
//! run. The store change, the audit record, the engine's leftovers and the supervisor's poke,
//! in that order, under the upload lock, so they never interleave with an upload's version
//! rules; each runs detached from the caller, so a client that leaves stops none half-way.

use std::sync::Arc;

use rusqlite::Connection;

use super::settings::seal_setting;
use super::{Apps, FlowError, settings_propagation};
use crate::auth::principal::Principal;
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::settings::Seal;
use crate::store::versions;

/// What [`activate`] did.
#[derive(Debug, Clone)]
pub struct Activation {
    pub application: Application,
    /// The version that was active before (None: the version was active already, or none was).
    pub previous: Option<String>,
}

/// Makes a stored version the active one (it takes the `latest` tag): the application shows
/// its manifest and roles, and the subscribed tenants' settings become that version's, in one
/// transaction. The supervisor then rolls it out like an upload, and rolls it back to the
/// stable version if it does not become ready. Activating the active version changes nothing.
/// Invalid, changing nothing, when its settings would take a subscriber past an options cap,
/// or its manifest the owner's applications past their manifest budget
/// (`super::manifest_budget`: unlike the supervisor's rollback, which the budget always has
/// room for, an activation may choose any kept version, and other applications may have
/// taken the room it had when it was written).
fn make_active(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    version: &str,
    seal: &Seal<'_>,
) -> Result<Activation, StoreError> {
    let tx = conn.transaction()?;
    let before = applications::get(&tx, tenant, id)?;
    versions::require_version(&tx, id, version)?;
    if before.active_version_id.as_deref() == Some(version) {
        return Ok(Activation {
            application: before,
            previous: None,
        });
    }
    let shown_before = super::manifest_budget::shown(&tx, tenant)?;
    versions::set_active(&tx, id, version)?;
    super::manifest_budget::check_in(&tx, tenant, shown_before)?;
    let after = applications::get(&tx, tenant, id)?;
    // Here as well as before the transaction: the roles its subscribers' service users get
    // are the version row's, whatever its manifest says.
    super::terms::check_kept(&tx, &before, &super::terms::Terms::of(&after))?;
    settings_propagation::follow(&tx, &before, &after, seal)?;
    tx.commit()?;
    Ok(Activation {
        application: after,
        previous: before.active_version_id,
    })
}

/// Makes `version` the active version of the caller's application `id`. The supervisor then
/// replaces the running instances with it (rolling back to the stable version if it does not
/// become ready, as after an upload).
async fn activate(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<Activation, FlowError> {
    let _guard = apps.upload_lock.lock().await;
    // The older version's resources must fit what the host can still commit, as at its upload
    // (limits or other deployments may have changed since).
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let stored = apps
        .db("applications", move |c| {
            applications::get(c, &tenant, id)?;
            crate::store::desired::version_image(c, id, &wanted)
        })
        .await?;
    if let Some((_, text)) = stored {
        // A kept manifest that no longer validates would skip every check below.
        let manifest = manifests_schema::validate(&text).map_err(|rejected| {
            FlowError::invalid(
                "applications",
                format!(
                    "Version {version} cannot be activated: its kept manifest does not validate ({rejected}); upload it again"
                ),
            )
        })?;
        super::limits::check_upload(apps, id, &principal.tenant, &manifest.manifest).await?;
        super::terms::check_manifest(apps, id, &principal.tenant, &manifest.manifest).await?;
    }
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let secrets = Arc::clone(&apps.secrets);
    let done = apps
        .db("applications", move |c| {
            make_active(c, &tenant, id, &wanted, &seal_setting(&secrets))
        })
        .await?;
    if done.previous.is_some() {
        apps.forget_service_credentials(id).await;
    }
    if let Some(previous) = &done.previous {
        let app = &done.application;
        tracing::info!(tenant = %app.owner, application = %app.name, %version, %previous, "version activated");
        apps.record(
            principal,
            &[app.owner.as_str()],
            (id, &app.name),
            "Application",
            "Version activated",
            format!(
                "Version {version} of {} activated (was {previous})",
                app.name
            ),
        );
        apps.supervisor.poke();
    }
    Ok(done)
}

/// Gives `version` of the caller's application `id` exactly `tags`, activating it first when
/// they include `latest`.
pub async fn set_tags(
    apps: &Arc<Apps>,
    principal: Principal,
    id: i64,
    version: String,
    tags: Vec<String>,
) -> Result<(), FlowError> {
    let worker = Arc::clone(apps);
    let named = version.clone();
    let task = tokio::spawn(async move {
        if tags.iter().any(|t| t == versions::LATEST) {
            activate(&worker, &principal, id, &version).await?;
        }
        let tenant = principal.tenant.clone();
        worker
            .db("applications", move |c| {
                versions::set_tags(c, &tenant, id, &version, &tags)
            })
            .await
    });
    task.await
        .map_err(|e| FlowError::Internal(format!("tagging version {named}: {e}")))?
}

/// Deletes a stored version that does not run (conflict for the active and the stable one),
/// then its image tag and package. A kill between the two leaves only what the supervisor's
/// tag sweep and the start's package sweep remove.
pub async fn delete(
    apps: &Arc<Apps>,
    principal: Principal,
    id: i64,
    version: String,
) -> Result<(), FlowError> {
    let apps = Arc::clone(apps);
    tokio::spawn(async move { remove(&apps, &principal, id, &version).await })
        .await
        .map_err(|e| FlowError::Internal(format!("deleting a version: {e}")))?
}

async fn remove(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<(), FlowError> {
    let _guard = apps.upload_lock.lock().await;
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let (app, stored) = apps
        .db("applications", move |c| {
            let app = applications::get(c, &tenant, id)?;
            Ok((app, versions::delete(c, &tenant, id, &wanted)?))
        })
        .await?;
    super::deletion::discard_version_artifacts(apps, &stored).await;
    apps.record(
        principal,
        &[app.owner.as_str()],
        (id, &app.name),
        "Application",
        "Version deleted",
        format!("Version {version} of {} deleted", app.name),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::options;

    fn manifest(version: &str, settings: &str) -> String {
        format!(
            r#"{{"apiVersion":"2","name":"hello","version":"{version}","provider":{{"name":"x"}},"settingsCategory":"cat","settings":[{settings}]}}"#
        )
    }

    fn no_seal(_: &str, _: &str, _: &str, v: &str) -> Result<String, StoreError> {
        Ok(v.to_owned())
    }

    #[test]
    fn activating_a_version_brings_the_subscribers_settings_along_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let v1 = manifest("1.0.0", r#"{"key":"greeting","defaultValue":"v1"}"#);
        let v2 = manifest(
            "2.0.0",
            r#"{"key":"greeting","defaultValue":"v2"},{"key":"gone","defaultValue":"g"}"#,
        );
        store
            .run_now(|c| {
                c.execute_batch(
                    "INSERT INTO tenants (id, domain, company, creation_time) VALUES ('t1', 't1.example', 'T', 'now');
                     INSERT INTO tenants (id, domain, company, creation_time) VALUES ('t2', 't2.example', 'U', 'now');",
                )?;
                c.execute(
                    "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, creation_time)
                     VALUES (7, 't1', 'hello', 'hello-key', 'MICROSERVICE', 'SHARED', ?1, '2.0.0', 'now')",
                    [&v2],
                )?;
                for (version, text) in [("1.0.0", &v1), ("2.0.0", &v2)] {
                    c.execute(
                        "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, ?1, 'sha256:a', 't', 'p.zip', ?2, 'now')",
                        [version, text.as_str()],
                    )?;
                }
                for tenant in ["t1", "t2"] {
                    c.execute(
                        "INSERT INTO subscriptions VALUES (7, ?1, 'u', 's', 'now')",
                        [tenant],
                    )?;
                    for (key, value) in [("greeting", "v2"), ("gone", "g")] {
                        options::replace(
                            c,
                            tenant,
                            &options::TenantOption {
                                category: "cat".into(),
                                key: key.into(),
                                value: value.into(),
                                encrypted: false,
                                editable: true,
                                from_manifest: true,
                            },
                        )?;
                    }
                }
                Ok(())
            })
            .unwrap();
        let done = store
            .run_now(|c| make_active(c, "t1", 7, "1.0.0", &no_seal))
            .unwrap();
        assert_eq!(done.previous.as_deref(), Some("2.0.0"));
        assert_eq!(done.application.active_version_id.as_deref(), Some("1.0.0"));
        for tenant in ["t1", "t2"] {
            let found: Vec<(String, String)> = store
                .run_now(|c| options::category(c, tenant, "cat"))
                .unwrap()
                .into_iter()
                .map(|o| (o.key, o.value))
                .collect();
            assert_eq!(found, vec![("greeting".into(), "v1".into())], "{tenant}");
        }
        // The active version again: nothing happens.
        let again = store
            .run_now(|c| make_active(c, "t1", 7, "1.0.0", &no_seal))
            .unwrap();
        assert_eq!(again.previous, None);
    }

    /// A kept version whose manifest no longer validates is refused before the transaction;
    /// the transaction itself still refuses roles its subscribers did not agree to, since
    /// the service users' roles are the version row's whatever its manifest says.
    #[test]
    fn an_activation_cannot_give_subscribers_service_users_more_roles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let evil = r#"{"requiredRoles":["ROLE_USER_MANAGEMENT_ADMIN"],"settings":"not a list"}"#;
        store
            .run_now(|c| {
                c.execute_batch(
                    "INSERT INTO tenants (id, domain, company, creation_time) VALUES ('o', 'o.example', 'O', 'now');
                     INSERT INTO tenants (id, domain, company, creation_time) VALUES ('v', 'v.example', 'V', 'now');
                     INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, required_roles, active_version_id, creation_time)
                         VALUES (7, 'o', 'hello', 'hello-key', 'MICROSERVICE', 'MARKET', '{}', '[]', '1.0.0', 'now');
                     INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time)
                         VALUES (7, '1.0.0', 'sha256:a', 't1', 'p1.zip', '{}', 'now');
                     INSERT INTO subscriptions VALUES (7, 'v', 'service_hello', 's', 'now');
                     INSERT INTO users (tenant_id, user_name, kind, password_hash, enabled, last_password_change, creation_time)
                         VALUES ('v', 'service_hello', 'SERVICE', 'h', 1, 'now', 'now');",
                )?;
                c.execute(
                    "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time)
                     VALUES (7, 'evil', 'sha256:b', 't2', 'p2.zip', ?1, 'now')",
                    [evil],
                )?;
                Ok(())
            })
            .unwrap();
        let refused = store
            .run_now(|c| make_active(c, "o", 7, "evil", &no_seal))
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::Invalid(m) if m.contains("ROLE_USER_MANAGEMENT_ADMIN")),
            "{refused:?}"
        );
        let (active, roles): (String, i64) = store
            .run_now(|c| {
                Ok(c.query_row(
                    "SELECT active_version_id, (SELECT COUNT(*) FROM user_roles WHERE tenant_id = 'v') FROM applications WHERE id = 7",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!((active.as_str(), roles), ("1.0.0", 0));
    }
}
