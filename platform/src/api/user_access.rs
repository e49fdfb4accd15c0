//! Who may act on users: the `ROLE_USER_MANAGEMENT_*` checks per tenant (the management
//! tenant administers its subtenants' users), role references and which roles a tenant may
//! assign, and the rules that nobody grants or touches rights they lack themselves.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::{AppState, db};
use crate::auth::principal::Principal;
use crate::auth::{grants, roles};
use crate::store::{tenants, users};

/// `{"role": {"self": ".../user/roles/ROLE_X"}}` or `{"role": {"id": "ROLE_X"}}`.
#[derive(Debug, Deserialize)]
pub struct RoleReferenceBody {
    pub(super) role: Option<Map<String, Value>>,
}

impl RoleReferenceBody {
    /// The referenced role name: `id`, `name`, or the last segment of `self`.
    pub fn role_name(&self) -> Result<String, ApiError> {
        let role = self.role.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "roles",
                "body must be {\"role\": {\"self\": \"<url of the role>\"}}",
            )
        })?;
        let name = ["id", "name"]
            .iter()
            .find_map(|k| role.get(*k).and_then(Value::as_str).map(str::to_owned))
            .or_else(|| {
                role.get("self")
                    .and_then(Value::as_str)
                    .and_then(|s| s.trim_end_matches('/').rsplit('/').next())
                    .map(str::to_owned)
            })
            .ok_or_else(|| ApiError::invalid("roles", "role reference needs self or id"))?;
        if roles::ALL.contains(&name.as_str()) || roles::is_role_name(&name) {
            Ok(name)
        } else {
            Err(ApiError::invalid("roles", &format!("Unknown role {name}")))
        }
    }
}

/// A role is assignable in `tenant` when it is in the catalogue or one of the `roles` of an
/// application the tenant is subscribed to.
pub async fn check_assignable(state: &AppState, tenant: &str, role: &str) -> Result<(), ApiError> {
    check_all_assignable(state, tenant, &[role.to_owned()]).await
}

/// [`check_assignable`] for every role of `wanted`, reading the tenant's state once.
pub async fn check_all_assignable(
    state: &AppState,
    tenant: &str,
    wanted: &[String],
) -> Result<(), ApiError> {
    if let Some(role) = wanted.iter().find(|r| grants::is_tenant_management(r)) {
        check_tenant_management_role(state, tenant, role).await?;
    }
    let mut beyond = wanted.iter().filter(|r| !roles::ALL.contains(&r.as_str()));
    let Some(first) = beyond.next() else {
        return Ok(());
    };
    let t = tenant.to_owned();
    let extra = db(state, "roles", move |c| {
        crate::store::subscriptions::assignable_roles(c, &t)
    })
    .await?;
    // Sorted and deduplicated by the store.
    match std::iter::once(first)
        .chain(beyond)
        .find(|r| extra.binary_search(r).is_err())
    {
        Some(unknown) => Err(ApiError::invalid(
            "roles",
            &format!("Unknown role {unknown}"),
        )),
        None => Ok(()),
    }
}

/// Tenant-management roles act on other tenants, so a tenant that may not create subtenants
/// has no use for them (and its admins must not be able to pick them up).
async fn check_tenant_management_role(
    state: &AppState,
    tenant: &str,
    role: &str,
) -> Result<(), ApiError> {
    if tenant == tenants::MANAGEMENT {
        return Ok(());
    }
    let t = tenant.to_owned();
    let may_create = db(state, "tenants", move |c| tenants::get(c, &t))
        .await?
        .is_some_and(|t| t.allow_create_tenants);
    if may_create {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "roles",
            &format!("{role} is only assignable in tenants allowed to create subtenants"),
        ))
    }
}

/// 403 unless the caller may grant every role of `wanted` ([`grants::covers`]); `what` names
/// what carries them, for the message.
pub fn require_grantable(
    principal: &Principal,
    wanted: &[String],
    what: &str,
) -> Result<(), ApiError> {
    let missing = grants::missing(&principal.roles, wanted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden_because(&format!(
        "You cannot grant {what}: it carries {} which you do not have",
        missing.join(", ")
    )))
}

/// 403 unless the caller holds every right of user `name` in `tenant`: nobody edits, deletes,
/// sets the password of or changes the rights of someone who has more rights than they do.
pub async fn require_outranks(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    name: &str,
) -> Result<(), ApiError> {
    let (t, n) = (tenant.to_owned(), name.to_owned());
    let held = db(state, "users", move |c| users::effective_roles(c, &t, &n)).await?;
    let missing = grants::missing(&principal.roles, &held);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden_because(&format!(
        "User {name} has {} which you do not have, so you cannot change them",
        missing.join(", ")
    )))
}

/// Roles that let a caller read users.
const READ_ROLES: &[&str] = &[
    roles::USER_MANAGEMENT_READ,
    roles::USER_MANAGEMENT_CREATE,
    roles::USER_MANAGEMENT_ADMIN,
];
/// Roles that let a caller create, change and delete users.
const ADMIN_ROLES: &[&str] = &[roles::USER_MANAGEMENT_ADMIN];

/// Whether the caller may act on the users of `tenant` with one of `needed`: in their own
/// tenant; or, from the management tenant with `ROLE_TENANT_MANAGEMENT_ADMIN` as well, in any
/// other tenant (every tenant descends from the management tenant, which administers them, as
/// its tenant API does). Ok(true) when that is another tenant, whose existence is still to check.
fn user_access(principal: &Principal, tenant: &str, needed: &[&str]) -> Result<bool, ApiError> {
    principal.require_any(needed)?;
    if principal.tenant == tenant {
        return Ok(false);
    }
    if !principal.is_management() {
        return Err(ApiError::forbidden());
    }
    principal.require(roles::TENANT_MANAGEMENT_ADMIN)?;
    Ok(true)
}

/// [`user_access`], and a subtenant named by the management tenant must exist (404 otherwise;
/// other callers learn nothing about other tenants, they get 403 first).
async fn access(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    needed: &[&str],
) -> Result<(), ApiError> {
    if !user_access(principal, tenant, needed)? {
        return Ok(());
    }
    let id = tenant.to_owned();
    if db(state, "tenants", move |c| tenants::exists(c, &id)).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "security",
            &format!("There is no tenant with id = {tenant}"),
        ))
    }
}

pub async fn read_access(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
) -> Result<(), ApiError> {
    access(state, principal, tenant, READ_ROLES).await
}

pub async fn admin_access(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
) -> Result<(), ApiError> {
    access(state, principal, tenant, ADMIN_ROLES).await
}
