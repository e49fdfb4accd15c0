//! `/tenant/currentTenant` and `/tenant/tenants…`: the caller's tenant and its subtenants.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::paging::PageRequest;
use super::tenant_references::{self as references, TenantApplications};
use super::{AppState, db, media, required};
use crate::auth::principal::Principal;
use crate::auth::{password, roles};
use crate::store::tenants::{self, NewTenant, Tenant, TenantFilter, TenantUpdate};
use crate::store::users::{NewUser, check_person_name};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/currentTenant", web::get().to(current_tenant))
        .route("/tenant/tenants", web::get().to(list))
        .route("/tenant/tenants", web::post().to(create))
        .route("/tenant/tenants/{id}", web::get().to(get))
        .route("/tenant/tenants/{id}", web::put().to(update))
        .route("/tenant/tenants/{id}", web::delete().to(delete));
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantBody {
    id: Option<String>,
    company: Option<String>,
    domain: Option<String>,
    admin_name: Option<String>,
    admin_email: Option<String>,
    admin_pass: Option<String>,
    contact_name: Option<String>,
    contact_phone: Option<String>,
    custom_properties: Option<Map<String, Value>>,
}

impl super::field_limits::Bounded for TenantBody {
    fn check_sizes(&self) -> Result<(), ApiError> {
        super::field_limits::check(
            "tenants",
            &[
                ("company", self.company.as_deref()),
                ("domain", self.domain.as_deref()),
                ("adminEmail", self.admin_email.as_deref()),
                ("contactName", self.contact_name.as_deref()),
                ("contactPhone", self.contact_phone.as_deref()),
            ],
            self.custom_properties.as_ref(),
        )
    }
}

fn tenant_json(base: &str, t: &Tenant, apps: &TenantApplications) -> Value {
    let mut body = json!({
        "id": t.id,
        "self": format!("{base}/tenant/tenants/{}", t.id),
        "company": t.company,
        "domain": t.domain,
        "status": t.status,
        "allowCreateTenants": t.allow_create_tenants,
        "creationTime": t.creation_time,
        "customProperties": t.custom_properties,
    });
    references::add_to(&mut body, base, &t.id, apps);
    let fields = [
        ("parent", &t.parent),
        ("adminName", &t.admin_name),
        ("adminEmail", &t.admin_email),
        ("contactName", &t.contact_name),
        ("contactPhone", &t.contact_phone),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            body[name] = json!(v);
        }
    }
    body
}

async fn current_tenant(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = principal.tenant.clone();
    let (tenant, apps) = db(&state, "tenants", move |c| {
        let Some(tenant) = tenants::get(c, &id)? else {
            return Ok(None);
        };
        let apps = references::load(c, &id, &id, false)?;
        Ok(Some((tenant, apps)))
    })
    .await?
    .ok_or_else(|| ApiError::unauthorized("Tenant no longer exists"))?;
    let base = media::base_url(&req);
    // `id` as well as Cumulocity's `name`: clients parse this with their tenant model, which
    // reads the id from `id` (c8y-api's `Tenants.get_current().id`).
    let mut body = json!({
        "id": tenant.id,
        "name": tenant.id,
        "domainName": tenant.domain,
        "allowCreateTenants": tenant.allow_create_tenants,
        "customProperties": tenant.custom_properties,
        "self": format!("{base}/tenant/currentTenant"),
    });
    references::add_to(&mut body, &base, &tenant.id, &apps);
    if query.get("withParent").is_some_and(|v| v == "true")
        && let Some(parent) = &tenant.parent
    {
        body["parent"] = json!(parent);
    }
    Ok(media::ok("currentTenant", &body))
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
    ])?;
    let page = PageRequest::from_query(&query)?;
    let filter = TenantFilter {
        company: query.get("company").cloned(),
        domain: query.get("domain").cloned(),
    };
    let parent = principal.tenant.clone();
    let management = principal.is_management();
    let (items, total) = db(&state, "tenants", move |c| {
        let (list, total) = tenants::list_children(c, &parent, &filter, page.window())?;
        let items = list
            .into_iter()
            .map(|t| {
                let apps = references::load(c, &t.id, &parent, management)?;
                Ok((t, apps))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        Ok((items, total))
    })
    .await?;
    let base = media::base_url(&req);
    let items = items
        .iter()
        .map(|(t, apps)| tenant_json(&base, t, apps))
        .collect();
    Ok(media::ok(
        "tenantCollection",
        &page.collection(&req, "tenants", items, total),
    ))
}

/// An audit record of a change to tenant `id`, in the caller's tenant (the parent or the
/// management tenant), which keeps it after a deletion.
fn audit_tenant(state: &AppState, principal: &Principal, id: &str, activity: &str) {
    super::audit::record_change(
        state,
        principal,
        &[&principal.tenant],
        "Tenant",
        activity,
        format!("{activity}: {id}"),
    );
}

/// The applications `tenant` is subscribed to and owns, as the caller may see them.
async fn applications_of(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
) -> Result<TenantApplications, ApiError> {
    let (id, viewer, management) = (
        tenant.to_owned(),
        principal.tenant.clone(),
        principal.is_management(),
    );
    db(state, "tenants", move |c| {
        references::load(c, &id, &viewer, management)
    })
    .await
}

/// Loads a tenant the caller may see: their own, one of their subtenants, or any if management.
async fn visible_tenant(
    state: &AppState,
    principal: &Principal,
    id: String,
) -> Result<Tenant, ApiError> {
    let missing = format!("There is no tenant with id = {id}");
    let tenant = db(state, "tenants", move |c| tenants::get(c, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("security", &missing))?;
    let visible = principal.is_management()
        || tenant.parent.as_deref() == Some(principal.tenant.as_str())
        || tenant.id == principal.tenant;
    if visible {
        Ok(tenant)
    } else {
        Err(ApiError::forbidden())
    }
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
    ])?;
    let tenant = visible_tenant(&state, &principal, path.into_inner()).await?;
    let apps = applications_of(&state, &principal, &tenant.id).await?;
    Ok(media::ok(
        "tenant",
        &tenant_json(&media::base_url(&req), &tenant, &apps),
    ))
}

fn check_domain(domain: &str) -> Result<(), ApiError> {
    let valid = domain.len() <= 256
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(|c: char| c.is_ascii_lowercase())
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "tenants",
            &format!(
                "domain {domain:?} is not valid: use lower-case labels of letters, digits and '-', each starting with a letter"
            ),
        ))
    }
}

async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_ADMIN,
        roles::TENANT_MANAGEMENT_CREATE,
    ])?;
    let caller = principal.tenant.clone();
    let may_create = db(&state, "tenants", move |c| tenants::get(c, &caller))
        .await?
        .is_some_and(|t| t.allow_create_tenants);
    if !may_create {
        return Err(ApiError::forbidden());
    }
    let body = body.into_inner();
    let company = required("tenants", "company", &body.company)?.to_owned();
    let domain = required("tenants", "domain", &body.domain)?.to_ascii_lowercase();
    check_domain(&domain)?;
    let admin_name = required("tenants", "adminName", &body.admin_name)?.to_owned();
    check_person_name(&admin_name)
        .map_err(|r| ApiError::invalid("tenants", &format!("adminName {r}")))?;
    let admin_pass = required("tenants", "adminPass", &body.admin_pass)?.to_owned();
    password::check_for_user(&admin_pass, &admin_name, body.admin_email.as_deref())
        .map_err(|r| ApiError::invalid("tenants", &format!("adminPass: {r}")))?;
    let requested_id = match body.id.as_deref() {
        Some(id) => {
            let valid = id.len() >= 2
                && id.len() <= 32
                && id.starts_with(|c: char| c.is_ascii_lowercase())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if id == crate::routing::SHARED {
                // A PER_TENANT deployment of it would take the shared deployment's names.
                return Err(ApiError::invalid(
                    "tenants",
                    &format!("id {id:?} is reserved by the platform; choose another"),
                ));
            }
            if !valid || id == tenants::MANAGEMENT {
                return Err(ApiError::invalid(
                    "tenants",
                    &format!(
                        "id {id:?} is not valid: 2-32 lower-case letters, digits, '-' or '_', starting with a letter"
                    ),
                ));
            }
            Some(id.to_owned())
        }
        None => None,
    };
    let hash = super::users::hash_password(admin_pass, &principal.tenant).await?;
    let admin = NewUser {
        user_name: admin_name,
        password_hash: hash,
        email: body.admin_email.clone(),
        enabled: true,
        ..NewUser::default()
    };
    let mut attempts = 0;
    let tenant = loop {
        let id = match &requested_id {
            Some(id) => id.clone(),
            None => format!(
                "t{}",
                state
                    .secrets
                    .random_digits(8)
                    .map_err(|e| ApiError::internal(&e.to_string()))?
            ),
        };
        let new = NewTenant {
            id,
            domain: domain.clone(),
            company: company.clone(),
            parent: Some(principal.tenant.clone()),
            contact_name: body.contact_name.clone(),
            contact_phone: body.contact_phone.clone(),
            custom_properties: body.custom_properties.clone().unwrap_or_default(),
            allow_create_tenants: false,
        };
        let admin = admin.clone();
        let result = state.store.run(move |c| {
            if tenants::exists(c, &new.id)? {
                return Ok(None);
            }
            tenants::create(c, &new, &admin, roles::SUBTENANT_GROUPS).map(Some)
        });
        match result.await {
            Ok(Some(t)) => break t,
            Ok(None) if requested_id.is_none() && attempts < 5 => attempts += 1,
            Ok(None) => {
                return Err(ApiError::conflict(
                    "tenants",
                    "Tenant with this id already exists",
                ));
            }
            Err(e) => return Err(ApiError::store("tenants")(e)),
        }
    };
    audit_tenant(&state, &principal, &tenant.id, "Tenant created");
    let base = media::base_url(&req);
    Ok(media::created(
        &req,
        "tenant",
        &format!("{base}/tenant/tenants/{}", tenant.id),
        &tenant_json(&base, &tenant, &TenantApplications::default()),
    ))
}

async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_ADMIN,
        roles::TENANT_MANAGEMENT_UPDATE,
    ])?;
    let tenant = visible_tenant(&state, &principal, path.into_inner()).await?;
    if tenant.id == principal.tenant && !principal.is_management() {
        return Err(ApiError::forbidden());
    }
    let body = body.into_inner();
    if let Some(domain) = &body.domain {
        check_domain(domain)?;
    }
    if let Some(pass) = &body.admin_pass {
        let admin = tenant.admin_name.as_deref().unwrap_or_default();
        password::check_for_user(pass, admin, body.admin_email.as_deref())
            .map_err(|r| ApiError::invalid("tenants", &format!("adminPass: {r}")))?;
    }
    let update = TenantUpdate {
        domain: body.domain.map(|d| d.to_ascii_lowercase()),
        company: body.company,
        contact_name: body.contact_name,
        contact_phone: body.contact_phone,
        admin_email: body.admin_email,
        custom_properties: body.custom_properties,
    };
    let new_hash = match body.admin_pass {
        Some(pass) => Some(super::users::hash_password(pass, &principal.tenant).await?),
        None => None,
    };
    let id = tenant.id.clone();
    let admin = tenant.admin_name.clone();
    let updated = db(&state, "tenants", move |c| {
        let updated = tenants::update(c, &id, &update)?;
        if let (Some(hash), Some(admin)) = (new_hash, admin) {
            crate::store::users::set_password(c, &id, &admin, &hash)?;
        }
        Ok(updated)
    })
    .await?;
    state.cache.invalidate_tenant(&updated.id);
    audit_tenant(&state, &principal, &updated.id, "Tenant updated");
    let apps = applications_of(&state, &principal, &updated.id).await?;
    Ok(media::updated(
        &req,
        "tenant",
        &tenant_json(&media::base_url(&req), &updated, &apps),
    ))
}

async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::TENANT_MANAGEMENT_ADMIN)?;
    if !principal.is_management() {
        return Err(ApiError::forbidden());
    }
    let id = path.into_inner();
    if id == tenants::MANAGEMENT {
        return Err(ApiError::invalid(
            "tenants",
            "The management tenant cannot be deleted",
        ));
    }
    crate::apps::deletion::delete_tenant(&state.apps, id.clone()).await?;
    audit_tenant(&state, &principal, &id, "Tenant deleted");
    Ok(HttpResponse::NoContent().finish())
}
