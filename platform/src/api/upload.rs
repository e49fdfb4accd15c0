//! `POST /application/applications/{id}/binaries`: a microservice package is streamed to a
//! temporary file (never held in memory) while the upload saga ([`apps::upload`]) reads it as
//! it arrives: it checks it, loads its image and records the version, or undoes every step.
//! Once received, the upload runs detached from the request, so a client that leaves stops
//! nothing half-way.

use std::sync::Arc;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::applications::{MICROSERVICE, application_json};
use super::error::ApiError;
use super::{AppState, db, media};
use crate::apps::upload::{self as saga, UploadError};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::package::growing::Arriving;
use crate::store::applications;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/binaries",
        web::post().to(upload),
    );
}

/// How much of an upload is gathered before each write to its file.
const WRITE_BATCH: usize = 1 << 20;

/// The next item of the body, or 408 when the client sends nothing for `stall`.
async fn within<S: futures_util::Stream + Unpin>(
    stream: &mut S,
    stall: Duration,
) -> Result<Option<S::Item>, ApiError> {
    tokio::time::timeout(stall, stream.next()).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "applications/Request Timeout",
            &format!(
                "No part of the upload arrived for {} s (body_timeout); the upload was undone: send the package again",
                stall.as_secs()
            ),
        )
    })
}

/// Streams the single file part of the multipart body into `file`, telling `arriving` how much
/// is there after each write; refused when the body stalls for `stall`.
async fn receive_package(
    mut payload: Multipart,
    mut file: tokio::fs::File,
    (limit, stall): (u64, Duration),
    arriving: &Arriving,
) -> Result<(), ApiError> {
    let too_large = || {
        ApiError::too_large(
            "applications",
            &format!("The package is larger than the upload limit of {limit} bytes"),
        )
    };
    let mut saved = false;
    while let Some(field) = within(&mut payload, stall).await? {
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
            while let Some(chunk) = within(&mut field, stall).await? {
                chunk.map_err(|e| {
                    ApiError::bad_request("applications", &format!("Invalid multipart body: {e}"))
                })?;
            }
            continue;
        }
        if saved {
            return Err(ApiError::invalid(
                "applications",
                "The upload must contain exactly one file part",
            ));
        }
        let mut written: u64 = 0;
        // Multipart chunks are a few KiB: each write of tokio's file is a hop to a blocking
        // thread and back, so chunks are gathered and written a MiB at a time.
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let write_error = |e: std::io::Error| ApiError::internal(&format!("writing upload: {e}"));
        while let Some(chunk) = within(&mut field, stall).await? {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("applications", &format!("Invalid multipart body: {e}"))
            })?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large());
            }
            batch.extend_from_slice(&chunk);
            if batch.len() >= WRITE_BATCH {
                file.write_all(&batch).await.map_err(write_error)?;
                // tokio's file reports a write done before it is: flushed, the reader sees it.
                file.flush().await.map_err(write_error)?;
                arriving.advance(written);
                batch.clear();
            }
        }
        file.write_all(&batch).await.map_err(write_error)?;
        // Made durable by the saga while the image loads (before the package is kept).
        file.flush().await.map_err(write_error)?;
        arriving.advance(written);
        saved = true;
    }
    if !saved {
        return Err(ApiError::invalid(
            "applications",
            "The upload has no file part (send the ZIP as multipart field 'file')",
        ));
    }
    Ok(())
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
    // A place among the uploads in progress, held by the saga until it ends (a client that
    // leaves after sending the body does not free it early).
    let place = state
        .apps
        .uploads
        .take(principal.tenant.clone())
        .map_err(|over| busy(&principal.tenant, over))?;
    let temp = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".zip")
        .tempfile_in(state.config.data_dir.join(crate::TMP_DIR))
        .map_err(|e| ApiError::internal(&format!("temp file: {e}")))?;
    let file = tokio::fs::File::from_std(
        temp.reopen()
            .map_err(|e| ApiError::internal(&format!("temp file: {e}")))?,
    );
    // The saga reads the package while it arrives. It runs detached from the request: once
    // the body is received, a client that leaves does not stop the upload half-way (it is
    // carried through, or undone on failure); a body that breaks off ends it.
    let (arriving, arrival) = Arriving::new();
    let apps = Arc::clone(&state.apps);
    let saga = tokio::spawn(async move {
        let accepted = saga::accept_arriving(apps, principal, app, temp, arrival).await;
        drop(place);
        accepted
    });
    let bounds = (
        state.config.upload_limit,
        state.config.connections.body_timeout,
    );
    if let Err(refused) = receive_package(payload, file, bounds, &arriving).await {
        // Ended as failed, the arrival stops the saga, which removes the temp file: awaited, so
        // nothing of this upload is left on disk when the client reads the error.
        drop(arriving);
        let _ = saga.await;
        return Err(refused);
    }
    arriving.complete();
    let accepted = saga
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

/// 429 for an upload over the tenant's share of uploads in progress, 503 over the platform's.
fn busy(tenant: &str, over: crate::counts::Over) -> ApiError {
    use crate::counts::Over;
    match over {
        Over::Key { max } => ApiError::too_many_requests(
            "applications",
            &format!(
                "Tenant {tenant} has {max} uploads in progress, as many as one tenant may; retry once one has finished"
            ),
            BUSY_RETRY_AFTER_SECS,
        ),
        // Load shed, counted rather than logged one by one.
        Over::Total { max } => ApiError::shedding(
            "applications",
            &format!("The platform has {max} uploads in progress; retry once one has finished"),
        )
        .with_retry_after(BUSY_RETRY_AFTER_SECS),
    }
}

/// Seconds a client is told to wait before trying an upload again.
const BUSY_RETRY_AFTER_SECS: u64 = 5;

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
            UploadError::Flow(e) => e.into(),
            UploadError::Internal(m) => ApiError::internal(&m),
        }
    }
}
