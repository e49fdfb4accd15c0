//! `/application/applications…`: applications owned by the caller's tenant, the bootstrap user
//! of each microservice, and `/application/currentApplication` for that bootstrap user.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, application_status, db, media, required};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::secrets::bootstrap_context;
use crate::store::StoreError;
use crate::store::applications::{
    self, Application, ApplicationUpdate, NewApplication, NewBootstrapUser,
};
use crate::store::subscriptions;
use crate::store::tenants;
use crate::store::users::NewUser;

pub use crate::apps::MICROSERVICE;
const TYPES: &[&str] = &[MICROSERVICE, "HOSTED", "EXTERNAL"];
const AVAILABILITIES: &[&str] = &["PRIVATE", "MARKET", "SHARED"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/application/applications", web::post().to(create))
        .route("/application/applications/{id}", web::get().to(get))
        .route("/application/applications/{id}", web::put().to(update))
        .route("/application/applications/{id}", web::delete().to(delete))
        .route(
            "/application/applications/{id}/bootstrapUser",
            web::get().to(bootstrap_user),
        );
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationBody {
    name: Option<String>,
    key: Option<String>,
    #[serde(rename = "type")]
    app_type: Option<String>,
    availability: Option<String>,
    context_path: Option<String>,
    description: Option<String>,
    external_url: Option<String>,
    roles: Option<Vec<String>>,
    required_roles: Option<Vec<String>>,
}

impl super::field_limits::Bounded for ApplicationBody {
    fn check_sizes(&self) -> Result<(), ApiError> {
        super::field_limits::check(
            "applications",
            &[
                ("description", self.description.as_deref()),
                ("externalUrl", self.external_url.as_deref()),
                ("contextPath", self.context_path.as_deref()),
            ],
            None,
        )
    }
}

pub fn application_json(base: &str, app: &Application) -> Value {
    let mut body = json!({
        "id": app.id.to_string(),
        "self": format!("{base}/application/applications/{}", app.id),
        "name": app.name,
        "key": app.key,
        "type": app.app_type,
        "availability": app.availability,
        "owner": {"self": format!("{base}/tenant/tenants/{}", app.owner), "tenant": {"id": app.owner}},
        "roles": app.roles,
        "requiredRoles": app.required_roles,
    });
    // A microservice without one is served under its name, and clients building
    // `/service/<contextPath>` links (pyc8y's settings category too) read it from here.
    let context_path = app
        .context_path
        .clone()
        .or_else(|| (app.app_type == "MICROSERVICE").then(|| app.name.clone()));
    let fields = [
        ("contextPath", &context_path),
        ("description", &app.description),
        ("externalUrl", &app.external_url),
        ("activeVersionId", &app.active_version_id),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            body[name] = json!(v);
        }
    }
    if let Some(manifest) = &app.manifest {
        body["manifest"] = masked_manifest(manifest);
    }
    body
}

/// The manifest as shown: `credentials.` defaults masked like encrypted tenant options.
fn masked_manifest(manifest: &Value) -> Value {
    let mut shown = manifest.clone();
    let settings = shown.get_mut("settings").and_then(Value::as_array_mut);
    for setting in settings.into_iter().flatten() {
        let secret = setting["key"]
            .as_str()
            .is_some_and(|k| k.starts_with(subscriptions::SEALED_PREFIX));
        if secret && setting.get("defaultValue").is_some() {
            setting["defaultValue"] = json!(super::options::ENCRYPTED_PLACEHOLDER);
        }
    }
    shown
}

/// Application names become Docker tags, bootstrap user names and `/service/<name>` paths.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "applications",
            &format!(
                "{field} {value:?} may only contain letters, digits, '-', '_' and '.' (at most 128)"
            ),
        ))
    }
}

pub(crate) fn app_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::not_found(
            "applications",
            &format!("Could not find application by ID {text}"),
        )
    })
}

/// What a request on one of the caller's applications needs of the caller's roles.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Reading: `APPLICATION_MANAGEMENT_READ` or `_ADMIN`.
    Read,
    /// Changing: `APPLICATION_MANAGEMENT_ADMIN`.
    Admin,
}

/// The preamble of a request on one of the caller's applications: 403 unless the caller holds
/// the roles `access` needs, then the id in `id_text` (404 if it is no number). The caller's
/// own parameters are checked next, and then the application itself ([`own_application`]), so
/// a caller without the roles learns nothing from the answers.
pub(crate) fn authorized_id(
    principal: &Principal,
    access: Access,
    id_text: &str,
) -> Result<i64, ApiError> {
    match access {
        Access::Read => principal.require_any(&[
            roles::APPLICATION_MANAGEMENT_READ,
            roles::APPLICATION_MANAGEMENT_ADMIN,
        ])?,
        Access::Admin => principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?,
    }
    app_id(id_text)
}

/// The caller's own application `id` (404 for another tenant's, as for one that does not exist).
pub(crate) async fn own_application(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Application, ApiError> {
    let tenant = principal.tenant.clone();
    db(state, "applications", move |c| {
        applications::get(c, &tenant, id)
    })
    .await
}

fn check_roles(field: &str, roles: &[String]) -> Result<(), ApiError> {
    if roles.len() > roles::MAX_APPLICATION_ROLES {
        return Err(ApiError::invalid(
            "applications",
            &format!(
                "{field} may list at most {} roles",
                roles::MAX_APPLICATION_ROLES
            ),
        ));
    }
    match roles.iter().find(|r| !roles::is_role_name(r)) {
        Some(bad) => Err(ApiError::invalid(
            "applications",
            &format!(
                "{field} entry \"{bad:.80}\" is not a role name (ROLE_ followed by A-Z, 0-9, _; at most {} characters)",
                roles::MAX_ROLE_NAME
            ),
        )),
        None => Ok(()),
    }
}

async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<ApplicationBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?;
    let body = body.into_inner();
    let name = required("applications", "name", &body.name)?.to_owned();
    check_name("name", &name)?;
    let key = required("applications", "key", &body.key)?.to_owned();
    check_name("key", &key)?;
    let app_type = required("applications", "type", &body.app_type)?.to_ascii_uppercase();
    if !TYPES.contains(&app_type.as_str()) {
        return Err(ApiError::invalid(
            "applications",
            &format!("type must be one of {}", TYPES.join(", ")),
        ));
    }
    let availability = body
        .availability
        .unwrap_or_else(|| "PRIVATE".into())
        .to_ascii_uppercase();
    if !AVAILABILITIES.contains(&availability.as_str()) {
        return Err(ApiError::invalid(
            "applications",
            &format!("availability must be one of {}", AVAILABILITIES.join(", ")),
        ));
    }
    let roles = body.roles.unwrap_or_default();
    let required_roles = body.required_roles.unwrap_or_default();
    check_roles("roles", &roles)?;
    check_roles("requiredRoles", &required_roles)?;
    let bootstrap = if app_type == MICROSERVICE {
        let user_name = format!("{}{name}", crate::store::users::BOOTSTRAP_USER_PREFIX);
        let password = state
            .secrets
            .random_token(32)
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        let password_sealed = state
            .secrets
            .seal(&bootstrap_context(&principal.tenant, &user_name), &password)
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        let password_hash = crate::auth::machine_secret::hash(&password);
        Some(NewBootstrapUser {
            user: NewUser {
                user_name,
                password_hash,
                enabled: true,
                bootstrap: true,
                ..NewUser::default()
            },
            password_sealed,
        })
    } else {
        None
    };
    let new = NewApplication {
        owner: principal.tenant.clone(),
        name,
        key,
        app_type,
        availability,
        context_path: body.context_path,
        description: body.description,
        external_url: body.external_url,
        roles,
        required_roles,
    };
    let app = db(&state, "applications", move |c| {
        applications::create(c, &new, bootstrap.as_ref())
    })
    .await?;
    state.apps.record(
        &principal,
        &[app.owner.as_str()],
        (app.id, &app.name),
        "Application",
        "Created",
        format!("Application {} created", app.name),
    );
    let base = media::base_url(&req);
    let body = application_json(&base, &app);
    Ok(media::created(
        &req,
        "application",
        &format!("{base}/application/applications/{}", app.id),
        &body,
    ))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::APPLICATION_MANAGEMENT_READ,
        roles::APPLICATION_MANAGEMENT_ADMIN,
    ])?;
    let id = app_id(&path)?;
    let tenant = principal.tenant.clone();
    let (app, rollout_message) = db(&state, "applications", move |c| {
        Ok((
            visible(c, &tenant, id)?,
            crate::store::desired::rollout_message(c, id)?,
        ))
    })
    .await?;
    let mut body = application_json(&media::base_url(&req), &app);
    // How it runs is its owner's business.
    if app.app_type == MICROSERVICE && app.owner == principal.tenant {
        let mut status = state
            .supervisor
            .status(id)
            .map_or_else(application_status::none, |s| application_status::render(&s));
        status["rolloutMessage"] = json!(rollout_message);
        body["status"] = status;
    }
    Ok(media::ok("application", &body))
}

/// Application `id` if `tenant` may read it: it owns it, is subscribed to it or is offered it
/// (as `GET /application/applications?providedFor=` lists); otherwise NotFound, as for an id
/// that does not exist.
fn visible(
    conn: &rusqlite::Connection,
    tenant: &str,
    id: i64,
) -> Result<applications::Application, StoreError> {
    let app = applications::get_any(conn, id)?;
    if app.owner == tenant || subscriptions::get(conn, id, tenant)?.is_some() {
        return Ok(app);
    }
    let parent = tenants::get(conn, tenant)?.and_then(|t| t.parent);
    if subscriptions::offered_to(&app.availability, &app.owner, tenant, parent.as_deref()) {
        Ok(app)
    } else {
        Err(StoreError::NotFound(format!(
            "Could not find application by ID {id}"
        )))
    }
}

/// The container behind `instance` of the caller's application `id` (404 for another tenant's
/// application or an instance it does not have); shared by the log text and the log stream.
pub(crate) async fn instance_container(
    state: &AppState,
    principal: &Principal,
    id: i64,
    instance: &str,
) -> Result<String, ApiError> {
    own_application(state, principal, id).await?;
    state
        .supervisor
        .instance_container(id, instance)
        .ok_or_else(|| {
            ApiError::not_found(
                "applications",
                &format!("Application {id} has no instance {instance}; see status.deployments[].instances"),
            )
        })
}

async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ApplicationBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?;
    let id = app_id(&path)?;
    let body = body.into_inner();
    let tenant = principal.tenant.clone();
    let current = db(&state, "applications", move |c| {
        applications::get(c, &tenant, id)
    })
    .await?;
    if body
        .app_type
        .as_ref()
        .is_some_and(|t| !t.eq_ignore_ascii_case(&current.app_type))
    {
        return Err(ApiError::invalid("applications", "type cannot be changed"));
    }
    if current.app_type == MICROSERVICE && body.name.as_ref().is_some_and(|n| *n != current.name) {
        return Err(ApiError::invalid(
            "applications",
            "a microservice's name cannot be changed (its bootstrap user and images are named after it)",
        ));
    }
    for (field, value) in [("name", &body.name), ("key", &body.key)] {
        if let Some(v) = value {
            if v.trim().is_empty() {
                return Err(ApiError::invalid(
                    "applications",
                    &format!("{field} must not be blank"),
                ));
            }
            check_name(field, v)?;
        }
    }
    let availability = body.availability.map(|a| a.to_ascii_uppercase());
    if let Some(a) = &availability
        && !AVAILABILITIES.contains(&a.as_str())
    {
        return Err(ApiError::invalid(
            "applications",
            &format!("availability must be one of {}", AVAILABILITIES.join(", ")),
        ));
    }
    if let Some(r) = &body.roles {
        check_roles("roles", r)?;
    }
    if let Some(r) = &body.required_roles {
        check_roles("requiredRoles", r)?;
    }
    let update = ApplicationUpdate {
        name: body.name,
        key: body.key,
        availability,
        context_path: body.context_path,
        description: body.description,
        external_url: body.external_url,
        roles: body.roles,
        required_roles: body.required_roles,
    };
    let tenant = principal.tenant.clone();
    let roles_change = update.required_roles.is_some();
    let app = db(&state, "applications", move |c| {
        // Subscribers of other tenants keep the terms they subscribed to (`apps::terms`).
        applications::update(c, &tenant, id, &update, &|c, before, after| {
            crate::apps::terms::check_kept(c, before, &crate::apps::terms::Terms::of(after))
        })
    })
    .await?;
    if roles_change {
        state.apps.forget_service_credentials(id).await;
    }
    Ok(media::updated(
        &req,
        "application",
        &application_json(&media::base_url(&req), &app),
    ))
}

async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?;
    let id = app_id(&path)?;
    crate::apps::deletion::delete_application(&state.apps, principal, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn bootstrap_user(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?;
    let id = app_id(&path)?;
    let tenant = principal.tenant.clone();
    let app = db(&state, "applications", move |c| {
        applications::get(c, &tenant, id)
    })
    .await?;
    let (Some(user), Some(sealed)) = (&app.bootstrap_user, &app.bootstrap_password_sealed) else {
        return Err(ApiError::bad_request(
            "applications",
            "Can not get bootstrap user. Application is not a microservice",
        ));
    };
    let password = state
        .secrets
        .open(&bootstrap_context(&app.owner, user), sealed)
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(media::ok(
        "user",
        &json!({"tenant": app.owner, "name": user, "password": password}),
    ))
}
