//! `POST /application/applications/{id}/binaries`: a microservice package is streamed to a
//! temporary file (never held in memory), then handed to the upload saga ([`apps::upload`]),
//! which checks it, loads its image and records the version, or undoes every step. Once
//! received, the upload runs detached from the request, so a client that leaves stops nothing
//! half-way.

use std::path::Path;
use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use manifests_schema::Manifest;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::applications::{MICROSERVICE, application_json};
use super::error::ApiError;
use super::{AppState, db, media};
use crate::apps::settings::{check_manifest_category, seal_setting, stored_manifest};
use crate::apps::upload::{self as saga, UploadError};
use crate::apps::{intents, limits};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::intents::{Intent, UploadIntent};
use crate::store::settings::SettingsUpdate;
use crate::store::subscriptions;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/binaries",
        web::post().to(upload),
    );
}

/// Streams the single file part of the multipart body to a temporary file under `dir`.
async fn receive_package(
    mut payload: Multipart,
    dir: &Path,
    limit: u64,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "applications",
            &format!("The package is larger than the upload limit of {limit} bytes"),
        )
    };
    let mut saved: Option<tempfile::NamedTempFile> = None;
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(|e| {
            ApiError::bad_request("applications", &format!("Invalid multipart body: {e}"))
        })?;
        let has_file_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .is_some();
        let is_file = has_file_name || matches!(field.name(), Some("file" | "data"));
        if !is_file {
            // Skip other parts (e.g. metadata), reading them so the body stays in sync.
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| {
                    ApiError::bad_request("applications", &format!("Invalid multipart body: {e}"))
                })?;
            }
            continue;
        }
        if saved.is_some() {
            return Err(ApiError::invalid(
                "applications",
                "The upload must contain exactly one file part",
            ));
        }
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .suffix(".zip")
            .tempfile_in(dir)
            .map_err(|e| ApiError::internal(&format!("temp file: {e}")))?;
        let mut file = tokio::fs::File::from_std(
            temp.reopen()
                .map_err(|e| ApiError::internal(&format!("temp file: {e}")))?,
        );
        let mut written: u64 = 0;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("applications", &format!("Invalid multipart body: {e}"))
            })?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large());
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(&format!("writing upload: {e}")))?;
        }
        // Made durable by the saga while the image loads (before the package is kept).
        file.flush()
            .await
            .map_err(|e| ApiError::internal(&format!("writing upload: {e}")))?;
        saved = Some(temp);
    }
    saved.ok_or_else(|| {
        ApiError::invalid(
            "applications",
            "The upload has no file part (send the ZIP as multipart field 'file')",
        )
    })
}

async fn upload(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: Multipart,
) -> Result<HttpResponse, ApiError> {
    principal.require(roles::APPLICATION_MANAGEMENT_ADMIN)?;
    let id: i64 = path.parse().map_err(|_| {
        ApiError::not_found(
            "applications",
            &format!("Could not find application by ID {path}"),
        )
    })?;
    let tenant = principal.tenant.clone();
    let app = db(&state, "applications", move |c| {
        applications::get(c, &tenant, id)
    })
    .await?;
    if app.app_type != MICROSERVICE {
        return Err(ApiError::invalid(
            "applications",
            "Only microservice packages can be uploaded to this application",
        ));
    }
    if let Some(length) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Multipart framing adds a few hundred bytes; anything far beyond the limit is refused
        // before a byte is written.
        if length > state.config.upload_limit.saturating_add(64 * 1024) {
            return Err(ApiError::too_large(
                "applications",
                &format!(
                    "The package is larger than the upload limit of {} bytes",
                    state.config.upload_limit
                ),
            ));
        }
    }
    let temp = receive_package(
        payload,
        &state.config.data_dir.join(crate::TMP_DIR),
        state.config.upload_limit,
    )
    .await?;
    // From here on detached from the request: a client that leaves does not stop the upload
    // half-way (it is carried through, or undone on failure).
    let platform = Uploads {
        state: state.clone().into_inner(),
        principal,
    };
    let accepted = tokio::spawn(saga::accept(platform, app, temp))
        .await
        .map_err(|e| ApiError::internal(&format!("upload to application {id}: {e}")))??;
    let base = media::base_url(&req);
    let body = application_json(&base, &accepted);
    Ok(media::created(
        &req,
        "application",
        &format!("{base}/application/applications/{id}"),
        &body,
    ))
}

/// The platform as the upload saga sees it, for one request's principal.
#[derive(Clone)]
struct Uploads {
    state: Arc<AppState>,
    principal: Principal,
}

impl saga::Platform for Uploads {
    type Error = ApiError;

    fn config(&self) -> &crate::config::Config {
        &self.state.config
    }

    fn store(&self) -> &crate::store::Store {
        &self.state.apps.store
    }

    fn runtime(&self) -> &dyn crate::runtime::Runtime {
        self.state.apps.runtime.as_ref()
    }

    fn limits(&self) -> &crate::limits::Limits {
        &self.state.apps.limits
    }

    fn installation(&self) -> &str {
        &self.state.apps.installation
    }

    fn upload_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.state.apps.upload_lock
    }

    fn admit<'a>(
        &'a self,
        app: &'a Application,
        manifest: &'a Manifest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let apps = &self.state.apps;
            check_manifest_category(apps, app, manifest).await?;
            Ok(limits::check_upload(apps, app.id, &app.owner, manifest).await?)
        })
    }

    fn version_settings(
        &self,
        conn: &rusqlite::Connection,
        app: &Application,
        manifest: &Manifest,
    ) -> Result<(Value, Vec<SettingsUpdate>), StoreError> {
        let secrets = &self.state.secrets;
        let stored = stored_manifest(secrets, &app.name, manifest)?;
        let settings = subscriptions::settings_updates(
            conn,
            app.id,
            &app.name,
            applications::resolved_manifest(app).as_ref(),
            manifest,
            &seal_setting(secrets),
        )?;
        Ok((stored, settings))
    }

    fn undo(&self, intent_id: i64, intent: UploadIntent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let apps = &self.state.apps;
            if !intents::undo_upload(apps, intent_id, &intent).await {
                intents::retry_later(Arc::clone(apps), intent_id, Intent::Upload(intent));
            }
        })
    }

    fn accepted(&self, app: &Application, version: &str, image: &str) {
        self.state.apps.record(
            &self.principal,
            &[app.owner.as_str()],
            (app.id, &app.name),
            "Application",
            "Package uploaded",
            format!("Version {version} of {} uploaded (image {image})", app.name),
        );
        self.state.apps.supervisor.poke();
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> ApiError {
        const RESOURCE: &str = "applications";
        match err {
            UploadError::Invalid(m) => ApiError::invalid(RESOURCE, &m),
            UploadError::TooLarge(m) => ApiError::too_large(RESOURCE, &m),
            UploadError::Conflict(m) => ApiError::conflict(RESOURCE, &m),
            UploadError::Unavailable { message, detail } => {
                ApiError::unavailable(RESOURCE, &message, &detail)
            }
            UploadError::Limit(e) => e.into(),
            UploadError::Store(e) => ApiError::store(RESOURCE)(e),
            UploadError::Internal(m) => ApiError::internal(&m),
        }
    }
}
