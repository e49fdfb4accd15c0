//! `/service/<segment>` resolution for a caller's tenant, cached in memory: the store is asked
//! once per (tenant, segment) and generation. Any write to the platform API that was not
//! refused bumps the generation (see [`Invalidate`]), so subscriptions, applications and their
//! manifests are never served stale after the write that changed them has answered; so does
//! the supervisor's rollback, through the routing table's catalog count.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::Method;
use futures_util::future::LocalBoxFuture;

use crate::routing::DeploymentKey;
use crate::series::apps::AppMetrics;
use crate::store::Store;
use crate::store::subscriptions::{self, ServiceTarget};
use crate::sync::RwLockExt;

/// Above this many cached resolutions the cache is emptied (bounds memory against callers
/// probing random names).
const MAX_ENTRIES: usize = 10_000;
/// Above this many for one tenant, that tenant's are emptied: a tenant probing random names
/// empties its own resolutions, not every tenant's (more than any tenant has services).
const MAX_TENANT_ENTRIES: usize = 500;

/// A resolved `/service/<segment>` for one tenant.
#[derive(Debug)]
pub struct Route {
    pub target: ServiceTarget,
    /// The deployment that serves this tenant.
    pub key: DeploymentKey,
    /// The calling tenant.
    pub caller: String,
    /// Round-robin position over the deployment's ready replicas.
    pub next: AtomicUsize,
    pub metrics: AppMetrics,
}

impl super::slots::Counted for Route {
    fn deployment(&self) -> &DeploymentKey {
        &self.key
    }
    fn caller(&self) -> &str {
        &self.caller
    }
    fn owner(&self) -> Option<&str> {
        let owner = self.target.owner.as_str();
        (owner != crate::store::tenants::MANAGEMENT).then_some(owner)
    }
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// The routing table's catalog count when it was resolved.
    catalog: u64,
    /// None: no microservice has this name or context path.
    route: Option<Arc<Route>>,
}

/// Resolutions by tenant, then by segment (two levels, so a lookup borrows `&str`s and
/// allocates nothing).
#[derive(Debug, Default)]
pub struct ServiceCache {
    generation: AtomicU64,
    entries: RwLock<HashMap<String, HashMap<String, Entry>>>,
}

impl ServiceCache {
    /// Forgets every resolution (called after each write to the platform API). The entries
    /// go too, so routes (and their metric handles) of deleted applications are not kept.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.writing().clear();
    }

    /// The route for `tenant` calling `/service/<segment>`: Ok(None) when no microservice has
    /// that name or context path. `catalog`: the routing table's catalog count now.
    pub async fn resolve(
        &self,
        store: &Store,
        catalog: u64,
        tenant: &str,
        segment: &str,
    ) -> Result<Option<Arc<Route>>, crate::store::StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        {
            let entries = self.entries.reading();
            if let Some(entry) = entries.get(tenant).and_then(|m| m.get(segment))
                && entry.generation == generation
                && entry.catalog == catalog
            {
                return Ok(entry.route.clone());
            }
        }
        let (t, s) = (tenant.to_owned(), segment.to_owned());
        let found = store
            .run(move |conn| subscriptions::resolve_service(conn, &s, &t))
            .await?;
        let route = found.map(|target| {
            Arc::new(Route {
                key: DeploymentKey::for_caller(target.application_id, target.per_tenant, tenant),
                caller: tenant.to_owned(),
                next: AtomicUsize::new(0),
                metrics: AppMetrics::new(&target.owner, &target.name),
                target,
            })
        });
        let mut entries = self.entries.writing();
        if entries.get(tenant).map_or(0, HashMap::len) >= MAX_TENANT_ENTRIES {
            entries.remove(tenant);
        }
        if entries.values().map(HashMap::len).sum::<usize>() >= MAX_ENTRIES {
            entries.clear();
        }
        // Stored with the generation read before the query: a write that raced with it has
        // bumped the generation, so this entry is already stale and will be looked up again.
        entries.entry(tenant.to_owned()).or_default().insert(
            segment.to_owned(),
            Entry {
                generation,
                catalog,
                route: route.clone(),
            },
        );
        Ok(route)
    }
}

/// Middleware over the platform API: after every request that may write (any method but
/// GET/HEAD/OPTIONS, outside `/service/`) and was not refused (4xx: nothing changed), the
/// resolution cache is invalidated. Refusals do not count, so a flood of unauthenticated or
/// invalid writes cannot make every tenant's proxied requests go to the store.
#[derive(Debug, Clone)]
pub struct Invalidate(pub Arc<ServiceCache>);

impl<S, B> Transform<S, ServiceRequest> for Invalidate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = InvalidateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(InvalidateService {
            service: Rc::new(service),
            cache: Arc::clone(&self.0),
        }))
    }
}

pub struct InvalidateService<S> {
    service: Rc<S>,
    cache: Arc<ServiceCache>,
}

/// Whether `req` may change something: any method but GET, HEAD and OPTIONS, outside the
/// proxy (whose requests belong to their upstream).
pub fn may_write(req: &ServiceRequest) -> bool {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    !read_only && !req.path().starts_with(super::SERVICE_PREFIX)
}

impl<S, B> Service<ServiceRequest> for InvalidateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    /// A write whose client went away first still gets here: `api::hygiene::run_writes_to_end`,
    /// outside this middleware on both listeners, runs it to its end.
    fn call(&self, req: ServiceRequest) -> Self::Future {
        let invalidate = may_write(&req).then(|| Arc::clone(&self.cache));
        let response = self.service.call(req);
        Box::pin(async move {
            let response = response.await;
            let refused = response
                .as_ref()
                .is_ok_and(|r| r.status().is_client_error());
            if let Some(cache) = invalidate
                && !refused
            {
                cache.invalidate();
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    fn cached(cache: &ServiceCache, tenant: &str) -> usize {
        let entries = cache.entries.read().unwrap();
        entries.get(tenant).map_or(0, HashMap::len)
    }

    #[tokio::test]
    async fn a_tenant_probing_names_empties_only_its_own_resolutions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cache = ServiceCache::default();
        cache.resolve(&store, 0, "t2", "hello").await.unwrap();
        for n in 0..MAX_TENANT_ENTRIES * 3 {
            cache
                .resolve(&store, 0, "t1", &format!("probe{n}"))
                .await
                .unwrap();
            assert!(cached(&cache, "t1") <= MAX_TENANT_ENTRIES);
        }
        assert_eq!(cached(&cache, "t2"), 1, "another tenant's resolution stays");
    }

    #[tokio::test]
    async fn a_change_the_supervisor_made_is_resolved_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store
            .run_now(|c| {
                c.execute(
                    "INSERT INTO tenants (id, domain, company, creation_time) VALUES ('o', 'o.example', 'o', 'now')",
                    [],
                )?;
                c.execute(
                    "INSERT INTO applications (id, owner_tenant, name, key, type, availability, manifest, creation_time)
                     VALUES (1, 'o', 'svc', 'svc-key', 'MICROSERVICE', 'MARKET', '{\"isolation\":\"PER_TENANT\"}', 'now')",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        let cache = ServiceCache::default();
        let per_tenant = |route: Option<Arc<Route>>| route.unwrap().key.tenant.is_some();
        let resolve = |catalog| cache.resolve(&store, catalog, "o", "svc");
        assert!(per_tenant(resolve(0).await.unwrap()));
        // A rollback restores a version of the other isolation, with no API write.
        store
            .run_now(|c| {
                c.execute(
                    "UPDATE applications SET manifest = '{\"isolation\":\"MULTI_TENANT\"}'",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        assert!(per_tenant(resolve(0).await.unwrap()), "cached");
        assert!(
            !per_tenant(resolve(1).await.unwrap()),
            "after the catalog moved"
        );
    }

    #[actix_web::test]
    async fn refused_writes_leave_the_resolutions_alone() {
        let cache = Arc::new(ServiceCache::default());
        let app = test::init_service(
            App::new()
                .wrap(Invalidate(Arc::clone(&cache)))
                .route("/refused", web::post().to(HttpResponse::Unauthorized))
                .route("/invalid", web::put().to(HttpResponse::UnprocessableEntity))
                .route("/done", web::post().to(HttpResponse::Created))
                .route(
                    "/failed",
                    web::delete().to(HttpResponse::InternalServerError),
                )
                .route("/read", web::get().to(HttpResponse::Ok)),
        )
        .await;
        // (request, whether the cache is invalidated)
        let cases = [
            (test::TestRequest::post().uri("/refused"), false),
            (test::TestRequest::put().uri("/invalid"), false),
            (test::TestRequest::get().uri("/read"), false),
            (test::TestRequest::post().uri("/done"), true),
            // Failed on the server's side: what it changed before is not known.
            (test::TestRequest::delete().uri("/failed"), true),
        ];
        for (req, invalidates) in cases {
            let req = req.to_request();
            let what = format!("{} {}", req.method(), req.path());
            let before = cache.generation.load(Ordering::Acquire);
            test::call_service(&app, req).await;
            let after = cache.generation.load(Ordering::Acquire);
            assert_eq!(after != before, invalidates, "{what}");
        }
    }
}
