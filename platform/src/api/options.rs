//! `/tenant/options…`: tenant options. Values of keys starting with `credentials.` are sealed
//! with the master key before they reach the database and are shown as `<<Encrypted>>` through
//! this API (only the platform itself decrypts them, e.g. for a microservice's settings).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::paging::PageRequest;
use super::{AppState, db, media, required};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::secrets::option_context;
use crate::store::options::{self, TenantOption};

/// Prefix of keys whose values are encrypted at rest.
pub const ENCRYPTED_PREFIX: &str = "credentials.";
/// What the API shows instead of an encrypted value.
pub const ENCRYPTED_PLACEHOLDER: &str = "<<Encrypted>>";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/options", web::get().to(list))
        .route("/tenant/options", web::post().to(create))
        .route("/tenant/options/{category}", web::get().to(get_category))
        .route("/tenant/options/{category}", web::put().to(put_category))
        .route("/tenant/options/{category}/{key}", web::get().to(get))
        .route("/tenant/options/{category}/{key}", web::put().to(update))
        .route("/tenant/options/{category}/{key}", web::delete().to(delete));
}

#[derive(Debug, Deserialize)]
struct OptionBody {
    category: Option<String>,
    key: Option<String>,
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ValueBody {
    value: Option<Value>,
}

/// A category as `{key: value}`, encrypted values shown as the placeholder.
fn category_json(items: Vec<TenantOption>) -> Map<String, Value> {
    items
        .into_iter()
        .map(|o| {
            let value = if o.encrypted {
                ENCRYPTED_PLACEHOLDER.to_owned()
            } else {
                o.value
            };
            (o.key, Value::String(value))
        })
        .collect()
}

fn option_json(base: &str, option: &TenantOption) -> Value {
    let value = if option.encrypted {
        ENCRYPTED_PLACEHOLDER
    } else {
        option.value.as_str()
    };
    json!({
        "category": option.category,
        "key": option.key,
        "value": value,
        "self": format!("{base}/tenant/options/{}/{}", option.category, option.key),
    })
}

fn check_name(field: &str, text: &str) -> Result<(), ApiError> {
    crate::store::names::check_printable(text)
        .map_err(|r| ApiError::invalid("options", &format!("{field} {r}")))?;
    if text.is_empty()
        || text.len() > 256
        || text.contains('/')
        || text.chars().any(char::is_whitespace)
    {
        return Err(ApiError::invalid(
            "options",
            &format!("{field} {text:?} must be 1-256 characters without '/' or whitespace"),
        ));
    }
    Ok(())
}

/// Longest option value, in bytes: options configure services; files belong elsewhere.
const MAX_VALUE: usize = 64 * 1024;
/// Most keys one `PUT /tenant/options/{category}` may set (each is written and audited).
const MAX_KEYS_PER_PUT: usize = 200;

/// Option values are strings; numbers and booleans are accepted and stored as text.
fn value_text(value: Option<&Value>) -> Result<String, ApiError> {
    match value {
        Some(Value::String(s)) if s.len() > MAX_VALUE => Err(ApiError::invalid(
            "options",
            &format!("value may be at most {MAX_VALUE} bytes, got {}", s.len()),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(_) => Err(ApiError::invalid("options", "value must be a string")),
        None => Err(ApiError::invalid("options", "value is required")),
    }
}

/// Seals the value when the key asks for encryption.
fn to_stored(
    state: &AppState,
    tenant: &str,
    category: &str,
    key: &str,
    value: String,
    editable: bool,
) -> Result<TenantOption, ApiError> {
    let encrypted = key.starts_with(ENCRYPTED_PREFIX);
    let value = if encrypted {
        state
            .secrets
            .seal(&option_context(tenant, category, key), &value)
            .map_err(|e| ApiError::internal(&e.to_string()))?
    } else {
        value
    };
    Ok(TenantOption {
        category: category.to_owned(),
        key: key.to_owned(),
        value,
        encrypted,
        editable,
        from_manifest: false,
    })
}

fn read_access(principal: &Principal) -> Result<(), ApiError> {
    principal.require_any(&[
        roles::OPTION_MANAGEMENT_READ,
        roles::OPTION_MANAGEMENT_ADMIN,
    ])
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    read_access(&principal)?;
    let page = PageRequest::from_query(&query)?;
    let tenant = principal.tenant.clone();
    let (items, total) = db(&state, "options", move |c| {
        options::list(c, &tenant, page.window())
    })
    .await?;
    let base = media::base_url(&req);
    let items = items.iter().map(|o| option_json(&base, o)).collect();
    Ok(media::ok(
        "optionCollection",
        &page.collection(&req, "options", items, total),
    ))
}

async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<OptionBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::OPTION_MANAGEMENT_ADMIN)?;
    let category = required("options", "category", &body.category)?.to_owned();
    let key = required("options", "key", &body.key)?.to_owned();
    check_name("category", &category)?;
    check_name("key", &key)?;
    let value = value_text(body.value.as_ref())?;
    let option = store_option(&state, &principal, &category, &key, value).await?;
    audit_option(&state, &principal, "Option created", &category, &key);
    let base = media::base_url(&req);
    let location = format!("{base}/tenant/options/{category}/{key}");
    Ok(media::created(
        &req,
        "option",
        &location,
        &option_json(&base, &option),
    ))
}

/// An audit record of a change to option `category`/`key` (never its value: it may be a
/// credential).
fn audit_option(
    state: &AppState,
    principal: &Principal,
    activity: &str,
    category: &str,
    key: &str,
) {
    super::audit::record_change(
        state,
        principal,
        &[&principal.tenant],
        "Option",
        activity,
        format!("{activity}: {category}/{key}"),
    );
}

/// Writes one option, refusing to overwrite a non-editable one (403).
async fn store_option(
    state: &AppState,
    principal: &Principal,
    category: &str,
    key: &str,
    value: String,
) -> Result<TenantOption, ApiError> {
    let option = to_stored(state, &principal.tenant, category, key, value, true)?;
    let tenant = principal.tenant.clone();
    let stored = option.clone();
    let written = db(state, "options", move |c| {
        options::put_all(c, &tenant, std::slice::from_ref(&stored))
    })
    .await?;
    match written {
        options::Written::All => Ok(option),
        options::Written::NotEditable => Err(ApiError::forbidden()),
    }
}

async fn get_category(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    read_access(&principal)?;
    let category = path.into_inner();
    let tenant = principal.tenant.clone();
    let items = db(&state, "options", move |c| {
        options::category(c, &tenant, &category)
    })
    .await?;
    let map = category_json(items);
    Ok(media::ok("option", &map))
}

async fn put_category(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::OPTION_MANAGEMENT_ADMIN)?;
    let category = path.into_inner();
    check_name("category", &category)?;
    if body.len() > MAX_KEYS_PER_PUT {
        return Err(ApiError::invalid(
            "options",
            &format!(
                "A category update may set at most {MAX_KEYS_PER_PUT} keys, got {}",
                body.len()
            ),
        ));
    }
    let mut stored = Vec::new();
    for (key, value) in body.iter() {
        check_name("key", key)?;
        stored.push(to_stored(
            &state,
            &principal.tenant,
            &category,
            key,
            value_text(Some(value))?,
            true,
        )?);
    }
    let tenant = principal.tenant.clone();
    // All keys or none: a non-editable key rejects the whole request.
    let written = db(&state, "options", move |c| {
        let tx = c.transaction()?;
        let written = options::put_all(&tx, &tenant, &stored)?;
        tx.commit()?;
        Ok(written)
    })
    .await?;
    if written == options::Written::NotEditable {
        return Err(ApiError::forbidden());
    }
    for key in body.keys() {
        audit_option(&state, &principal, "Option updated", &category, key);
    }
    let tenant = principal.tenant.clone();
    let category_clone = category.clone();
    let items = db(&state, "options", move |c| {
        options::category(c, &tenant, &category_clone)
    })
    .await?;
    let map = category_json(items);
    Ok(media::updated(&req, "option", &map))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    read_access(&principal)?;
    let (category, key) = path.into_inner();
    let tenant = principal.tenant.clone();
    let missing = format!("Unable to find option by given key: {category}/{key}");
    let option = db(&state, "options", move |c| {
        options::get(c, &tenant, &category, &key)
    })
    .await?
    .ok_or_else(|| ApiError::not_found("options", &missing))?;
    Ok(media::ok(
        "option",
        &option_json(&media::base_url(&req), &option),
    ))
}

async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<ValueBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::OPTION_MANAGEMENT_ADMIN)?;
    let (category, key) = path.into_inner();
    check_name("category", &category)?;
    check_name("key", &key)?;
    let value = value_text(body.value.as_ref())?;
    let option = store_option(&state, &principal, &category, &key, value).await?;
    audit_option(&state, &principal, "Option updated", &category, &key);
    Ok(media::updated(
        &req,
        "option",
        &option_json(&media::base_url(&req), &option),
    ))
}

async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::OPTION_MANAGEMENT_ADMIN)?;
    let (category, key) = path.into_inner();
    let tenant = principal.tenant.clone();
    let missing = format!("Unable to find option by given key: {category}/{key}");
    let (c2, k2) = (category.clone(), key.clone());
    let outcome = db(&state, "options", move |c| {
        match options::get(c, &tenant, &c2, &k2)? {
            None => Ok(None),
            Some(o) if !o.editable => Ok(Some(false)),
            Some(_) => options::delete(c, &tenant, &c2, &k2).map(Some),
        }
    })
    .await?;
    match outcome {
        None => Err(ApiError::not_found("options", &missing)),
        Some(false) => Err(ApiError::forbidden()),
        Some(true) => {
            audit_option(&state, &principal, "Option deleted", &category, &key);
            Ok(HttpResponse::NoContent().finish())
        }
    }
}
