//! Command-line arguments, parsed into typed options before anything runs.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::deploy::DeployOptions;
use crate::package::{Compression, ImageSource, PackOptions};
use crate::platform_client::Target;
use crate::tls_trust::Trust;
use crate::url_text::has_userinfo;

#[derive(Debug, Parser)]
#[command(
    name = "berth-pack",
    version,
    about = "Build, validate, inspect and deploy Cumulocity microservice packages",
    after_help = "Exit codes: 0 success/valid, 1 invalid input (diagnostics printed) or a request the platform \
rejected (HTTP 4xx, its message printed), 2 usage, IO, connection/TLS error, a platform failure (HTTP 5xx) \
or a platform busy for now (HTTP 408, 429), \
130/143 pack interrupted by SIGINT/SIGTERM (its temporary file removed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a package zip (cumulocity.json + image.tar) from a manifest and an image.
    Pack(PackArgs),
    /// Check a cumulocity.json or a package zip; exit 0 if valid, 1 if not.
    Validate(CheckArgs),
    /// Describe a package zip: manifest with defaults resolved, image tags, layers, sizes.
    Inspect(CheckArgs),
    /// Upload a package to a platform: validate it, find or create the application, upload, subscribe.
    Deploy(DeployArgs),
    /// Subscribe a tenant to an application ("already subscribed" counts as success).
    Subscribe(SubscribeArgs),
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The microservice manifest.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Output zip [default: <name>-<version>.zip in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Deflate level, 0 (store) to 9.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9), conflicts_with = "store")]
    pub level: u32,
    /// Store without compression (fastest, largest).
    #[arg(long)]
    pub store: bool,
    /// Compress image.tar with Zstandard (zip method 93) at this level, 1 to 19 (3 is zstd's
    /// default): Berth unpacks it about four times faster than deflate, so it deploys sooner;
    /// Cumulocity and Info-ZIP `unzip` cannot read it.
    #[arg(long, value_name = "LEVEL", num_args = 0..=1, default_missing_value = "3",
          value_parser = clap::value_parser!(u32).range(1..=19), conflicts_with_all = ["store", "level"])]
    pub zstd: Option<u32>,
    /// Compression threads [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
    /// No progress bar even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
    /// Result on stdout as text or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub limit: LimitArgs,
}

/// What the image may unpack to, as the platform counts it.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// The platform's image_size_limit, when its operator raised it: what image.tar may unpack
    /// to (gzip layers decompressed), in bytes or KiB/MiB/GiB as the platform's setting.
    #[arg(
        long,
        env = "BERTH_IMAGE_SIZE_LIMIT",
        value_name = "SIZE",
        default_value = "2GiB",
        value_parser = parse_image_size_limit
    )]
    pub image_size_limit: u64,
}

/// A size as the platform's `image_size_limit` takes it.
fn parse_image_size_limit(text: &str) -> Result<u64, String> {
    package_rules::size::parse_size(text).map_err(|error| error.to_string())
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ImageArgs {
    /// A `docker save` tar (Docker 25 and later save an OCI image layout with it).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Export this image (REPO:TAG or ID) from the local Docker engine.
    #[arg(long, value_name = "REF")]
    pub docker_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A cumulocity.json or a package zip.
    pub file: PathBuf,
    /// Result on stdout as text or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub limit: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

impl PackArgs {
    /// The typed pack request; `stderr_is_terminal` decides the progress bar.
    pub fn to_options(&self, stderr_is_terminal: bool) -> PackOptions {
        let image = match (&self.image.image, &self.image.docker_image) {
            (_, Some(reference)) => ImageSource::Docker(reference.clone()),
            (Some(path), None) => ImageSource::Archive(path.clone()),
            // clap's argument group requires exactly one of the two.
            (None, None) => ImageSource::Archive(PathBuf::new()),
        };
        let compression = match self.zstd {
            Some(level) => Compression::Zstd(level),
            None if self.store || self.level == 0 => Compression::Store,
            None => Compression::Deflate(self.level),
        };
        let threads = self
            .jobs
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        PackOptions {
            manifest: self.manifest.clone(),
            image,
            output: self.output.clone(),
            compression,
            threads,
            progress: stderr_is_terminal && !self.quiet && self.format == Format::Human,
            image_size_limit: self.limit.image_size_limit,
        }
    }
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The package zip to upload.
    pub package: PathBuf,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Application name when the manifest has none [default: the zip file name minus a -1.2.3 version suffix].
    #[arg(long, value_name = "APP")]
    pub name: Option<String>,
    /// After the upload, subscribe this tenant (repeatable).
    #[arg(long, value_name = "TENANT")]
    pub subscribe: Vec<String>,
    /// No progress bar even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
    /// Result on stdout as text (the application id) or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub limit: LimitArgs,
}

impl DeployArgs {
    /// The typed deploy request; `stderr_is_terminal` decides the progress bar.
    pub fn to_options(&self, stderr_is_terminal: bool) -> DeployOptions {
        DeployOptions {
            package: self.package.clone(),
            name: self.name.clone(),
            subscribe: self.subscribe.clone(),
            progress: stderr_is_terminal && !self.quiet && self.format == Format::Human,
            image_size_limit: self.limit.image_size_limit,
        }
    }
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The application: its id (all digits) or its name.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub app: String,
    /// The tenant to subscribe.
    #[arg(long, value_name = "ID")]
    pub tenant: String,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Result on stdout as text or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Where the platform is and how to log in. Each value comes from its flag, else its `BERTH_*`
/// variable, else the `C8Y_*` variable a Cumulocity microservice environment already has.
#[derive(Debug, Args)]
pub struct PlatformArgs {
    /// Platform base URL, e.g. https://berth.example.com [fallback env: C8Y_BASEURL].
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Login as TENANT/USER [fallback env: C8Y_USER, prefixed with C8Y_TENANT/ when it has no tenant].
    #[arg(long, env = "BERTH_USER", value_name = "TENANT/USER")]
    pub user: Option<String>,
    /// Password [fallback env: C8Y_PASSWORD].
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Trust the certificates in this PEM file (e.g. the platform's <data-dir>/tls/cert.pem) instead of the public roots.
    #[arg(
        long,
        env = "BERTH_CA_CERT",
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (testing only: credentials can be intercepted).
    #[arg(long)]
    pub insecure: bool,
    /// Give up when the platform stops reading what is sent or sending what it answers for
    /// this many seconds (the wait while it loads an uploaded image is bounded separately, 30 min).
    #[arg(
        long,
        env = "BERTH_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub stall_timeout: u64,
}

/// A missing or malformed platform setting.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no {what}: pass {flag} or set {primary} (or {fallback})")]
    Missing {
        what: &'static str,
        flag: &'static str,
        primary: &'static str,
        fallback: &'static str,
    },
    #[error("--url {0:?} must start with https:// or http:// and name a host")]
    Url(String),
    /// Not echoed: the part before `@` is usually a password, which would land in CI logs.
    #[error(
        "the platform URL must not contain a user name or password (`user:password@`); \
         pass them with --user and --password (or BERTH_USER and BERTH_PASSWORD)"
    )]
    UserInfo,
}

impl PlatformArgs {
    /// Resolves flags (clap already applied the `BERTH_*` variables) and the `C8Y_*`
    /// fallbacks read through `env` into a typed target.
    pub fn to_target(&self, env: impl Fn(&str) -> Option<String>) -> Result<Target, TargetError> {
        let nonempty = |value: Option<String>| value.filter(|value| !value.is_empty());
        let url = nonempty(self.url.clone())
            .or_else(|| nonempty(env("C8Y_BASEURL")))
            .ok_or(TargetError::Missing {
                what: "platform URL",
                flag: "--url",
                primary: "BERTH_URL",
                fallback: "C8Y_BASEURL",
            })?;
        let user = nonempty(self.user.clone())
            .or_else(|| nonempty(env("C8Y_USER")))
            .ok_or(TargetError::Missing {
                what: "user",
                flag: "--user",
                primary: "BERTH_USER",
                fallback: "C8Y_USER",
            })?;
        let user = match nonempty(env("C8Y_TENANT")) {
            Some(tenant) if !user.contains('/') => format!("{tenant}/{user}"),
            _ => user,
        };
        let password = nonempty(self.password.clone())
            .or_else(|| nonempty(env("C8Y_PASSWORD")))
            .ok_or(TargetError::Missing {
                what: "password",
                flag: "--password",
                primary: "BERTH_PASSWORD",
                fallback: "C8Y_PASSWORD",
            })?;
        let trust = match (&self.ca_cert, self.insecure) {
            (_, true) => Trust::Insecure,
            (Some(path), false) => Trust::CaFile(path.clone()),
            (None, false) => Trust::WebPkiRoots,
        };
        Ok(Target {
            base_url: base_url(&url)?,
            user,
            password,
            trust,
            stall: Duration::from_secs(self.stall_timeout),
        })
    }
}

/// `scheme://host[:port][/path]` without a trailing slash. Userinfo is refused before
/// anything else, so no error (nor later a transport message) ever repeats a password.
fn base_url(url: &str) -> Result<String, TargetError> {
    if has_userinfo(url) {
        return Err(TargetError::UserInfo);
    }
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| TargetError::Url(url.to_owned()))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(TargetError::Url(url.to_owned()));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(url: Option<&str>, user: Option<&str>, password: Option<&str>) -> PlatformArgs {
        PlatformArgs {
            url: url.map(str::to_owned),
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            ca_cert: None,
            insecure: false,
            stall_timeout: 120,
        }
    }

    #[test]
    fn flags_win_over_c8y_variables_which_fill_the_gaps() {
        let c8y = |name: &str| match name {
            "C8Y_BASEURL" => Some("http://c8y:8111/".to_owned()),
            "C8Y_USER" => Some("service_x".to_owned()),
            "C8Y_PASSWORD" => Some("c8y-pw".to_owned()),
            "C8Y_TENANT" => Some("t42".to_owned()),
            _ => None,
        };
        let cases = [
            (
                platform(None, None, None),
                ("http://c8y:8111", "t42/service_x", "c8y-pw"),
            ),
            (
                platform(Some("https://b.example"), Some("t1/alice"), Some("pw")),
                ("https://b.example", "t1/alice", "pw"),
            ),
            (
                platform(Some("https://b.example"), Some("alice"), None),
                ("https://b.example", "t42/alice", "c8y-pw"),
            ),
        ];
        for (args, (url, user, password)) in cases {
            let target = args.to_target(c8y).unwrap();
            assert_eq!(
                (
                    target.base_url.as_str(),
                    target.user.as_str(),
                    target.password.as_str()
                ),
                (url, user, password)
            );
        }
    }

    #[test]
    fn the_image_size_limit_reaches_every_command_that_checks_an_image() {
        let limit = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Pack(pack) => pack.to_options(false).image_size_limit,
            Command::Validate(check) | Command::Inspect(check) => check.limit.image_size_limit,
            Command::Deploy(deploy) => deploy.to_options(false).image_size_limit,
            Command::Subscribe(_) => unreachable!(),
        };
        let pack = [
            "berth-pack",
            "pack",
            "--manifest",
            "m.json",
            "--image",
            "i.tar",
        ];
        assert_eq!(limit(&pack), package_rules::DEFAULT_IMAGE_SIZE_LIMIT);
        let raised = [pack.as_slice(), &["--image-size-limit", "3GiB"]].concat();
        assert_eq!(limit(&raised), 3 << 30);
        let validate = [
            "berth-pack",
            "validate",
            "p.zip",
            "--image-size-limit=500MiB",
        ];
        assert_eq!(limit(&validate), 500 << 20);
        let inspect = [
            "berth-pack",
            "inspect",
            "p.zip",
            "--image-size-limit",
            "1024",
        ];
        assert_eq!(limit(&inspect), 1024);
        let deploy = ["berth-pack", "deploy", "p.zip", "--image-size-limit", "4g"];
        assert_eq!(limit(&deploy), 4 << 30);
        let error =
            Cli::try_parse_from(["berth-pack", "validate", "p.zip", "--image-size-limit", "0"])
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("must be a positive size such as 500MiB"),
            "{error}"
        );
    }

    #[test]
    fn missing_or_malformed_settings_say_what_to_pass() {
        let none = |_: &str| None;
        let cases = [
            (
                platform(None, Some("u"), Some("p")),
                "pass --url or set BERTH_URL",
            ),
            (
                platform(Some("https://h"), None, Some("p")),
                "pass --user or set BERTH_USER",
            ),
            (
                platform(Some("https://h"), Some("u"), None),
                "pass --password or set BERTH_PASSWORD",
            ),
            (
                platform(Some("ftp://h"), Some("u"), Some("p")),
                "must start with https://",
            ),
            (
                platform(Some("https://"), Some("u"), Some("p")),
                "name a host",
            ),
            (
                platform(Some("https://alice:s3cret@h"), Some("u"), Some("p")),
                "must not contain a user name or password",
            ),
            (
                platform(Some("ftp://alice:s3cret@h/x"), Some("u"), Some("p")),
                "must not contain a user name or password",
            ),
            (
                platform(Some("alice:s3cret@h"), Some("u"), Some("p")),
                "must not contain a user name or password",
            ),
        ];
        for (args, expected) in cases {
            let error = args.to_target(none).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
