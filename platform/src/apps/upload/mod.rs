//! The upload saga: a received microservice package is checked, its image loaded into the
//! engine and tagged `berth/<installation>/<tenant>-<app id>:<version>`, the package kept and
//! the version recorded. The image archive is checked while it streams into the engine, in one
//! pass; its end is held back until the version rules passed and an intent naming what to undo
//! is recorded, so the engine loads nothing Berth could not undo. Any failure undoes every step
//! (at once, or at the next start after a kill), so a rejected upload leaves no row, no file and
//! no image behind. An accepted version's settings replace the previous version's in every
//! subscribed tenant.

use std::sync::Arc;

use super::settings::{check_manifest_category, check_settings_room};
use super::{Apps, FlowError, manifest_budget};
use crate::auth::principal::Principal;
use crate::limits::LimitError;
use crate::package::growing::Arrival;
use crate::package::{self, Opened, Package, PackageError};
use crate::runtime::{RuntimeError, images};
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::intents::{Intent, UploadIntent};
use crate::store::subscriptions;
use crate::supervisor::spec;

mod arriving;
mod install;
mod load;
mod quota;

pub use arriving::{ARRIVING_UPLOADS, TENANT_UPLOADS, UPLOADS, accept_arriving};
use install::{Installed, Kept, cleanup_replaced, install};
use load::load;
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
}
