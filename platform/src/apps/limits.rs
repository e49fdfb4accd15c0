//! Resource maxima at the moments a cost arises: an upload (a new manifest for an application,
//! maybe already subscribed), a version's activation and a subscription (a new deployment).
//! Reads the desired state from the store and lets [`crate::limits`] decide.

use std::collections::BTreeMap;

use manifests_schema::Manifest;

use super::{Apps, FlowError};
use crate::limits::{self, Cost, Planned};
use crate::store::subscriptions;

/// The microservices that run now (≥1 subscription), as costs. A stored manifest that no
/// longer validates costs nothing here: the supervisor cannot run it either.
async fn planned(apps: &Apps) -> Result<Vec<Planned>, FlowError> {
    let desired = apps
        .db("applications", |c| crate::store::desired::desired(c))
        .await?;
    let autoscale_max = apps.autoscale_max_replicas;
    Ok(desired
        .iter()
        .filter_map(|app| {
            let manifest = manifests_schema::validate(&app.manifest).ok()?.manifest;
            let subscribers = app.subscriptions.iter().map(|s| s.tenant.clone()).collect();
            Some(Planned::new(
                app.application_id,
                &app.owner,
                &manifest,
                subscribers,
                autoscale_max,
            ))
        })
        .collect())
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
    after.push(Planned::new(
        id,
        owner,
        manifest,
        subscribers,
        apps.autoscale_max_replicas,
    ));
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
