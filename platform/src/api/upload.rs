//! `POST /application/applications/{id}/binaries`: a microservice package is streamed to a
//! temporary file (never held in memory), checked, its image loaded into Docker and tagged
//! `berth/<installation>/<tenant>-<app id>:<version>`, and the version recorded. Any failure undoes every step,
//! so a rejected upload leaves no row, no file and no image behind: an intent recorded before
//! the load names what to undo, done at once on failure and at the next start after a kill;
//! once received, the upload runs detached from the request, so a client that leaves stops
//! nothing half-way. An accepted version's settings replace the previous version's in every
//! subscribed tenant.

use std::path::Path;
use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::applications::{MICROSERVICE, application_json};
use super::error::ApiError;
use super::subscriptions::seal_setting;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::package::{self, Package, PackageError};
use crate::runtime::images;
use crate::storage;
use crate::store::applications::{self, UploadRecord, Version};
use crate::store::intents::{self, Intent, UploadIntent};
use crate::store::subscriptions;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/binaries",
        web::post().to(upload),
    );
}

/// Berth's image reference for one application version. The installation id is part of it:
/// several installations may share one engine, and tenant and application ids repeat across
/// them, so without it one installation's rollback or delete could untag another's image.
#[derive(Debug, Clone)]
struct BerthTag {
    repo: String,
    tag: String,
}

impl BerthTag {
    /// Refused (None) when the version does not fit a Docker tag.
    fn new(installation: &str, tenant: &str, app_id: i64, version: &str) -> Option<BerthTag> {
        Some(BerthTag {
            repo: format!(
                "{}{}-{app_id}",
                images::repository_prefix(installation),
                tenant.to_ascii_lowercase()
            ),
            tag: images::version_tag(version)?,
        })
    }

    fn reference(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
}

fn package_error(err: PackageError) -> ApiError {
    match err {
        PackageError::Io(e) => ApiError::internal(&format!("reading package: {e}")),
        too_large @ PackageError::ImageTooLarge { .. } => {
            ApiError::too_large("applications", &too_large.to_string())
        }
        other => ApiError::invalid("applications", &other.to_string()),
    }
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
        file.sync_all()
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

/// What the engine looked like before the load, so a failure can put it back (kept in the
/// upload's intent).
#[derive(Debug, Default)]
struct DockerBefore {
    image_existed: bool,
    /// What Berth's tag pointed at before (a previous snapshot upload).
    berth_tag: Option<String>,
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
    let accepted = tokio::spawn(accept(state.clone().into_inner(), principal, app, temp))
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

/// Checks the received package, loads and tags its image, keeps the package and records the
/// version, undoing every step on failure ([`crate::intents::undo_upload`]).
async fn accept(
    state: Arc<AppState>,
    principal: Principal,
    app: applications::Application,
    temp: tempfile::NamedTempFile,
) -> Result<applications::Application, ApiError> {
    let id = app.id;
    let temp_path = temp.path().to_owned();
    let image_limit = state.config.image_size_limit;
    let package = tokio::task::spawn_blocking(move || package::inspect(&temp_path, image_limit))
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))?
        .map_err(package_error)?;
    // Cumulocity refuses a package whose manifest names another application; checked before
    // anything is kept (the temporary file deletes itself).
    if let Some(named) = &package.manifest.manifest.name
        && *named != app.name
    {
        return Err(ApiError::invalid(
            "applications",
            &format!(
                "The package's manifest names application {named:?}, but it was uploaded to application {:?}; upload it to {named:?} or change the manifest's name",
                app.name
            ),
        ));
    }

    // One upload at a time: version rules and image bookkeeping need a stable view.
    let _guard = state.upload_lock.lock().await;
    super::subscriptions::check_manifest_category(&state, &app, &package.manifest.manifest).await?;
    let manifest = &package.manifest.manifest;
    super::limits::check_upload(&state, id, &app.owner, manifest).await?;
    let version = manifest.version.clone();
    let lookup = version.clone();
    let existing = db(&state, "applications", move |c| {
        applications::version(c, id, &lookup)
    })
    .await?;
    if let Some(existing) = &existing
        && !manifest.is_snapshot()
        && existing.image_id != package.image.id
    {
        return Err(ApiError::conflict(
            "applications",
            &format!(
                "Version {version} was already uploaded with a different image; release versions are immutable, bump the version (or use a -SNAPSHOT version)"
            ),
        ));
    }
    let berth_tag = BerthTag::new(&state.installation, &app.owner, id, &version).ok_or_else(|| {
        ApiError::invalid(
            "applications",
            &format!(
                "The version is too long: as a Docker tag (characters other than letters, digits, '.' and '-' take three) it needs more than {} characters; use a shorter version",
                images::MAX_TAG
            ),
        )
    })?;
    check_storage_quota(&state, &app.owner, &package, temp.path(), existing.as_ref()).await?;
    let before = docker_before(&state, &package, &berth_tag).await?;
    let package_file = format!(
        "{}/{}/{id}/{}-{}.zip",
        crate::PACKAGES_DIR,
        app.owner,
        berth_tag.tag,
        uuid::Uuid::new_v4().simple()
    );
    // Recorded before the engine is touched: a kill from here on is undone at the next start.
    let intent = UploadIntent {
        image_id: package.image.id.clone(),
        image_existed: before.image_existed,
        tag: berth_tag.reference(),
        tag_before: before.berth_tag,
        package_file: package_file.clone(),
    };
    let recorded = Intent::Upload(intent.clone());
    let intent_id = db(&state, "applications", move |c| {
        intents::record(c, &recorded)
    })
    .await?;
    let target = Target {
        tenant: &app.owner,
        id,
        tag: &berth_tag,
        version: &version,
        package_file: &package_file,
        intent: intent_id,
    };
    let (app, replaced) = match install(&state, &package, temp, &target).await {
        Ok(done) => done,
        Err(err) => {
            if !crate::intents::undo_upload(&state, intent_id, &intent).await {
                crate::intents::retry_later(Arc::clone(&state), intent_id, Intent::Upload(intent));
            }
            return Err(err);
        }
    };
    if let Some(old) = replaced {
        cleanup_replaced(&state, &old, &package_file).await;
    }
    tracing::info!(tenant = %app.owner, application = %app.name, %version, image = %package.image.id, "package accepted");
    super::audit::record_action(
        &state,
        &principal,
        &[app.owner.as_str()],
        (id, &app.name),
        "Application",
        "Package uploaded",
        format!(
            "Version {version} of {} uploaded (image {})",
            app.name, package.image.id
        ),
    );
    state.supervisor.poke();
    Ok(app)
}

/// Refuses the package when keeping it would take the tenant over its storage quota.
async fn check_storage_quota(
    state: &AppState,
    tenant: &str,
    package: &Package,
    package_path: &Path,
    replaced: Option<&Version>,
) -> Result<(), ApiError> {
    let data_dir = state.config.data_dir.clone();
    let tenant = tenant.to_owned();
    let new_package = package_path.to_owned();
    let replaced = replaced.map(|v| state.config.data_dir.join(&v.package_file));
    let image_bytes = package.image_bytes;
    let quota = state.config.tenant_storage_quota;
    let verdict = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let used = storage::tenant_bytes(&data_dir, &tenant)?;
        let freed = match replaced {
            Some(path) => storage::package_bytes(&path).unwrap_or(0),
            None => 0,
        };
        let zipped = std::fs::metadata(&new_package)?.len();
        Ok(storage::check_quota(
            used,
            freed,
            zipped.saturating_add(image_bytes),
            quota,
        ))
    })
    .await
    .map_err(|e| ApiError::internal(&e.to_string()))?
    .map_err(|e| ApiError::internal(&format!("measuring the tenant's storage: {e}")))?;
    verdict.map_err(|over| ApiError::too_large("applications", &over.to_string()))
}

async fn docker_before(
    state: &AppState,
    package: &Package,
    berth_tag: &BerthTag,
) -> Result<DockerBefore, ApiError> {
    let unavailable = |e: crate::runtime::RuntimeError| {
        ApiError::unavailable(
            "applications",
            "The container engine is not available; try again later",
            &e.to_string(),
        )
    };
    let image_existed = state
        .runtime
        .image_id(&package.image.id)
        .await
        .map_err(unavailable)?
        .is_some();
    let berth_tag = state
        .runtime
        .image_id(&berth_tag.reference())
        .await
        .map_err(unavailable)?;
    Ok(DockerBefore {
        image_existed,
        berth_tag,
    })
}

/// Where an accepted upload goes.
struct Target<'a> {
    tenant: &'a str,
    id: i64,
    tag: &'a BerthTag,
    version: &'a str,
    /// The package's place, relative to the data dir.
    package_file: &'a str,
    /// The upload's intent, finished with the record.
    intent: i64,
}

fn engine_unavailable(message: &str) -> impl FnOnce(crate::runtime::RuntimeError) -> ApiError {
    move |e| ApiError::unavailable("applications", message, &e.to_string())
}

/// Loads and tags the image, keeps the package and records the version (with the replaced
/// version, if any). On error the caller undoes what was done by the upload's intent.
async fn install(
    state: &AppState,
    package: &Package,
    temp: tempfile::NamedTempFile,
    target: &Target<'_>,
) -> Result<(applications::Application, Option<Version>), ApiError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let source = temp.path().to_owned();
    let image = package.image.clone();
    let limit = state.config.image_size_limit;
    let reader = tokio::task::spawn_blocking(move || {
        package::stream_image(&source, &image, limit, |chunk| {
            sender.blocking_send(chunk).is_ok()
        })
    });
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let loaded = state.runtime.load_image(Box::pin(stream)).await;
    let _ = reader.await;
    let loaded = loaded.map_err(|e| {
        ApiError::invalid(
            "applications",
            &format!("Docker could not load image.tar: {e}"),
        )
    })?;
    crate::fault::point(crate::fault::UPLOAD_LOADED).await;
    // The archive Docker got names one image and no tag: anything else reported means it
    // loaded something Berth did not check.
    if loaded != [package.image.id.as_str()] {
        tracing::error!(expected = %package.image.id, ?loaded, "the engine loaded other than the checked image");
        return Err(ApiError::invalid(
            "applications",
            "image.tar loaded other images or tags than the one its manifest.json names",
        ));
    }
    let unavailable = "The container engine is not available";
    if state
        .runtime
        .image_id(&package.image.id)
        .await
        .map_err(engine_unavailable(unavailable))?
        .is_none()
    {
        return Err(ApiError::invalid(
            "applications",
            "image.tar loaded, but it did not contain the image its manifest.json names",
        ));
    }
    if state.limits.refuse_root_images {
        let user = state
            .runtime
            .image_user(&package.image.id)
            .await
            .map_err(engine_unavailable(unavailable))?;
        crate::limits::check_image_user(&user, &state.limits)?;
    }
    state
        .runtime
        .tag(&package.image.id, &target.tag.repo, &target.tag.tag)
        .await
        .map_err(engine_unavailable(
            "The container engine could not tag the image",
        ))?;

    let kept = state.config.data_dir.join(target.package_file);
    if let Some(parent) = kept.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ApiError::internal(&format!("creating {}: {e}", parent.display())))?;
    }
    temp.persist(&kept)
        .map_err(|e| ApiError::internal(&format!("keeping package: {e}")))?;
    crate::fault::point(crate::fault::UPLOAD_KEPT).await;
    let mut record = UploadRecord {
        version: Version {
            version: target.version.to_owned(),
            image_id: package.image.id.clone(),
            image_tag: target.tag.reference(),
            package_file: target.package_file.to_owned(),
        },
        manifest: serde_json::to_value(&package.manifest.manifest).unwrap_or_default(),
        roles: package.manifest.manifest.roles.clone(),
        required_roles: package.manifest.manifest.required_roles.clone(),
        context_path: package.manifest.manifest.context_path.clone(),
        settings: Vec::new(),
        intent: Some(target.intent),
    };
    let (tenant, id) = (target.tenant.to_owned(), target.id);
    let secrets = Arc::clone(&state.secrets);
    let manifest = package.manifest.manifest.clone();
    state
        .store
        .run(move |c| {
            // Inside one store call, so no subscription or upload comes between reading the
            // previous settings and committing the new ones.
            let app = applications::get(c, &tenant, id)?;
            record.manifest =
                super::subscriptions::stored_manifest(&secrets, &app.name, &manifest)?;
            record.settings = subscriptions::settings_updates(
                c,
                id,
                &app.name,
                applications::resolved_manifest(&app).as_ref(),
                &manifest,
                &seal_setting(&secrets),
            )?;
            applications::record_upload(c, &tenant, id, &record)
        })
        .await
        .map_err(ApiError::store("applications"))
}

/// After a snapshot replaced an earlier upload of the same version: drop the old package and
/// the old image if nothing refers to it any more.
async fn cleanup_replaced(state: &AppState, old: &Version, new_package: &str) {
    if old.package_file != new_package {
        let path = state.config.data_dir.join(&old.package_file);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the replaced package");
        }
    }
    let image = old.image_id.clone();
    let in_use = state
        .store
        .run(move |c| applications::image_in_use(c, &image))
        .await
        .unwrap_or(true);
    if !in_use && let Err(e) = state.runtime.remove_image(&old.image_id).await {
        tracing::debug!(image = %old.image_id, error = %e, "replaced image kept (still used elsewhere)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berth_tags_are_valid_docker_references() {
        let cases = [
            ("1.0.0", Some("1.0.0")),
            ("1.0.0-SNAPSHOT", Some("1.0.0-SNAPSHOT")),
            ("1.0+build", Some("1.0_2bbuild")),
            ("-x", Some("_2dx")),
        ];
        for (version, tag) in cases {
            let t = BerthTag::new("ab12cd", "T1", 7, version);
            assert_eq!(t.as_ref().map(|t| t.tag.as_str()), tag);
            assert_eq!(t.unwrap().repo, "berth/ab12cd/t1-7");
        }
        assert!(BerthTag::new("ab12cd", "T1", 7, &"1".repeat(129)).is_none());
        // A hand-edited installation id still gives a valid repository path component.
        assert_eq!(
            BerthTag::new("AB-12_x", "T1", 7, "1").unwrap().repo,
            "berth/ab12x/t1-7"
        );
    }
}
