//! Listings of applications: `GET /application/applications` with Cumulocity's filters
//! (`name`, `type`, `owner`, `providedFor`, `subscriber`, `tenant`, `user`) and the
//! `applicationsByName/{name}`, `…ByTenant/{tenantId}`, `…ByOwner/{tenantId}` and
//! `…ByUser/{userName}` shortcuts, all paged alike.
//!
//! A filter naming a tenant means what it means in Cumulocity: `owner` the applications it
//! owns, `providedFor` those it may subscribe to, `subscriber` those it is subscribed to,
//! `tenant` either (owned or subscribed). A caller may name their own tenant, or a tenant
//! they manage with tenant-management rights (a subtenant; any tenant from the management
//! tenant); any other tenant is a 403, so tenants learn nothing about each other.
//!
//! Without a tenant filter a listing (and `applicationsByName`) shows what the caller's tenant
//! may use, as Cumulocity does: what it owns, first, then what it is subscribed to or offered
//! (another tenant's MARKET applications, its parent's SHARED ones), by id. Clients rely on
//! both halves: c8y-api's and pyc8y's `select(name=…)` find the management tenant's MARKET
//! application from a subtenant, and the `microservice` deploy script uploads to
//! `applicationsByName`'s first application, which must be the caller's own when it has one.
//! Another tenant's PRIVATE application shows only to a tenant subscribed to it.

use std::collections::{BTreeSet, HashMap};

use actix_web::{HttpRequest, HttpResponse, web};

use super::applications::{MICROSERVICE, application_json};
use super::error::ApiError;
use super::paging::PageRequest;
use super::query_flag::flag;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::applications::{self, Application, ApplicationFilter};
use crate::store::{Page, StoreError, subscriptions, tenants, users};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/application/applications", web::get().to(list))
        .route(
            "/application/applicationsByName/{name}",
            web::get().to(by_name),
        )
        .route(
            "/application/applicationsByTenant/{tenant}",
            web::get().to(by_tenant),
        )
        .route(
            "/application/applicationsByOwner/{tenant}",
            web::get().to(by_owner),
        )
        .route(
            "/application/applicationsByUser/{user}",
            web::get().to(by_user),
        );
}

/// Which applications a listing starts from, before `name` and `type` narrow it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Owned(String),
    ProvidedFor(String),
    SubscribedBy(String),
    OwnedOrSubscribed(String),
    /// No tenant filter: owned first, then subscribed to or offered (see the module).
    Usable(String),
}

impl Scope {
    fn tenant(&self) -> &str {
        match self {
            Scope::Owned(t)
            | Scope::ProvidedFor(t)
            | Scope::SubscribedBy(t)
            | Scope::OwnedOrSubscribed(t)
            | Scope::Usable(t) => t,
        }
    }
}

/// The scope the query asks for: the first of `owner`, `providedFor`, `subscriber`, `tenant`
/// (`user` is resolved by the caller, as it needs the store); without one, what the caller's
/// tenant may use.
fn scope_of(query: &HashMap<String, String>, own: &str) -> Scope {
    let named = |k: &str| query.get(k).map(|t| t.trim().to_owned());
    if let Some(t) = named("owner") {
        Scope::Owned(t)
    } else if let Some(t) = named("providedFor") {
        Scope::ProvidedFor(t)
    } else if let Some(t) = named("subscriber") {
        Scope::SubscribedBy(t)
    } else if let Some(t) = named("tenant") {
        Scope::OwnedOrSubscribed(t)
    } else {
        Scope::Usable(own.to_owned())
    }
}

/// The ids a [`Scope::Usable`] listing shows, in its order: `owned` first, then the rest of
/// `subscribed` and `offered` by id, each once. All three come sorted by id.
fn usable_order(owned: Vec<i64>, subscribed: Vec<i64>, offered: Vec<i64>) -> Vec<i64> {
    let own: BTreeSet<i64> = owned.iter().copied().collect();
    let others: BTreeSet<i64> = subscribed
        .into_iter()
        .chain(offered)
        .filter(|id| !own.contains(id))
        .collect();
    owned.into_iter().chain(others).collect()
}

fn require_read(principal: &Principal) -> Result<(), ApiError> {
    principal.require_any(&[
        roles::APPLICATION_MANAGEMENT_READ,
        roles::APPLICATION_MANAGEMENT_ADMIN,
    ])
}

/// The caller may name `tenant`: their own, or one they manage (see the module comment).
async fn check_may_name(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
) -> Result<(), ApiError> {
    if tenant == principal.tenant {
        return Ok(());
    }
    let id = tenant.to_owned();
    let found = db(state, "tenants", move |c| tenants::get(c, &id)).await?;
    let manages = found.as_ref().is_some_and(|t| {
        principal.is_management() || t.parent.as_deref() == Some(principal.tenant.as_str())
    });
    if !manages {
        return Err(ApiError::forbidden_because(&format!(
            "You may list the applications of your own tenant and of tenants you manage, not of {tenant}"
        )));
    }
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
    ])
}

/// One page of the applications of `scope` matching `filter`, by id, and how many match:
/// the ids are selected in SQL, only the page's applications are read.
fn select(
    conn: &rusqlite::Connection,
    scope: &Scope,
    filter: &ApplicationFilter,
    has_versions: Option<bool>,
    page: Page,
) -> Result<(Vec<Application>, u64), StoreError> {
    let (name, app_type) = (filter.name.as_deref(), filter.app_type.as_deref());
    let mut ids: Vec<i64> = match scope {
        Scope::Owned(t) => applications::owned_ids(conn, t, filter)?,
        Scope::SubscribedBy(t) => subscriptions::subscribed(conn, t, name, app_type)?,
        Scope::OwnedOrSubscribed(t) => {
            let mut ids: BTreeSet<i64> = applications::owned_ids(conn, t, filter)?
                .into_iter()
                .collect();
            ids.extend(subscriptions::subscribed(conn, t, name, app_type)?);
            ids.into_iter().collect()
        }
        Scope::ProvidedFor(t) => {
            let parent = tenants::get(conn, t)?.and_then(|t| t.parent);
            subscriptions::offered(conn, t, parent.as_deref(), name, app_type)?
        }
        Scope::Usable(t) => {
            let parent = tenants::get(conn, t)?.and_then(|t| t.parent);
            usable_order(
                applications::owned_ids(conn, t, filter)?,
                subscriptions::subscribed(conn, t, name, app_type)?,
                subscriptions::offered(conn, t, parent.as_deref(), name, app_type)?,
            )
        }
    };
    if let Some(has) = has_versions {
        applications::retain_by_versions(conn, &mut ids, has)?;
    }
    let total = ids.len() as u64;
    let shown = ids
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
        .map(|id| applications::get_any(conn, id))
        .collect::<Result<_, _>>()?;
    Ok((shown, total))
}

/// Checks the caller may name the scope's tenant, selects and answers one page.
async fn answer(
    req: &HttpRequest,
    principal: &Principal,
    state: &AppState,
    query: &HashMap<String, String>,
    scope: Scope,
    name: Option<String>,
) -> Result<HttpResponse, ApiError> {
    require_read(principal)?;
    let page = PageRequest::from_query(query)?;
    check_may_name(state, principal, scope.tenant()).await?;
    let filter = ApplicationFilter {
        name: name.or_else(|| query.get("name").cloned()),
        app_type: query.get("type").map(|t| t.to_ascii_uppercase()),
        owner: None,
    };
    let has_versions = flag(query, "hasVersions", "applications")?;
    let window = page.window();
    let (apps, total) = db(state, "applications", move |c| {
        select(c, &scope, &filter, has_versions, window)
    })
    .await?;
    let base = media::base_url(req);
    // `withStatus=true` (Berth's): each of the caller's own microservices with its status, as
    // `GET …/{id}` shows it, so a list view needs one request, not one per application.
    let with_status = query.get("withStatus").is_some_and(|v| v == "true");
    let items = apps
        .iter()
        .map(|a| {
            let mut body = application_json(&base, a);
            if with_status && a.app_type == MICROSERVICE && a.owner == principal.tenant {
                body["status"] = state
                    .supervisor
                    .status(a.id)
                    .map_or_else(super::application_status::none, |s| {
                        super::application_status::render(&s)
                    });
            }
            body
        })
        .collect();
    Ok(media::ok(
        "applicationCollection",
        &page.collection(req, "applications", items, total),
    ))
}

/// `user=<name>` (and `…ByUser/{name}`): the applications a user of the caller's tenant may
/// use, i.e. those their tenant is subscribed to. Only users of the caller's own tenant can be
/// named (user names are per tenant); an unknown one is a 404.
async fn user_scope(
    state: &AppState,
    principal: &Principal,
    user: &str,
) -> Result<Scope, ApiError> {
    let (t, u) = (principal.tenant.clone(), user.to_owned());
    let exists = db(state, "users", move |c| users::get_user(c, &t, &u))
        .await?
        .is_some();
    if exists {
        Ok(Scope::SubscribedBy(principal.tenant.clone()))
    } else {
        Err(ApiError::not_found(
            "users",
            &format!("User {user} does not exist in tenant {}", principal.tenant),
        ))
    }
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_read(&principal)?;
    let scope = match query.get("user") {
        Some(user) => user_scope(&state, &principal, user).await?,
        None => scope_of(&query, &principal.tenant),
    };
    answer(&req, &principal, &state, &query, scope, None).await
}

async fn by_name(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope::Usable(principal.tenant.clone());
    let name = Some(path.into_inner());
    answer(&req, &principal, &state, &query, scope, name).await
}

async fn by_tenant(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope::OwnedOrSubscribed(path.into_inner());
    answer(&req, &principal, &state, &query, scope, None).await
}

async fn by_owner(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope::Owned(path.into_inner());
    answer(&req, &principal, &state, &query, scope, None).await
}

async fn by_user(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_read(&principal)?;
    let scope = user_scope(&state, &principal, &path.into_inner()).await?;
    answer(&req, &principal, &state, &query, scope, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tenant_filter_chooses_the_scope() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (q(&[]), Scope::Usable("me".into())),
            (q(&[("name", "x")]), Scope::Usable("me".into())),
            (q(&[("owner", "t1")]), Scope::Owned("t1".into())),
            (q(&[("providedFor", "t1")]), Scope::ProvidedFor("t1".into())),
            (q(&[("subscriber", "t1")]), Scope::SubscribedBy("t1".into())),
            (
                q(&[("tenant", "t1")]),
                Scope::OwnedOrSubscribed("t1".into()),
            ),
            (
                q(&[("subscriber", "t2"), ("owner", "t1")]),
                Scope::Owned("t1".into()),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(scope_of(&query, "me"), expected, "{query:?}");
        }
    }

    #[test]
    fn a_usable_listing_shows_owned_first_then_the_rest_by_id_once() {
        // (owned, subscribed, offered, shown)
        type Case<'a> = (&'a [i64], &'a [i64], &'a [i64], &'a [i64]);
        let cases: [Case; 6] = [
            (&[], &[], &[], &[]),
            (&[5, 9], &[], &[], &[5, 9]),
            // Offered includes the owner's own: shown once, among the owned.
            (&[5, 9], &[], &[1, 5, 7, 9], &[5, 9, 1, 7]),
            (&[], &[3, 8], &[1, 8], &[1, 3, 8]),
            // Subscribed to its own application: once, first.
            (&[4], &[2, 4], &[4, 6], &[4, 2, 6]),
            (&[10], &[1], &[], &[10, 1]),
        ];
        for (owned, subscribed, offered, expected) in cases {
            assert_eq!(
                usable_order(owned.to_vec(), subscribed.to_vec(), offered.to_vec()),
                expected,
                "{owned:?} {subscribed:?} {offered:?}"
            );
        }
    }
}
