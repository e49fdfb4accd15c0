//! Resource maxima at the moments a cost arises: an upload (a new manifest for an application,
//! maybe already subscribed), a version's activation, a subscription (a new deployment) and a
//! failed rollout's rollback. Reads the desired state from the store and lets
//! [`crate::limits`] decide.

use std::collections::BTreeMap;

use manifests_schema::Manifest;

use super::{Apps, FlowError};
use crate::limits::{self, Cost, Planned, Stable};
use crate::store::desired::{self, DesiredApplication};
use crate::store::{StoreError, subscriptions};

/// What the costs are read from: each running microservice, with its stable version's manifest
/// text while a rollout is in progress.
type Rows = Vec<(DesiredApplication, Option<(String, String)>)>;

fn read(conn: &rusqlite::Connection) -> Result<Rows, StoreError> {
    let mut rows = Vec::new();
    for app in desired::desired(conn)? {
        let stable = match (app.stable_version.as_deref(), &app.stable_manifest) {
            // A re-upload replaced the stable version's row: what runs until the new upload is
            // ready is the manifest it became ready with, however small the new one is.
            (Some(stable), Some(text)) => Some((stable.to_owned(), text.clone())),
            (Some(stable), None) if stable != app.active_version => {
                desired::version_image(conn, app.application_id, stable)?
                    .map(|(_, text)| (stable.to_owned(), text))
            }
            _ => None,
        };
        rows.push((app, stable));
    }
    Ok(rows)
}

/// The microservices that run now (≥1 subscription), as costs, each with its stable version
/// while a rollout is in progress (see [`limits::charged`]). A stored manifest that no longer
/// validates costs nothing here: the supervisor cannot run it either.
fn costs(rows: &Rows, autoscale_max: u32) -> Vec<Planned> {
    rows.iter()
        .filter_map(|(app, stable)| {
            let manifest = manifests_schema::validate(&app.manifest).ok()?.manifest;
            let subscribers = app.subscriptions.iter().map(|s| s.tenant.clone()).collect();
            let mut planned = Planned::new(
                app.application_id,
                &app.owner,
                &manifest,
                subscribers,
                autoscale_max,
            );
            planned.stable = stable.as_ref().and_then(|(version, text)| {
                let manifest = manifests_schema::validate(text).ok()?.manifest;
                Some(Stable::new(version, &manifest, autoscale_max))
            });
            Some(planned)
        })
        .collect()
}

/// The costs in the caller's transaction, so a rollback decides on what it changes.
fn planned_in(conn: &rusqlite::Connection, autoscale_max: u32) -> Result<Vec<Planned>, StoreError> {
    Ok(costs(&read(conn)?, autoscale_max))
}

/// The costs, the manifests validated outside the store's lock.
async fn planned(apps: &Apps) -> Result<Vec<Planned>, FlowError> {
    let rows = apps.db("applications", |c| read(c)).await?;
    Ok(costs(&rows, apps.autoscale_max_replicas))
}

fn check_change(apps: &Apps, before: &[Planned], after: &[Planned]) -> Result<(), FlowError> {
    let (was, will): (BTreeMap<String, Cost>, _) =
        (limits::charges(before), limits::charges(after));
    Ok(limits::check_tenants(&was, &will, &apps.limits)?)
}

/// An upload of `manifest` to application `id` of `owner`: per-container maxima, then the
/// tenant sums as they would be with this manifest active. The subscribers are read from the
/// subscriptions, not from what runs: a subscription made before the first upload runs
/// nothing yet, and this upload is where its cost arises.
pub async fn check_upload(
    apps: &Apps,
    id: i64,
    owner: &str,
    manifest: &Manifest,
) -> Result<(), FlowError> {
    limits::check_container(manifest, &apps.limits)?;
    let before = planned(apps).await?;
    let subscribers: Vec<String> = apps
        .db("applications", move |c| {
            subscriptions::of_application(c, id)
        })
        .await?
        .into_iter()
        .map(|s| s.tenant)
        .collect();
    let mut after: Vec<Planned> = before
        .iter()
        .filter(|p| p.application_id != id)
        .cloned()
        .collect();
    let mut changed = Planned::new(
        id,
        owner,
        manifest,
        subscribers,
        apps.autoscale_max_replicas,
    );
    // A rollout in progress goes on with this manifest in place of the active one: its
    // stable version still runs, this very version re-uploaded too (the store keeps the
    // manifest it replaces, `applications::record_upload`). When the stable version is the
    // active one, what it costs is `before`'s and only growth is refused, so leaving it out
    // changes no answer.
    changed.stable = before
        .iter()
        .find(|p| p.application_id == id)
        .and_then(|p| p.stable.clone());
    after.push(changed);
    check_change(apps, &before, &after)
}

/// A subscription of `tenant` to application `id` (owned by `owner`, running `manifest`).
pub async fn check_subscription(
    apps: &Apps,
    id: i64,
    owner: &str,
    manifest: &Manifest,
    tenant: &str,
) -> Result<(), FlowError> {
    let before = planned(apps).await?;
    let mut after = before.clone();
    match after.iter_mut().find(|p| p.application_id == id) {
        Some(p) => p.subscribers.push(tenant.to_owned()),
        None => after.push(Planned::new(
            id,
            owner,
            manifest,
            vec![tenant.to_owned()],
            apps.autoscale_max_replicas,
        )),
    }
    check_change(apps, &before, &after)
}

/// A failed rollout's rollback to `restored`, in its transaction once the stable version is
/// active again: checked as that version's activation in place of the failed one (`failed`,
/// its manifest; one that no longer validates costs nothing, as in [`planned_in`]). The stable version is charged while a rollout is in progress, so this refuses
/// only what was never charged: a tenant over maxima lowered since, or state left by a Berth
/// that charged the active version alone. Refused, the rollback changes nothing
/// (`super::rollback` says what stays).
pub(super) fn check_rollback(
    conn: &rusqlite::Connection,
    application_id: i64,
    failed: Option<&Manifest>,
    restored: &str,
    maxima: &limits::Maxima,
) -> Result<(), StoreError> {
    let autoscale_max = maxima.autoscale_max;
    let after = planned_in(conn, autoscale_max)?;
    let Some(app) = after.iter().find(|p| p.application_id == application_id) else {
        return Ok(());
    };
    // A replaced manifest of the stable version was charged beside the failed one too.
    let as_failed = failed.map(|failed| Planned {
        stable: app.stable.clone(),
        ..Planned::new(
            application_id,
            &app.owner,
            failed,
            app.subscribers.clone(),
            autoscale_max,
        )
    });
    let before: Vec<Planned> = after
        .iter()
        .filter(|p| p.application_id != application_id)
        .cloned()
        .chain(as_failed)
        .collect();
    limits::check_tenants(
        &limits::charges(&before),
        &limits::charges(&after),
        &maxima.limits,
    )
    .map_err(|e| StoreError::Invalid(format!("with version {restored} active again: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(version: &str, memory: &str) -> String {
        format!(
            r#"{{"apiVersion":"2","name":"hello","version":"{version}","provider":{{"name":"x"}},"resources":{{"memory":"{memory}"}}}}"#
        )
    }

    #[test]
    fn a_replaced_stable_manifest_is_charged_until_its_successor_is_ready() {
        let mib = 1u64 << 20;
        // (case, active, stable, stored 1.0.0 / 2.0.0, replaced manifest, charged MiB)
        let cases = [
            (
                "stable as stored",
                "1.0.0",
                "1.0.0",
                ("16Mi", "32Mi"),
                None,
                16,
            ),
            (
                "the stable version re-uploaded smaller: the replaced one runs",
                "1.0.0",
                "1.0.0",
                ("16Mi", "32Mi"),
                Some("512Mi"),
                512,
            ),
            (
                "a version rollout",
                "2.0.0",
                "1.0.0",
                ("16Mi", "32Mi"),
                None,
                32,
            ),
            (
                "a version rollout after a re-upload: the replaced one, not the row",
                "2.0.0",
                "1.0.0",
                ("16Mi", "32Mi"),
                Some("512Mi"),
                512,
            ),
        ];
        for (case, active, stable, (one, two), replaced, charged) in cases {
            let conn = crate::store::test_conn(&["t1"]);
            let manifest = |version: &str| match version {
                "1.0.0" => sized("1.0.0", one),
                _ => sized("2.0.0", two),
            };
            conn.execute(
                "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, active_version_id, stable_version_id, stable_manifest, bootstrap_user, bootstrap_password_sealed, creation_time)
                 VALUES (7, 't1', 'app', 'app-key', 'MICROSERVICE', 'PRIVATE', ?1, ?2, ?3, ?4, 'b', 'p', 'now')",
                rusqlite::params![manifest(active), active, stable, replaced.map(|m| sized(stable, m))],
            )
            .unwrap();
            for version in ["1.0.0", "2.0.0"] {
                conn.execute(
                    "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time) VALUES (7, ?1, 'sha256:a', 't', 'p.zip', ?2, 'now')",
                    rusqlite::params![version, manifest(version)],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO subscriptions VALUES (7, 't1', 'u', 's', 'now')",
                [],
            )
            .unwrap();
            let planned = planned_in(&conn, 1).unwrap();
            assert_eq!(planned[0].charged().memory_bytes, charged * mib, "{case}");
        }
    }
}
