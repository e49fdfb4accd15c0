//! `GET /application/currentApplication/settings`: a service's settings, in the shape its
//! client reads (see `tests/clients/README.md` for the evidence): the flat `{key: value}` values
//! (the REST documentation's shape, read by the Java SDK and pyc8y), or the list of setting
//! definitions for clients that ask for it by media type and for c8y-api. Values are those in force for the calling tenant: the subscriber's own option,
//! else (for `inheritFromOwner`) the owner's, else the manifest's default.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::current_application::bootstrap_application;
use super::error::ApiError;
use super::{AppState, db, media};
use crate::apps::settings::setting_keys;
use crate::auth::principal::Principal;
use crate::secrets::option_context;
use crate::store::applications::{self, resolved_manifest};
use crate::store::options::{self, TenantOption};
use crate::store::subscriptions;
use crate::store::users::UserKind;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/currentApplication/settings",
        web::get().to(current_settings),
    );
}

/// `GET /application/currentApplication/settings` in the shape the client's `Accept` names
/// (see [`settings_shape`]).
async fn current_settings(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let shape = settings_shape(
        header(actix_web::http::header::ACCEPT),
        header(actix_web::http::header::USER_AGENT),
    );
    let (definitions, values) = effective_settings(&principal, &state).await?;
    Ok(match shape {
        SettingsShape::Values => media::ok("option", &Value::Object(values)),
        SettingsShape::Definitions => {
            media::ok("applicationSettings", &settings_list(&definitions, &values))
        }
    })
}

/// The two answers real clients expect from `…/currentApplication/settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsShape {
    /// `{key: value}`, `credentials.` prefixes removed: the REST documentation's answer, what
    /// the Java SDK (`CurrentApplicationSettingsApi`: `Accept: application/json`, read as
    /// `OptionsRepresentation`) and pyc8y (`Accept: …option+json`) read.
    Values,
    /// `[{key, defaultValue, valueSchema, editable, inheritFromOwner}]`: the OAS
    /// `applicationsettings+json` array, read by the generated Cumulocity clients (which ask for
    /// that media type) and by c8y-api (which sends `application/json` through requests).
    Definitions,
}

/// The `User-Agent` c8y-api sends: its session's headers replace requests' defaults
/// (`s.headers = {'Accept': …}` in `_create_session`), so urllib3 names itself. Not
/// `python-requests/…`: that is every other script written with requests, which asks for
/// `application/json` and reads the documented flat values.
const C8Y_API_AGENT: &str = "python-urllib3/";

/// Chooses the shape: by `Accept` when it names one of the two media types, else the flat
/// values, but for c8y-api, known by its Python HTTP library's `User-Agent` (it sets none of
/// its own): it and the Java SDK both send `application/json` and read different shapes.
pub fn settings_shape(accept: &str, user_agent: &str) -> SettingsShape {
    let asks = |wanted: &str| {
        accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case(wanted)
        })
    };
    if asks("application/vnd.com.nsn.cumulocity.option+json") {
        SettingsShape::Values
    } else if asks("application/vnd.com.nsn.cumulocity.applicationsettings+json")
        || user_agent.starts_with(C8Y_API_AGENT)
    {
        SettingsShape::Definitions
    } else {
        SettingsShape::Values
    }
}

/// The manifest's setting definitions, each with `defaultValue` the value in force for the
/// calling tenant (the same value the flat shape gives under its key without `credentials.`).
fn settings_list(
    definitions: &[manifests_schema::SettingOption],
    values: &Map<String, Value>,
) -> Value {
    let items: Vec<Value> = definitions
        .iter()
        .map(|d| {
            let plain = d
                .key
                .strip_prefix(subscriptions::SEALED_PREFIX)
                .unwrap_or(&d.key);
            json!({
                "key": d.key,
                "defaultValue": values.get(plain).cloned().unwrap_or(Value::Null),
                "valueSchema": d.value_schema.clone().unwrap_or_else(|| json!({"type": "string"})),
                "editable": d.editable,
                "inheritFromOwner": d.inherit_from_owner,
            })
        })
        .collect();
    Value::Array(items)
}

/// The calling service's setting definitions and the values in force for its tenant.
/// For each key the first of: the tenant's own value (one it wrote);
/// for a setting with `inheritFromOwner`, the owner tenant's option; the value Berth wrote
/// from the manifest; the manifest's default. `credentials.` keys are decrypted and lose their
/// prefix.
async fn effective_settings(
    principal: &Principal,
    state: &AppState,
) -> Result<(Vec<manifests_schema::SettingOption>, Map<String, Value>), ApiError> {
    let (app, tenant) = match principal.kind {
        UserKind::Bootstrap => {
            let app = bootstrap_application(state, principal).await?;
            let owner = app.owner.clone();
            (app, owner)
        }
        UserKind::Service => {
            let (t, u) = (principal.tenant.clone(), principal.user.clone());
            let app = db(state, "applications", move |c| {
                let sub = subscriptions::by_service_user(c, &t, &u)?.ok_or_else(|| {
                    crate::store::StoreError::NotFound("subscription no longer exists".into())
                })?;
                applications::get_any(c, sub.application_id)
            })
            .await?;
            (app, principal.tenant.clone())
        }
        UserKind::Person => return Err(ApiError::forbidden()),
    };
    // Without a manifest an application has no settings, and no category of its own to read
    // (its name claims none): reading the options of its name would hand a provider's service
    // whatever a subscriber keeps there.
    let Some(manifest) = resolved_manifest(&app) else {
        return Ok((Vec::new(), Map::new()));
    };
    let definitions = manifest.settings.clone();
    let manifest = Some(manifest);
    let (category, _) = setting_keys(&app);
    let mut flat = Map::new();
    let mut put = |key: &str, value: String| {
        let key = key
            .strip_prefix(subscriptions::SEALED_PREFIX)
            .unwrap_or(key);
        flat.insert(key.to_owned(), Value::String(value));
    };
    let mut inheriting = Vec::new();
    if let Some(manifest) = &manifest {
        for setting in &manifest.settings {
            let default = if setting.key.starts_with(subscriptions::SEALED_PREFIX) {
                state
                    .secrets
                    .open_setting_default(&category, &setting.key, &setting.default_value)
            } else {
                setting.default_value.clone()
            };
            put(&setting.key, default);
            if setting.inherit_from_owner && tenant != app.owner {
                inheriting.push(setting.key.clone());
            }
        }
    }
    let (t, owner, c) = (tenant.clone(), app.owner.clone(), category.clone());
    let (stored, owners) = db(state, "options", move |conn| {
        let stored = options::category(conn, &t, &c)?;
        let owners: Vec<TenantOption> = if inheriting.is_empty() {
            Vec::new()
        } else {
            options::category(conn, &owner, &c)?
                .into_iter()
                .filter(|o| inheriting.contains(&o.key))
                .collect()
        };
        Ok((stored, owners))
    })
    .await?;
    let open = |tenant: &str, option: TenantOption| -> Result<String, ApiError> {
        if option.encrypted {
            state
                .secrets
                .open(
                    &option_context(tenant, &category, &option.key),
                    &option.value,
                )
                .map_err(|e| ApiError::internal(&e.to_string()))
        } else {
            Ok(option.value)
        }
    };
    let (own, seeded): (Vec<_>, Vec<_>) = stored.into_iter().partition(|o| !o.from_manifest);
    for option in seeded {
        put(&option.key.clone(), open(&tenant, option)?);
    }
    for option in owners {
        put(&option.key.clone(), open(&app.owner, option)?);
    }
    for option in own {
        put(&option.key.clone(), open(&tenant, option)?);
    }
    Ok((definitions, flat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_option_media_type_asks_for_flat_values() {
        const JAVA_SDK: &str = "Apache-HttpClient/4.5.14 (Java/17.0.9)";
        const C8Y_API: &str = "python-urllib3/2.8.0";
        let cases = [
            (
                "application/vnd.com.nsn.cumulocity.option+json",
                C8Y_API,
                SettingsShape::Values,
            ),
            (
                "application/vnd.com.nsn.cumulocity.error+json, application/VND.com.nsn.cumulocity.option+json;ver=0.9",
                "",
                SettingsShape::Values,
            ),
            ("application/json", JAVA_SDK, SettingsShape::Values),
            ("application/json", "curl/7.88.1", SettingsShape::Values),
            ("application/json", C8Y_API, SettingsShape::Definitions),
            // A script of its own with requests: the documented values.
            (
                "application/json",
                "python-requests/2.32.3",
                SettingsShape::Values,
            ),
            ("*/*", "python-requests/2.32.3", SettingsShape::Values),
            (
                "application/vnd.com.nsn.cumulocity.applicationsettings+json",
                "",
                SettingsShape::Definitions,
            ),
            (
                "application/vnd.com.nsn.cumulocity.applicationsettings+json",
                JAVA_SDK,
                SettingsShape::Definitions,
            ),
            ("*/*", C8Y_API, SettingsShape::Definitions),
            ("*/*", "", SettingsShape::Values),
            ("", "", SettingsShape::Values),
        ];
        for (accept, agent, expected) in cases {
            assert_eq!(settings_shape(accept, agent), expected, "{accept} {agent}");
        }
    }
}
