//! The domain layer: the flows that change applications (checking, acting on the engine and the
//! store, undoing on failure), called by the API's handlers, which only parse and render. No
//! HTTP type appears here: a flow takes an [`Apps`] context and the acting [`Principal`], and
//! fails with a [`FlowError`] the API renders.

pub mod deletion;
pub mod intents;
pub mod limits;
pub mod manifest_budget;
pub mod recount;
pub mod rollback;
pub mod settings;
pub mod settings_propagation;
pub mod subscriptions;
pub mod terms;
pub mod upload;
pub mod versions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Event};
use crate::auth::cache::CredentialCache;
use crate::auth::principal::Principal;
use crate::limits::{LimitError, Limits};
use crate::runtime::Runtime;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError};

/// The application type whose packages run as containers.
pub const MICROSERVICE: &str = "MICROSERVICE";
/// How long deleting or unsubscribing waits for the supervisor to remove containers.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(30);

/// What the flows act on: the same handles the API's state holds, named by what the flows do
/// with them. Built once at start; the API's state holds it.
#[derive(Debug)]
pub struct Apps {
    /// Packages are kept under it (`packages/…` paths in the store are relative to it).
    pub data_dir: PathBuf,
    pub store: Store,
    /// Seals service users' passwords and `credentials.` settings.
    pub secrets: Arc<Secrets>,
    /// Images in and out (upload, deletion, undo).
    pub runtime: Arc<dyn Runtime>,
    /// Poked after a change to what should run; `converge` waits for the containers to go.
    pub supervisor: crate::supervisor::Handle,
    pub audit: AuditLog,
    /// Verified credentials: a removed service or bootstrap user's entries are dropped.
    pub cache: Arc<CredentialCache>,
    /// Resource maxima in force (resolved against the engine's host at start).
    pub limits: Limits,
    /// The autoscaler's maximum, at which an AUTO service is charged.
    pub autoscale_max_replicas: u32,
    /// This installation's id: part of every image tag Berth adds (see [`upload`]).
    pub installation: String,
    /// Most bytes an uploaded package's image may unpack to.
    pub image_size_limit: u64,
    /// Most bytes a tenant's kept packages (zip + unpacked image) may take.
    pub tenant_storage_quota: u64,
    /// Flows that change versions, subscriptions' costs or images run one at a time, so the
    /// version rules, limits and image bookkeeping see a stable state.
    pub upload_lock: tokio::sync::Mutex<()>,
    /// Uploads whose image is read while the package arrives (each holds a blocking thread
    /// while it waits for bytes); the rest are read once received.
    pub arriving_uploads: tokio::sync::Semaphore,
    /// Uploads in progress, from the first byte of the body until the upload is accepted or
    /// undone: each holds a temporary file of up to the upload limit, so they are bounded in
    /// all and per tenant ([`upload::UPLOADS`], [`upload::TENANT_UPLOADS`]).
    pub uploads: Arc<crate::counts::Quota<String>>,
}

/// Why a flow refused or failed; the API renders each kind as its status and error body.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{message}")]
    NotFound {
        resource: &'static str,
        message: String,
    },
    /// The caller lacks a right (the message says nothing more).
    #[error("access is denied")]
    Forbidden,
    /// The caller may not do this, and may learn why.
    #[error("{0}")]
    ForbiddenBecause(String),
    #[error("{message}")]
    Invalid {
        resource: &'static str,
        message: String,
    },
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Hashing a service user's password: the process-wide bound was full, or it failed.
    #[error(transparent)]
    Password(#[from] crate::auth::password::PoolError),
    #[error("{resource}: {source}")]
    Store {
        resource: &'static str,
        source: StoreError,
    },
    #[error("{0}")]
    Internal(String),
}

impl FlowError {
    pub fn not_found(resource: &'static str, message: String) -> FlowError {
        FlowError::NotFound { resource, message }
    }

    pub fn invalid(resource: &'static str, message: String) -> FlowError {
        FlowError::Invalid { resource, message }
    }

    /// Maps a store error for `resource`.
    pub fn store(resource: &'static str) -> impl Fn(StoreError) -> FlowError {
        move |source| FlowError::Store { resource, source }
    }
}

/// Forbidden unless `principal` holds one of `roles`.
pub fn require_any(principal: &Principal, roles: &[&str]) -> Result<(), FlowError> {
    if principal.holds_any(roles) {
        Ok(())
    } else {
        Err(FlowError::Forbidden)
    }
}

impl Apps {
    /// Drops the cached credentials of `application_id`'s service users, whose roles follow
    /// the application's `requiredRoles` (called after those changed), so their next request
    /// is authorized with the roles they hold now.
    pub async fn forget_service_credentials(&self, application_id: i64) {
        let users = self
            .store
            .run(move |c| crate::store::subscriptions::service_users(c, application_id))
            .await;
        match users {
            Ok(users) => {
                for (tenant, user) in users {
                    self.cache.invalidate_user(&tenant, &user);
                }
            }
            Err(e) => {
                tracing::warn!(application = application_id, error = %e, "could not list the service users whose roles changed; their cached credentials expire within 5 minutes");
            }
        }
    }

    /// Runs a store call for `resource`, mapping its errors.
    pub async fn db<R, F>(&self, resource: &'static str, f: F) -> Result<R, FlowError>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.store.run(f).await.map_err(FlowError::store(resource))
    }

    /// Records a user's action on an application in each of `tenants` (e.g. the subscriber and
    /// the owner), through the one audit writer: the action already happened, so recording
    /// cannot fail it.
    pub fn record(
        &self,
        principal: &Principal,
        tenants: &[&str],
        application: (i64, &str),
        record_type: &str,
        activity: &str,
        text: String,
    ) {
        self.audit.record(Event::ByUser {
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
            user: principal.user.clone(),
            actor_tenant: principal.tenant.clone(),
            application: Some((application.0, application.1.to_owned())),
            record_type: record_type.to_owned(),
            activity: activity.to_owned(),
            text,
        });
    }
}
