//! The `applications` and `ownedApplications` reference collections of a tenant's
//! representation (`/tenant/currentTenant`, `/tenant/tenants/{id}`): the applications it is
//! subscribed to and those it owns, as `{self, references: [{self, application}]}`.

use serde_json::{Value, json};

use super::applications::application_json;
use crate::store::applications::{self, Application};
use crate::store::{Page, StoreError, subscriptions};

/// What a tenant's representation lists.
#[derive(Debug, Default)]
pub struct TenantApplications {
    pub subscribed: Vec<Application>,
    pub owned: Vec<Application>,
}

/// The applications `tenant` is subscribed to and owns, as `viewer` may see them: a tenant
/// and the management tenant see every one it owns; a parent sees those it could subscribe
/// to as well (`MARKET`, and `SHARED` ones of its own subtenant are not offered upwards).
pub fn load(
    conn: &rusqlite::Connection,
    tenant: &str,
    viewer: &str,
    viewer_is_management: bool,
) -> Result<TenantApplications, StoreError> {
    let (ids, _) = subscriptions::of_tenant(conn, tenant, Page::ALL)?;
    let subscribed = ids
        .into_iter()
        .map(|id| applications::get_any(conn, id))
        .collect::<Result<Vec<_>, _>>()?;
    let (owned, _) = applications::list(conn, tenant, &Default::default(), Page::ALL)?;
    let owned = if viewer == tenant || viewer_is_management {
        owned
    } else {
        owned
            .into_iter()
            .filter(|a| a.availability == "MARKET")
            .collect()
    };
    Ok(TenantApplications { subscribed, owned })
}

/// Adds both collections to `body`, the representation of `tenant`.
pub fn add_to(body: &mut Value, base: &str, tenant: &str, apps: &TenantApplications) {
    let tenant_self = format!("{base}/tenant/tenants/{tenant}");
    let references = |list: &[Application], path: &str| -> Value {
        let items: Vec<Value> = list
            .iter()
            .map(|a| {
                json!({
                    "self": format!("{tenant_self}/{path}/{}", a.id),
                    "application": application_json(base, a),
                })
            })
            .collect();
        json!({"self": format!("{tenant_self}/{path}"), "references": items})
    };
    body["applications"] = references(&apps.subscribed, "applications");
    body["ownedApplications"] = references(&apps.owned, "ownedApplications");
}
