//! The `deploy` and `subscribe` flows: check the package locally (a bad package never goes over
//! the wire), find the application by name or create it, upload the zip, subscribe tenants.
//! Each step is reported through a callback so the binary decides how to show it.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::TargetError;
use crate::package::{self, Inspection, PackageError};
use crate::platform_client::{Application, ClientError, PlatformClient, Subscription};

/// A typed `deploy` request.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub package: PathBuf,
    /// `--name`: used when the manifest has no `name`.
    pub name: Option<String>,
    /// Tenants to subscribe after the upload.
    pub subscribe: Vec<String>,
    pub progress: bool,
    /// What the image may unpack to: the platform's `image_size_limit`.
    pub image_size_limit: u64,
}

/// What a successful deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub id: String,
    pub name: String,
    pub version: String,
    /// The application did not exist and was created.
    pub created: bool,
    pub active_version_id: Option<String>,
    /// Every tenant now subscribed (newly or already).
    pub subscribed: Vec<String>,
}

/// Progress worth telling the user about.
#[derive(Debug, Clone)]
pub enum Step<'a> {
    Validated { name: &'a str, version: &'a str },
    Found { id: &'a str },
    Created { id: &'a str },
    Uploaded { id: &'a str, bytes: u64 },
    Subscribed { tenant: &'a str, already: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A missing or malformed `--url`/`--user`/`--password`: here so `--format json` reports it too.
    #[error(transparent)]
    Settings(#[from] TargetError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{}: the package is invalid; nothing was sent to the platform", .0.file.display())]
    Invalid(Box<Inspection>),
    #[error(
        "{}: not a package zip; deploy needs the zip `berth-pack pack` builds (cumulocity.json + image.tar)",
        .0.display()
    )]
    NotAPackage(PathBuf),
    #[error(
        "--name {flag:?} differs from the manifest name {manifest:?}; the platform names the application after the manifest, so drop --name or fix cumulocity.json"
    )]
    NameMismatch { flag: String, manifest: String },
    #[error(
        "{}: cannot derive an application name from the file name; pass --name",
        .0.display()
    )]
    NoName(PathBuf),
    #[error(
        "application {name:?} (id {id}) exists with type {app_type}; packages can only be uploaded to MICROSERVICE applications"
    )]
    WrongType {
        name: String,
        id: String,
        app_type: String,
    },
    #[error("no application named {0:?} in your tenant")]
    NotFound(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the package was uploaded to application {id}, but {source}")]
    Subscribe {
        id: String,
        /// Tenants subscribed before the failure.
        subscribed: Vec<String>,
        // Boxed: with the id and tenants it would make every `Result` here large.
        #[source]
        source: Box<ClientError>,
    },
}

impl DeployError {
    /// 1 for an invalid package or a rejection by the platform, 2 for usage, IO and
    /// connection problems (see `berth-pack --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            DeployError::Package(error) => error.exit_code(),
            DeployError::Invalid(_)
            | DeployError::NotAPackage(_)
            | DeployError::WrongType { .. }
            | DeployError::NotFound(_) => 1,
            DeployError::Settings(_)
            | DeployError::NameMismatch { .. }
            | DeployError::NoName(_) => 2,
            DeployError::Client(error) => error.exit_code(),
            DeployError::Subscribe { source, .. } => source.exit_code(),
        }
    }

    /// The application and the tenants subscribed, when the upload worked and a subscription
    /// failed: the package is deployed, only not subscribed everywhere.
    pub fn deployed(&self) -> Option<(&str, &[String])> {
        match self {
            DeployError::Subscribe { id, subscribed, .. } => Some((id, subscribed)),
            _ => None,
        }
    }

    /// The HTTP status behind the failure, if the platform answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeployError::Client(error) => error.status(),
            DeployError::Subscribe { source, .. } => source.status(),
            _ => None,
        }
    }
}

/// Validates the package, then finds or creates the application, uploads and subscribes.
pub fn deploy(
    client: &PlatformClient,
    options: &DeployOptions,
    step: &mut dyn FnMut(Step),
) -> Result<Deployed, DeployError> {
    let inspection = package::inspect(&options.package, options.image_size_limit)?;
    if inspection.package.is_none() {
        return Err(DeployError::NotAPackage(options.package.clone()));
    }
    if !inspection.is_valid() {
        return Err(DeployError::Invalid(Box::new(inspection)));
    }
    let manifest = match &inspection.manifest {
        Ok(validated) => &validated.manifest,
        Err(_) => return Err(DeployError::Invalid(Box::new(inspection))),
    };
    let name = application_name(
        manifest.name.as_deref(),
        options.name.as_deref(),
        &options.package,
    )?;
    let version = manifest.version.clone();
    step(Step::Validated {
        name: &name,
        version: &version,
    });

    let (application, created) = match client.find_application(&name)? {
        Some(existing) => (existing, false),
        None => match client.create_microservice(&name) {
            Ok(application) => (application, true),
            // Someone created it between our lookup and our create: use theirs.
            Err(ClientError::Refused { status: 409, .. }) => (
                client
                    .find_application(&name)?
                    .ok_or_else(|| DeployError::NotFound(name.clone()))?,
                false,
            ),
            Err(error) => return Err(error.into()),
        },
    };
    check_microservice(&application)?;
    step(if created {
        Step::Created {
            id: &application.id,
        }
    } else {
        Step::Found {
            id: &application.id,
        }
    });

    let zip_bytes = inspection
        .package
        .as_ref()
        .map_or(0, |listing| listing.zip_bytes);
    let progress = upload_progress(options.progress, zip_bytes);
    let uploaded = client.upload_package(&application.id, &options.package, &progress);
    progress.finish_and_clear();
    let uploaded = uploaded?;
    step(Step::Uploaded {
        id: &uploaded.id,
        bytes: zip_bytes,
    });

    let mut subscribed = Vec::new();
    for tenant in &options.subscribe {
        let outcome =
            client
                .subscribe(tenant, &uploaded.id)
                .map_err(|source| DeployError::Subscribe {
                    id: uploaded.id.clone(),
                    subscribed: subscribed.clone(),
                    source: Box::new(source),
                })?;
        step(Step::Subscribed {
            tenant,
            already: outcome == Subscription::AlreadySubscribed,
        });
        subscribed.push(tenant.clone());
    }
    Ok(Deployed {
        id: uploaded.id,
        name,
        version,
        created,
        active_version_id: uploaded.active_version_id,
        subscribed,
    })
}

/// Result of `subscribe`.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub id: String,
    pub tenant: String,
    pub already: bool,
}

/// Subscribes `tenant` to the application `app` (an id if all digits, else a name).
pub fn subscribe(
    client: &PlatformClient,
    app: &str,
    tenant: &str,
) -> Result<Subscribed, DeployError> {
    let id = if !app.is_empty() && app.bytes().all(|b| b.is_ascii_digit()) {
        app.to_owned()
    } else {
        client
            .find_subscribable(app)?
            .ok_or_else(|| DeployError::NotFound(app.to_owned()))?
            .id
    };
    let outcome = client.subscribe(tenant, &id)?;
    Ok(Subscribed {
        id,
        tenant: tenant.to_owned(),
        already: outcome == Subscription::AlreadySubscribed,
    })
}

fn check_microservice(application: &Application) -> Result<(), DeployError> {
    // An empty type means the server did not say; let the upload decide.
    if application.app_type.is_empty() || application.app_type.eq_ignore_ascii_case("MICROSERVICE")
    {
        Ok(())
    } else {
        Err(DeployError::WrongType {
            name: application.name.clone(),
            id: application.id.clone(),
            app_type: application.app_type.clone(),
        })
    }
}

/// The manifest `name`, else `--name`, else the zip file name minus a version suffix
/// (`-1.2.3`, `-v1.2.3`, optionally `-SNAPSHOT`), as go-c8y-cli does.
pub fn application_name(
    manifest: Option<&str>,
    flag: Option<&str>,
    package: &Path,
) -> Result<String, DeployError> {
    match (manifest, flag) {
        (Some(manifest), Some(flag)) if manifest != flag => Err(DeployError::NameMismatch {
            flag: flag.to_owned(),
            manifest: manifest.to_owned(),
        }),
        (Some(name), _) | (None, Some(name)) => Ok(name.to_owned()),
        (None, None) => package
            .file_stem()
            .map(|stem| strip_version_suffix(&stem.to_string_lossy()).to_owned())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| DeployError::NoName(package.to_owned())),
    }
}

/// Removes a trailing `-v?D.D.D(-SNAPSHOT)?` (the regex go-c8y-cli uses), or nothing.
fn strip_version_suffix(stem: &str) -> &str {
    let base = stem.strip_suffix("-SNAPSHOT").unwrap_or(stem);
    let Some(dash) = base.rfind('-') else {
        return stem;
    };
    let version = &base[dash + 1..];
    let version = version.strip_prefix('v').unwrap_or(version);
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if numeric { &base[..dash] } else { stem }
}

fn upload_progress(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("uploading");
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_suffixes_are_stripped_like_go_c8y_cli() {
        let cases = [
            ("hello-1.0.0", "hello"),
            ("hello-v1.0.0", "hello"),
            ("hello-1.0.0-SNAPSHOT", "hello"),
            ("my-app-10.20.30", "my-app"),
            ("hello", "hello"),
            ("hello-SNAPSHOT", "hello-SNAPSHOT"),
            ("hello-1.0", "hello-1.0"),
            ("hello-1.0.0.1", "hello-1.0.0.1"),
            ("hello-1.0.0-rc1", "hello-1.0.0-rc1"),
            ("hello-1..0", "hello-1..0"),
        ];
        for (stem, expected) in cases {
            assert_eq!(strip_version_suffix(stem), expected, "{stem}");
        }
    }

    #[test]
    fn the_manifest_name_wins_and_must_agree_with_the_flag() {
        let zip = Path::new("dir/svc-2.1.0.zip");
        let cases = [
            (Some("hello"), None, Ok("hello")),
            (Some("hello"), Some("hello"), Ok("hello")),
            (None, Some("other"), Ok("other")),
            (None, None, Ok("svc")),
            (Some("hello"), Some("other"), Err(2)),
        ];
        for (manifest, flag, expected) in cases {
            let got = application_name(manifest, flag, zip).map_err(|error| error.exit_code());
            assert_eq!(
                got.as_deref().map_err(|code| *code),
                expected,
                "{manifest:?} {flag:?}"
            );
        }
        assert!(matches!(
            application_name(None, None, Path::new("-1.0.0.zip")),
            Err(DeployError::NoName(_))
        ));
    }
}
