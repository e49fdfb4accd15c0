//! The upload saga: a received microservice package is checked, its image loaded into the
//! engine and tagged `berth/<installation>/<tenant>-<app id>:<version>`, the package kept and
//! the version recorded. The image archive is checked while it streams into the engine, in one
//! pass; its end is held back until the version rules passed and an intent naming what to undo
//! is recorded, so the engine loads nothing Berth could not undo. Any failure undoes every step
//! (at once, or at the next start after a kill), so a rejected upload leaves no row, no file and
//! no image behind. An accepted version's settings replace the previous version's in every
//! subscribed tenant.

use std::sync::Arc;

use serde_json::Value;

use super::settings::{
    check_manifest_category, check_settings_room, seal_setting, stored_manifest,
};
use super::{Apps, FlowError, manifest_budget, settings_propagation};
use crate::auth::principal::Principal;
use crate::limits::LimitError;
use crate::package::growing::Arrival;
use crate::package::{self, ImageInfo, Opened, Package, PackageError};
use crate::runtime::{RuntimeError, images};
use crate::store::StoreError;
use crate::store::applications::{self, Application, UploadRecord, Version};
use crate::store::intents::{self, Intent, ReplacedImage, UploadIntent};
use crate::store::subscriptions;
use crate::supervisor::spec;

mod arriving;
mod quota;

pub use arriving::{ARRIVING_UPLOADS, TENANT_UPLOADS, UPLOADS, accept_arriving};
use quota::{Requota, check_storage_quota};

/// Why an upload was refused or failed; the API renders each kind.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The package, or what it asks for, is not acceptable.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// It contradicts what is recorded (a release version's image is immutable).
    #[error("{0}")]
    Conflict(String),
    /// The container engine could not be reached; worth trying again.
    #[error("{message}: {detail}")]
    Unavailable { message: String, detail: String },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Refused by a rule the flows share (settings category, resource maxima).
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("{0}")]
    Internal(String),
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

fn package_error(err: PackageError) -> UploadError {
    match err {
        PackageError::Io(e) => UploadError::Internal(format!("reading package: {e}")),
        too_large @ PackageError::ImageTooLarge { .. } => {
            UploadError::TooLarge(too_large.to_string())
        }
        other => UploadError::Invalid(other.to_string()),
    }
}

fn unavailable(message: &str) -> impl FnOnce(RuntimeError) -> UploadError {
    move |e| UploadError::Unavailable {
        message: message.to_owned(),
        detail: e.to_string(),
    }
}

fn task_failed(e: tokio::task::JoinError) -> UploadError {
    UploadError::Internal(e.to_string())
}

/// Checks the received package (`temp`, a file that deletes itself unless kept), loads and
/// tags its image, keeps the package and records the version of `app`, undoing every step on
/// failure.
pub async fn accept(
    apps: Arc<Apps>,
    principal: Principal,
    app: Application,
    temp: tempfile::NamedTempFile,
) -> Result<Application, UploadError> {
    // The package is kept if accepted: made durable while the image loads, not before.
    let sync_path = temp.path().to_owned();
    let synced = tokio::task::spawn_blocking(move || std::fs::File::open(sync_path)?.sync_all());
    let temp_path = temp.path().to_owned();
    let image_limit = apps.image_size_limit;
    let opened =
        tokio::task::spawn_blocking(move || package::open_package(&temp_path, image_limit))
            .await
            .map_err(task_failed)?
            .map_err(package_error)?;
    accept_opened(
        &apps,
        &principal,
        app,
        &mut Some(temp),
        opened,
        synced,
        None,
    )
    .await
}

/// The saga from an opened package on. `temp` is taken only once the image is loaded: a
/// failure before leaves it to the caller. `arrival` is the package's arrival when it is read
/// while it arrives.
async fn accept_opened(
    apps: &Arc<Apps>,
    principal: &Principal,
    app: Application,
    temp: &mut Option<tempfile::NamedTempFile>,
    opened: Opened,
    synced: tokio::task::JoinHandle<std::io::Result<()>>,
    arrival: Option<&Arc<Arrival>>,
) -> Result<Application, UploadError> {
    let id = app.id;
    let manifest = opened.manifest.manifest.clone();
    // Cumulocity refuses a package whose manifest names another application; checked before
    // anything is kept (the temporary file deletes itself).
    if let Some(named) = &manifest.name
        && *named != app.name
    {
        return Err(UploadError::Invalid(format!(
            "The package's manifest names application {named:?}, but it was uploaded to application {:?}; upload it to {named:?} or change the manifest's name",
            app.name
        )));
    }

    let _guard = apps.upload_lock.lock().await;
    check_manifest_category(apps, &app, &manifest).await?;
    super::terms::check_manifest(apps, app.id, &app.owner, &manifest).await?;
    super::limits::check_upload(apps, app.id, &app.owner, &manifest).await?;
    check_settings_room(apps, &app, &manifest).await?;
    manifest_budget::check_upload(apps, app.id, &app.owner, &app.name, &manifest).await?;
    // The deployments' networks are made while the image loads (they are garbage again if
    // the upload fails): creating a bridge is a fifth of a small image's deploy.
    let subscribed = apps
        .store
        .run(move |c| subscriptions::of_application(c, id))
        .await?
        .into_iter()
        .map(|s| s.tenant)
        .collect::<Vec<_>>();
    let _prepared = apps.supervisor.prepare_networks(spec::deployment_keys(
        id,
        manifest.isolation,
        &subscribed,
    ));
    let version = manifest.version.clone();
    let lookup = version.clone();
    let existing = apps
        .store
        .run(move |c| applications::version(c, id, &lookup))
        .await?;
    if existing.is_none() {
        // Refused before the image loads; `record_upload` holds the bound for good.
        let new = version.clone();
        apps.store
            .run(move |c| applications::room_for_a_version(c, id, &new))
            .await?;
    }
    let berth_tag = BerthTag::new(&apps.installation, &app.owner, id, &version).ok_or_else(|| {
        UploadError::Invalid(format!(
            "The version is too long: as a Docker tag (characters other than letters, digits, '.' and '-' take three) it needs more than {} characters; use a shorter version",
            images::MAX_TAG
        ))
    })?;
    let image_bytes = opened.declared_image_bytes;
    // By the declared sizes, so a package plainly over the quota loads nothing; checked again
    // once the image was counted (`Requota`).
    let declared = crate::storage::Parts {
        zipped: opened.package_bytes,
        image_tar: image_bytes,
        image_unpacked: 0,
        manifest: opened.manifest_bytes,
    };
    check_storage_quota(apps, &app.owner, declared.cost(), existing.as_ref()).await?;
    let package_file = format!(
        "{}/{}/{id}/{}-{}.zip",
        crate::PACKAGES_DIR,
        app.owner,
        berth_tag.tag,
        uuid::Uuid::new_v4().simple()
    );
    let target = Target {
        tenant: &app.owner,
        id,
        tag: &berth_tag,
        version: &version,
        snapshot: manifest.is_snapshot(),
        package_file: &package_file,
    };
    let validated = opened.manifest.clone();
    let requota = Requota {
        package: temp
            .as_ref()
            .map(|t| t.path().to_owned())
            .unwrap_or_default(),
        image_tar: image_bytes,
        manifest: opened.manifest_bytes,
    };
    let (image, intent_id, intent, stored_bytes) =
        load(apps, opened, existing.as_ref(), &target, &requota).await?;
    let Some(temp) = temp.take() else {
        undo(apps, intent_id, intent).await;
        return Err(UploadError::Internal("the upload was kept".into()));
    };
    let package = Package {
        manifest: validated,
        image,
        image_bytes,
    };
    let kept = Kept {
        temp,
        synced,
        intent: intent_id,
        stored_bytes,
    };
    let Installed {
        app,
        replaced,
        image_removal,
    } = match install(apps, &package, kept, &target).await {
        Ok(done) => done,
        Err(err) => {
            undo(apps, intent_id, intent).await;
            return Err(err);
        }
    };
    if let Some(old) = replaced {
        cleanup_replaced(apps, &old, &package_file, image_removal).await;
    }
    // `arriving`: the image was loaded while the package arrived (else read whole).
    tracing::info!(tenant = %app.owner, application = %app.name, %version, image = %package.image.id, arriving = arrival.is_some(), "package accepted");
    apps.record(
        principal,
        &[app.owner.as_str()],
        (app.id, &app.name),
        "Application",
        "Package uploaded",
        format!(
            "Version {version} of {} uploaded (image {})",
            app.name, package.image.id
        ),
    );
    apps.supervisor.poke();
    Ok(app)
}

/// Undoes what the upload's intent names, now, or retried later if the engine is away.
async fn undo(apps: &Arc<Apps>, intent_id: i64, intent: UploadIntent) {
    if !super::intents::undo_upload(apps, intent_id, &intent).await {
        super::intents::retry_later(Arc::clone(apps), intent_id, Intent::Upload(intent));
    }
}

/// Where an accepted upload goes.
struct Target<'a> {
    tenant: &'a str,
    id: i64,
    tag: &'a BerthTag,
    version: &'a str,
    snapshot: bool,
    /// The package's place, relative to the data dir.
    package_file: &'a str,
}

/// The received package on its way to be kept.
struct Kept {
    temp: tempfile::NamedTempFile,
    /// Its data reaching the disk.
    synced: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The upload's intent, finished with the record.
    intent: i64,
    /// What the version costs, as the quota check at the end of its load counted it.
    stored_bytes: u64,
}

/// Streams the package's image into the engine, checked on the way. Once the whole archive
/// passed, and before its end goes out, the storage quota is checked again with what the image
/// unpacks to ([`Requota`]) and [`decide`] rules on the image it holds; unless both agree, the
/// engine gets a failed stream and loads nothing. Returns the image, the recorded intent
/// (undone here if the load fails after it) and what the version costs.
async fn load(
    apps: &Arc<Apps>,
    opened: Opened,
    existing: Option<&Version>,
    target: &Target<'_>,
    requota: &Requota,
) -> Result<(ImageInfo, i64, UploadIntent, u64), UploadError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let (seen, seen_by_decide) = tokio::sync::oneshot::channel::<ImageInfo>();
    let (agree, agreed) = tokio::sync::oneshot::channel::<bool>();
    let reader = tokio::task::spawn_blocking(move || {
        opened.stream_image(
            |chunk| sender.blocking_send(chunk).is_ok(),
            |image| seen.send(image.clone()).is_ok() && agreed.blocking_recv().unwrap_or(false),
        )
    });
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let load = apps.runtime.load_image(Box::pin(stream));
    let ruling = async {
        // No image: the archive failed its checks, and the reader says why.
        let Ok(image) = seen_by_decide.await else {
            return Ok(None);
        };
        let checked = requota
            .check(apps, target.tenant, existing, image.unpacked_bytes)
            .await;
        let decided = match checked {
            Ok(cost) => decide(apps, &image, existing, target)
                .await
                .map(|(id, intent)| (id, intent, cost)),
            Err(e) => Err(e),
        };
        let _ = agree.send(decided.is_ok());
        decided.map(Some)
    };
    let (loaded, ruling) = tokio::join!(load, ruling);
    let streamed = reader.await.map_err(task_failed)?;
    let (intent_id, intent, stored_bytes) = match ruling {
        Ok(Some(recorded)) => recorded,
        Ok(None) => return Err(failed_load(streamed, loaded)),
        Err(refused) => return Err(refused),
    };
    let outcome = match (streamed, loaded) {
        (Ok(image), Ok(loaded)) => check_loaded(&image, &loaded).map(|()| image),
        (streamed, loaded) => Err(failed_load(streamed, loaded)),
    };
    match outcome {
        Ok(image) => Ok((image, intent_id, intent, stored_bytes)),
        Err(e) => {
            undo(apps, intent_id, intent).await;
            Err(e)
        }
    }
}

/// Why a load failed: the package's own fault first, as it is what the tenant can fix; then
/// the engine refusing the archive (the package again); then the engine failing (unreachable,
/// timed out: worth trying again, 503, not a bad package).
fn failed_load(
    streamed: Result<ImageInfo, PackageError>,
    loaded: Result<Vec<String>, RuntimeError>,
) -> UploadError {
    match (streamed, loaded) {
        (Err(e), _) if !matches!(e, PackageError::Io(_) | PackageError::Stopped) => {
            package_error(e)
        }
        (_, Err(e @ RuntimeError::Rejected(_))) => {
            UploadError::Invalid(format!("Docker could not load image.tar: {e}"))
        }
        (_, Err(e)) => unavailable("The container engine failed while loading image.tar")(e),
        (Err(e), Ok(_)) => package_error(e),
        (Ok(_), Ok(_)) => UploadError::Internal("the image load ended without a ruling".into()),
    }
}

/// The archive Docker got names one image and no tag: anything else reported means it loaded
/// something Berth did not check.
fn check_loaded(image: &ImageInfo, loaded: &[String]) -> Result<(), UploadError> {
    if loaded != [image.id.as_str()] {
        tracing::error!(expected = %image.id, ?loaded, "the engine loaded other than the checked image");
        return Err(UploadError::Invalid(
            "image.tar loaded other images or tags than the one its manifest.json names".into(),
        ));
    }
    Ok(())
}

/// Rules on the checked image before the engine may load it: a release version's image is
/// immutable; then records what the engine looked like before, as the upload's intent, so a
/// failure (or a kill) from here on can put it back.
async fn decide(
    apps: &Apps,
    image: &ImageInfo,
    existing: Option<&Version>,
    target: &Target<'_>,
) -> Result<(i64, UploadIntent), UploadError> {
    if let Some(existing) = existing
        && !target.snapshot
        && existing.image_id != image.id
    {
        return Err(UploadError::Conflict(format!(
            "Version {} was already uploaded with a different image; release versions are immutable, bump the version (or use a -SNAPSHOT version)",
            target.version
        )));
    }
    let engine = "The container engine is not available; try again later";
    let runtime = &apps.runtime;
    let image_existed = runtime
        .image_id(&image.id)
        .await
        .map_err(unavailable(engine))?
        .is_some();
    let tag_before = runtime
        .image_id(&target.tag.reference())
        .await
        .map_err(unavailable(engine))?;
    let intent = UploadIntent {
        image_id: image.id.clone(),
        image_existed,
        tag: target.tag.reference(),
        tag_before,
        package_file: target.package_file.to_owned(),
    };
    let recorded = Intent::Upload(intent.clone());
    let intent_id = apps
        .store
        .run(move |c| intents::record(c, &recorded))
        .await?;
    Ok((intent_id, intent))
}

/// A recorded upload.
struct Installed {
    app: Application,
    /// The version of the same name it replaced (a snapshot).
    replaced: Option<Version>,
    /// The intent to remove the replaced version's image, recorded with the version when the
    /// upload brought another image.
    image_removal: Option<(i64, ReplacedImage)>,
}

/// Checks and tags the loaded image, keeps the package and records the version (with the
/// replaced version, if any, and the intent to remove its image). On error the caller undoes
/// what was done by the upload's intent.
async fn install(
    apps: &Apps,
    package: &Package,
    kept: Kept,
    target: &Target<'_>,
) -> Result<Installed, UploadError> {
    let Kept {
        temp,
        synced,
        intent,
        stored_bytes,
    } = kept;
    crate::fault::point(crate::fault::UPLOAD_LOADED).await;
    let runtime = &apps.runtime;
    let engine = "The container engine is not available";
    if runtime
        .image_id(&package.image.id)
        .await
        .map_err(unavailable(engine))?
        .is_none()
    {
        return Err(UploadError::Invalid(
            "image.tar loaded, but it did not contain the image its manifest.json names".into(),
        ));
    }
    if apps.limits.refuse_root_images {
        let user = runtime
            .image_user(&package.image.id)
            .await
            .map_err(unavailable(engine))?;
        crate::limits::check_image_user(&user, &apps.limits)?;
    }
    runtime
        .tag(&package.image.id, &target.tag.repo, &target.tag.tag)
        .await
        .map_err(unavailable("The container engine could not tag the image"))?;

    let kept = apps.data_dir.join(target.package_file);
    if let Some(parent) = kept.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| UploadError::Internal(format!("creating {}: {e}", parent.display())))?;
    }
    synced
        .await
        .map_err(task_failed)?
        .map_err(|e| UploadError::Internal(format!("writing upload: {e}")))?;
    temp.persist(&kept)
        .map_err(|e| UploadError::Internal(format!("keeping package: {e}")))?;
    crate::fault::point(crate::fault::UPLOAD_KEPT).await;
    let manifest = package.manifest.manifest.clone();
    let mut record = UploadRecord {
        version: Version {
            version: target.version.to_owned(),
            image_id: package.image.id.clone(),
            image_tag: target.tag.reference(),
            package_file: target.package_file.to_owned(),
        },
        // Recorded with the version, so quota checks sum a column.
        stored_bytes,
        manifest: Value::Null,
        roles: manifest.roles.clone(),
        required_roles: manifest.required_roles.clone(),
        context_path: manifest.context_path.clone(),
        intent: Some(intent),
    };
    let (tenant, id) = (target.tenant.to_owned(), target.id);
    let secrets = Arc::clone(&apps.secrets);
    let recorded = apps
        .store
        .run(move |c| {
            // One transaction, so no subscription or upload comes between reading the previous
            // settings and committing the new ones: the manifest as stored, the version, and
            // the new version's settings for every subscribed tenant.
            let tx = c.transaction()?;
            let app = applications::get(&tx, &tenant, id)?;
            let shown_before = manifest_budget::shown(&tx, &tenant)?;
            record.manifest = stored_manifest(&secrets, &app.name, &manifest)?;
            let settings = settings_propagation::plan(
                &tx,
                &app,
                applications::resolved_manifest(&app).as_ref(),
                &manifest,
                &seal_setting(&secrets),
            )?;
            let (app, replaced) = applications::record_upload(&tx, &tenant, id, &record)?;
            manifest_budget::check_in(&tx, &tenant, shown_before)?;
            settings_propagation::apply(&tx, &app, &settings)?;
            // The replaced image can go only once the old revision's containers are gone;
            // recorded now, so neither a refusal nor a restart forgets it.
            let image_removal = match &replaced {
                Some(old) if old.image_id != record.version.image_id => {
                    let removal = ReplacedImage {
                        image_id: old.image_id.clone(),
                        tenant: tenant.clone(),
                        application_id: id,
                        version: old.version.clone(),
                    };
                    let intent = Intent::RemoveReplacedImage(removal.clone());
                    Some((intents::record(&tx, &intent)?, removal))
                }
                _ => None,
            };
            tx.commit()?;
            Ok(Installed {
                app,
                replaced,
                image_removal,
            })
        })
        .await?;
    apps.forget_service_credentials(id).await;
    Ok(recorded)
}

/// After a snapshot replaced an earlier upload of the same version: drop the old package, and
/// the old image through its intent: now if nothing refers to it and no container uses it,
/// else retried in the background and at the next start (the old revision's containers run
/// until the new revision is ready). A package left by a kill is the start's sweep's.
async fn cleanup_replaced(
    apps: &Arc<Apps>,
    old: &Version,
    new_package: &str,
    image_removal: Option<(i64, ReplacedImage)>,
) {
    if old.package_file != new_package {
        let path = apps.data_dir.join(&old.package_file);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the replaced package");
        }
    }
    if let Some((id, removal)) = image_removal
        && !super::intents::remove_replaced_image(apps, id, &removal).await
    {
        super::intents::retry_later(Arc::clone(apps), id, Intent::RemoveReplacedImage(removal));
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
        // Every version the manifest schema accepts has its tag: its pattern admits only tag
        // characters, and its bound is the tag's.
        assert_eq!(manifests_schema::MAX_VERSION_LENGTH, images::MAX_TAG);
        let longest = format!("1.0.0-{}", "a".repeat(images::MAX_TAG - 6));
        let manifest =
            format!(r#"{{"apiVersion":"2","version":"{longest}","provider":{{"name":"x"}}}}"#);
        assert!(manifests_schema::validate(&manifest).is_ok());
        let tag = BerthTag::new("ab12cd", "T1", 7, &longest).unwrap();
        assert_eq!(tag.tag, longest);
        let over = manifest.replace(&longest, &format!("{longest}a"));
        assert!(manifests_schema::validate(&over).is_err());
        // A hand-edited installation id still gives a valid repository path component.
        assert_eq!(
            BerthTag::new("AB-12_x", "T1", 7, "1").unwrap().repo,
            "berth/ab12x/t1-7"
        );
    }

    #[test]
    fn a_failed_load_blames_the_package_only_for_what_the_package_did() {
        let io = || {
            Err(PackageError::Io(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            )))
        };
        let bad = || Err(PackageError::BadEntry("entry \"x\" is bad".into()));
        let rejected = || Err(RuntimeError::Rejected("unexpected EOF".into()));
        let down = || {
            Err(RuntimeError::Connect {
                socket: "/var/run/docker.sock".into(),
                message: "connection refused".into(),
            })
        };
        let timed_out = || Err(RuntimeError::Docker("timed out".into()));
        // (what the stream saw, what the engine said, the status class: 422, 503)
        type Case = (
            Result<ImageInfo, PackageError>,
            Result<Vec<String>, RuntimeError>,
            u16,
        );
        let cases: [Case; 5] = [
            (bad(), timed_out(), 422),
            (io(), rejected(), 422),
            (io(), down(), 503),
            (io(), timed_out(), 503),
            (Err(PackageError::Stopped), timed_out(), 503),
        ];
        for (streamed, loaded, status) in cases {
            let why = format!("{streamed:?} / {loaded:?}");
            let got = match failed_load(streamed, loaded) {
                UploadError::Invalid(_) => 422,
                UploadError::Unavailable { .. } => 503,
                other => panic!("{why}: {other:?}"),
            };
            assert_eq!(got, status, "{why}");
        }
    }
}
