//! The HTTP API: one function ([`configure`]) wires every Cumulocity-shaped resource; handlers
//! live in one module per resource, with their JSON wire types next to them.

mod api_roots;
pub mod application_lists;
mod application_status;
pub mod applications;
pub mod audit;
pub mod autoscaler;
mod challenge;
pub mod current_application;
pub mod current_settings;
pub mod current_user;
pub mod field_limits;
pub mod groups;
mod health;
pub mod hygiene;
pub mod instance_logs;
pub mod instance_usage;
pub mod login;
pub mod metrics;
pub mod options;
pub mod paging;
mod query_flag;
pub mod request_head;
pub mod roles;
pub mod security_headers;
pub mod subscriptions;
pub mod system_options;
pub mod tenant_references;
pub mod tenants;
pub mod upload;
pub mod usage;
pub mod user_access;
pub mod user_json;
pub mod user_rights;
pub mod users;
pub mod versions;

// Shared with the other listeners; re-exported so handlers keep their short paths.
pub use crate::edge::{error, media, origin};

use std::sync::Arc;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError};
use actix_web::{HttpRequest, web};

use crate::apps::FlowError;
use crate::auth::cache::CredentialCache;
use crate::config::Config;
use crate::routing::RoutingTable;
use crate::runtime::Runtime;
use crate::secrets::Secrets;
use crate::store::Store;
use error::ApiError;

/// Everything a handler may use.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub secrets: Arc<Secrets>,
    pub cache: Arc<CredentialCache>,
    /// Failed password checks per user and source (429 with Retry-After past the limits).
    pub throttle: crate::auth::throttle::Throttle,
    pub runtime: Arc<dyn Runtime>,
    /// Poke after changing subscriptions or versions; status and instances of deployments.
    pub supervisor: crate::supervisor::Handle,
    /// Ready upstreams per deployment (read by the proxy).
    pub routing: RoutingTable,
    /// The one audit writer (flushed at shutdown).
    pub audit: crate::audit::AuditLog,
    /// The application flows (upload, subscription, deletion, versions), over the same handles;
    /// handlers parse, call one, and render what it returns.
    pub apps: Arc<crate::apps::Apps>,
    /// Logs answers in progress, per tenant and in all ([`instance_logs`]).
    pub log_snapshots: instance_logs::Snapshots,
}

impl crate::auth::AuthContext for AppState {
    fn store(&self) -> &Store {
        &self.store
    }
    fn secrets(&self) -> &Secrets {
        &self.secrets
    }
    fn cache(&self) -> &CredentialCache {
        &self.cache
    }
    fn throttle(&self) -> &crate::auth::throttle::Throttle {
        &self.throttle
    }
}

impl crate::proxy::Platform for AppState {
    fn cached_caller(&self, key: &[u8; 32]) -> Option<Arc<crate::auth::principal::Principal>> {
        self.cache.get(key)
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn routing(&self) -> &RoutingTable {
        &self.routing
    }
}

/// Which listener the routes serve: only the public one believes forwarding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Clients, possibly behind the configured `trusted_proxies`.
    Public,
    /// Containers, which reach it directly: no proxy stands between them and Berth, and a
    /// `trusted_proxies` block may well cover the container networks (a load balancer's
    /// 10.0.0.0/8 covers the default pool), which would let a container choose the address
    /// its login throttling, audit records and forwarded headers see.
    Internal,
}

/// Registers every route, the extractor error mapping and the 404 fallback.
pub fn configure(
    state: web::Data<AppState>,
    listener: Listener,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let trusted = origin::TrustedProxies(match listener {
            Listener::Public => state.config.connections.trusted_proxies.clone(),
            Listener::Internal => Vec::new(),
        });
        let auth: web::Data<dyn crate::auth::AuthContext> =
            web::Data::from(state.clone().into_inner() as Arc<dyn crate::auth::AuthContext>);
        cfg.app_data(state)
            .app_data(web::Data::new(trusted))
            .app_data(auth)
            .app_data(
                web::JsonConfig::default()
                    .limit(1 << 20)
                    .content_type_required(false)
                    .content_type(|_| true)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::FormConfig::default().error_handler(form_error))
            .configure(login::routes)
            .configure(api_roots::routes)
            .configure(health::routes)
            .configure(metrics::routes)
            .configure(tenants::routes)
            .configure(options::routes)
            .configure(system_options::routes)
            .configure(current_user::routes)
            .configure(users::routes)
            .configure(user_rights::routes)
            .configure(groups::routes)
            .configure(roles::routes)
            .configure(subscriptions::routes)
            .configure(current_application::routes)
            .configure(current_settings::routes)
            .configure(application_lists::routes)
            .configure(applications::routes)
            .configure(instance_logs::routes)
            .configure(upload::routes)
            .configure(versions::routes)
            .configure(instance_usage::routes)
            .configure(usage::routes)
            .configure(audit::routes)
            .configure(autoscaler::routes)
            .default_service(web::to(not_found));
    }
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "general",
        &format!("No resource at {} {}", req.method(), req.path()),
    ))
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::invalid("general", &format!("Invalid body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("general", &format!("Malformed JSON: {e}"))
        }
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::too_large("general", "JSON body is too large")
        }
        other => ApiError::bad_request("general", &other.to_string()),
    };
    api.into()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::invalid("general", &format!("Invalid query: {err}")).into()
}

fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::not_found("general", &format!("Invalid path: {err}")).into()
}

fn form_error(err: UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    match err {
        // The same status as an oversize JSON body: the client must send less, not fix syntax.
        UrlencodedError::Overflow { .. } => {
            ApiError::too_large("general", &format!("Form too large: {err}"))
        }
        other => ApiError::bad_request("general", &format!("Invalid form: {other}")),
    }
    .into()
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> ApiError {
        match err {
            FlowError::NotFound { resource, message } => ApiError::not_found(resource, &message),
            FlowError::Forbidden => ApiError::forbidden(),
            FlowError::ForbiddenBecause(message) => ApiError::forbidden_because(&message),
            FlowError::Invalid { resource, message } => ApiError::invalid(resource, &message),
            FlowError::Limit(e) => e.into(),
            FlowError::Password(e) => users::hashing_error(e),
            FlowError::Store { resource, source } => ApiError::store(resource)(source),
            FlowError::Internal(detail) => ApiError::internal(&detail),
        }
    }
}

/// Runs a store call for `resource`, mapping its errors.
pub async fn db<R, F>(state: &AppState, resource: &'static str, f: F) -> Result<R, ApiError>
where
    R: Send + 'static,
    F: FnOnce(&mut rusqlite::Connection) -> Result<R, crate::store::StoreError> + Send + 'static,
{
    state.store.run(f).await.map_err(ApiError::store(resource))
}

/// Rejects a required text field that is missing or blank (422 naming it).
pub fn required<'a>(
    resource: &str,
    name: &str,
    value: &'a Option<String>,
) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::invalid(resource, &format!("{name} is required"))),
    }
}
