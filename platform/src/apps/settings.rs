//! The rules of a manifest's settings the flows share: the category an application may claim,
//! the settings category and keys of its active manifest, room for them in the subscribed
//! tenants' options, and sealing (`credentials.` values
//! are stored only sealed, under their option's context).

use std::sync::Arc;

use manifests_schema::Manifest;
use serde_json::Value;

use super::{Apps, FlowError, settings_propagation};
use crate::secrets::{Secrets, setting_default_context};
use crate::store::StoreError;
use crate::store::applications::{self, Application, resolved_manifest};
use crate::store::subscriptions::{self, CategoryClaim};

/// The settings category and keys of an application's active manifest.
pub fn setting_keys(app: &Application) -> (String, Vec<String>) {
    let manifest = resolved_manifest(app);
    let category = manifest
        .as_ref()
        .map(|m| m.settings_category_or(&app.name).to_owned())
        .unwrap_or_else(|| app.name.clone());
    let keys = manifest
        .map(|m| m.settings.into_iter().map(|s| s.key).collect())
        .unwrap_or_default();
    (category, keys)
}

/// An upload's check: the new manifest's settings category must be the application's own
/// (invalid, naming it, otherwise).
pub async fn check_manifest_category(
    apps: &Apps,
    app: &Application,
    manifest: &Manifest,
) -> Result<(), FlowError> {
    let category = manifest.settings_category_or(&app.name).to_owned();
    let (id, c) = (app.id, category.clone());
    let claim = apps
        .db("applications", move |conn| {
            subscriptions::category_claim(conn, id, &c)
        })
        .await?;
    let why = match claim {
        CategoryClaim::Free => return Ok(()),
        CategoryClaim::Reserved => "is reserved for the platform's own tenant options",
        CategoryClaim::Taken => "is already the settings category of another application",
    };
    Err(FlowError::invalid(
        "applications",
        format!(
            "Settings category {category:?} {why}; set \"settingsCategory\" in cumulocity.json to a category of this application's own (letters, digits and '.')"
        ),
    ))
}

/// An upload's check before its image loads: the new manifest's settings must fit every
/// subscribed tenant's options caps (`settings_propagation::check`). The version's record
/// checks again in its transaction: tenants write options without the upload lock.
pub async fn check_settings_room(
    apps: &Apps,
    app: &Application,
    manifest: &Manifest,
) -> Result<(), FlowError> {
    let (owner, id) = (app.owner.clone(), app.id);
    let (manifest, secrets) = (manifest.clone(), Arc::clone(&apps.secrets));
    apps.db("applications", move |conn| {
        let app = applications::get(conn, &owner, id)?;
        let before = resolved_manifest(&app);
        let seal = seal_setting(&secrets);
        let plan = settings_propagation::plan(conn, &app, before.as_ref(), &manifest, &seal)?;
        settings_propagation::check(conn, &app, &plan)
    })
    .await
}

/// Seals a setting's value for a tenant, under the option's context.
pub fn seal_setting(
    secrets: &Secrets,
) -> impl Fn(&str, &str, &str, &str) -> Result<String, StoreError> + '_ {
    move |tenant, category, key, value| {
        secrets
            .seal_setting_for(tenant, category, key, value)
            .map_err(|e| StoreError::Seal(e.to_string()))
    }
}

/// The manifest as stored for an application: `credentials.` defaults sealed under their
/// setting's context, so neither the database nor a response holds them in clear. Invalid when
/// that form does not validate: every reader of a stored manifest validates it again, and one
/// that does not would be taken as no manifest (no terms, limits or settings to check).
pub fn stored_manifest(
    secrets: &Secrets,
    app_name: &str,
    manifest: &Manifest,
) -> Result<Value, StoreError> {
    let category = manifest.settings_category_or(app_name);
    let mut value = serde_json::to_value(manifest)?;
    let settings = value.get_mut("settings").and_then(Value::as_array_mut);
    for setting in settings.into_iter().flatten() {
        let Some(key) = setting["key"].as_str().map(str::to_owned) else {
            continue;
        };
        if let (true, Some(clear)) = (
            key.starts_with(subscriptions::SEALED_PREFIX),
            setting["defaultValue"].as_str(),
        ) {
            let sealed = secrets
                .seal(&setting_default_context(category, &key), clear)
                .map_err(|e| StoreError::Seal(e.to_string()))?;
            setting["defaultValue"] = Value::String(sealed);
        }
    }
    if let Err(rejected) = manifests_schema::validate(&value.to_string()) {
        return Err(StoreError::Invalid(format!(
            "The manifest as Berth keeps it (defaults filled in, credentials.* defaults sealed, which makes each about a third longer) does not validate: {rejected}; shorten those defaults or list fewer settings"
        )));
    }
    Ok(value)
}
