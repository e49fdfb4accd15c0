//! Server configuration: command-line flags, `BERTH_*` environment variables and an optional
//! TOML file, merged (flag > environment > file > built-in default) into one validated [`Config`]
//! before anything is bound or written.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::LimitSettings;

mod args;
mod connections;
mod file;
mod login;
mod network;
mod parse;
pub mod runtime;

pub use crate::edge::origin::Cidr;
pub use args::{Cli, Command, FirewallCommand, FirewallRemoveArgs, ServeArgs};
pub use connections::{
    Connections, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_CONTAINER_CONNECTIONS, DEFAULT_MAX_LOG_STREAMS, DEFAULT_PROXY_CONNECT_TIMEOUT,
    DEFAULT_PROXY_EJECT_PERIOD, DEFAULT_PROXY_TIMEOUT,
};
pub use parse::parse_size;

use connections::connections;
use file::{FileConfig, read_file};
use login::{args_login, login_limits};
use network::{DEFAULT_NETWORK_POOL, DEFAULT_NETWORK_SUBNET_PREFIX, network_pool};
use parse::{cpu_setting, invalid, parse_addr, positive_secs, size_setting};

/// Default HTTPS listener: loopback only, so a fresh `berth serve` is not exposed by accident.
pub const DEFAULT_HTTPS: &str = "127.0.0.1:8443";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "berth-data";
/// Default upload limit for application packages (the Cumulocity UI limit).
pub const DEFAULT_UPLOAD_LIMIT: u64 = 500 * 1024 * 1024;
/// Default limit on what a package's `image.tar` unpacks to: a compressed upload within the
/// upload limit must not turn into an unbounded image on the Docker disk. `berth-pack` checks
/// packages against the same number.
pub const DEFAULT_IMAGE_SIZE_LIMIT: u64 = package_rules::DEFAULT_IMAGE_SIZE_LIMIT;
/// Default storage quota per tenant over all its kept versions (package plus unpacked image).
pub const DEFAULT_TENANT_STORAGE_QUOTA: u64 = 10 * 1024 * 1024 * 1024;
/// Default internal API listener: plain HTTP for containers (peers outside Berth's container
/// networks are refused), reached by them as `http://berth-platform:8111`.
pub const DEFAULT_INTERNAL_API: &str = "0.0.0.0:8111";
/// Default seconds between periodic reconcile passes.
pub const DEFAULT_RECONCILE_INTERVAL: u64 = 5;
/// Deployments a reconcile pass converges at once: enough to overlap the engine's round trips,
/// few enough that a pass making hundreds of containers does not crowd out the engine's other
/// clients.
pub const DEFAULT_DEPLOY_CONCURRENCY: usize = 8;
/// Default seconds a new version gets to become ready before it is rolled back.
pub const DEFAULT_ROLLOUT_TIMEOUT: u64 = 300;
/// Default process/thread limit per container: the contract's thread limit.
pub const DEFAULT_PIDS_LIMIT: i64 = 10240;
/// Autoscaler defaults: a decision every 2 s on Docker's ~1 s stats, so a load spike adds a
/// replica within a few seconds; 60 s of calm before replicas go (Kubernetes uses 300 s).
pub const DEFAULT_AUTOSCALE_PERIOD: u64 = 2;
pub const DEFAULT_AUTOSCALE_TARGET: u32 = 80;
pub const DEFAULT_AUTOSCALE_SCALE_DOWN_WINDOW: u64 = 60;
pub const DEFAULT_AUTOSCALE_MAX_REPLICAS: u32 = 5;
pub const DEFAULT_DRAIN_PERIOD: u64 = 2;
/// Default most replicas a manifest may ask for: the manifest schema's own maximum.
pub const DEFAULT_MAX_REPLICAS: u32 = 5;
/// Default most containers one tenant's microservices may run together.
pub const DEFAULT_TENANT_MAX_CONTAINERS: u64 = 50;
/// Password guessing: 10 failures of one user, or 100 from one source address, within 15
/// minutes lock that user (or source) out of password checks for 15 minutes (429 with
/// Retry-After). A temporary lock like Cumulocity's, never a disabled account.
pub const DEFAULT_LOGIN_USER_FAILURES: u32 = 10;
pub const DEFAULT_LOGIN_SOURCE_FAILURES: u32 = 100;
pub const DEFAULT_LOGIN_FAILURE_WINDOW: u64 = 900;
pub const DEFAULT_LOGIN_LOCKOUT: u64 = 900;
/// Password checks waiting for a hashing slot, per slot, before 503.
pub const DEFAULT_PASSWORD_HASH_QUEUE_PER_SLOT: usize = 16;

pub use crate::tls::TlsSource;

/// The validated configuration of `berth serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub tls: TlsSource,
    pub upload_limit: u64,
    /// Bytes a package's `image.tar` may unpack to.
    pub image_size_limit: u64,
    /// Bytes of kept versions (package + unpacked image) per tenant.
    pub tenant_storage_quota: u64,
    pub docker_socket: PathBuf,
    /// The deployments' runtime.
    pub runtime: runtime::RuntimeChoice,
    pub admin_user: String,
    /// From `BERTH_ADMIN_PASSWORD` only (never a flag, so it does not show in `ps`).
    pub admin_password: Option<String>,
    pub token_lifetime: Duration,
    pub log_filter: String,
    /// Which proxied requests get an access line.
    pub access_log: crate::proxy::trace::AccessLog,
    pub internal_api: SocketAddr,
    pub reconcile_interval: Duration,
    /// Deployments a pass converges at once.
    pub deploy_concurrency: usize,
    pub rollout_timeout: Duration,
    pub pids_limit: i64,
    /// Autoscaler: decision period, target CPU fraction, scale-down window, maximum replicas.
    pub autoscale_period: Duration,
    pub autoscale_target: f64,
    pub autoscale_scale_down_window: Duration,
    pub autoscale_max_replicas: u32,
    /// Wait between removing a replica from routing and stopping it (0 = stop at once).
    pub drain_period: Duration,
    pub container_labels: Vec<(String, String)>,
    /// Proxy timeouts, connection bounds and trusted proxies.
    pub connections: Connections,
    /// From `MICROSERVICE_RUNTIME_TIMEZONE`: `TZ` of containers whose owner sets none.
    pub default_timezone: Option<String>,
    /// Resource maxima (unset ones are derived from the Docker host at start) and the
    /// root-image rule.
    pub limits: LimitSettings,
    /// Install the host firewall for deployment networks.
    pub host_firewall: bool,
    /// Where deployment network subnets come from.
    pub network_pool: crate::supervisor::subnets::Pool,
    /// Password-guessing limits (see [`crate::auth::throttle`]).
    pub login_limits: crate::auth::throttle::Limits,
    /// Password hashes at once, and checks that may wait for one.
    pub password_hash_concurrency: usize,
    pub password_hash_queue: usize,
}

/// A setting that cannot be used, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid setting {name} = {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Merges flags/environment (already in `args`, clap handles `BERTH_*`) with the config file
    /// and the defaults, and validates the result.
    pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let admin_password = std::env::var("BERTH_ADMIN_PASSWORD").ok();
        let mut config = Config::merge(args, file, admin_password)?;
        config.default_timezone = std::env::var("MICROSERVICE_RUNTIME_TIMEZONE")
            .ok()
            .filter(|tz| !tz.trim().is_empty());
        Ok(config)
    }

    fn merge(
        mut args: ServeArgs,
        mut file: FileConfig,
        admin_password: Option<String>,
    ) -> Result<Config, ConfigError> {
        let connections = connections(&mut args, &mut file)?;
        let login_limits = login_limits(&args_login(&args), &file)?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "", "must not be empty"));
        }
        let https_text = args
            .https
            .or(file.https)
            .unwrap_or_else(|| DEFAULT_HTTPS.into());
        let https = parse_addr("https", &https_text)?;
        let http = match args.http.or(file.http) {
            Some(text) => Some(parse_addr("http", &text)?),
            None => None,
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (None, None) => TlsSource::Generated,
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", &cert), ("tls_key", &key)] {
                    if !path.is_file() {
                        return Err(invalid(
                            name,
                            &path.display().to_string(),
                            "file does not exist",
                        ));
                    }
                }
                TlsSource::Files { cert, key }
            }
            (Some(cert), None) => {
                return Err(invalid(
                    "tls_key",
                    "",
                    &format!("required because tls_cert = {} is set", cert.display()),
                ));
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "tls_cert",
                    "",
                    &format!("required because tls_key = {} is set", key.display()),
                ));
            }
        };
        let upload_limit = size_setting("upload_limit", args.upload_limit, file.upload_limit)?
            .unwrap_or(DEFAULT_UPLOAD_LIMIT);
        let image_size_limit = size_setting(
            "image_size_limit",
            args.image_size_limit,
            file.image_size_limit,
        )?
        .unwrap_or(DEFAULT_IMAGE_SIZE_LIMIT);
        let tenant_storage_quota = size_setting(
            "tenant_storage_quota",
            args.tenant_storage_quota,
            file.tenant_storage_quota,
        )?
        .unwrap_or(DEFAULT_TENANT_STORAGE_QUOTA);
        let docker_socket = args
            .docker_socket
            .or(file.docker_socket)
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        let admin_user = args
            .admin_user
            .or(file.admin_user)
            .unwrap_or_else(|| "admin".into());
        if let Err(reason) = crate::store::users::check_person_name(&admin_user) {
            return Err(invalid("admin_user", &admin_user, &reason));
        }
        if let Some(password) = &admin_password
            && let Err(reason) = crate::auth::password::check_for_user(password, &admin_user, None)
        {
            return Err(invalid("BERTH_ADMIN_PASSWORD", "<hidden>", &reason));
        }
        let token_seconds = args
            .token_lifetime
            .or(file.token_lifetime)
            .unwrap_or(14 * 24 * 3600);
        if token_seconds < 60 {
            return Err(invalid(
                "token_lifetime",
                &token_seconds.to_string(),
                "must be at least 60 seconds",
            ));
        }
        let access_log_text = args
            .access_log
            .or(file.access_log)
            .unwrap_or_else(|| "all".into());
        let access_log = crate::proxy::trace::AccessLog::parse(&access_log_text)
            .map_err(|e| invalid("access_log", &access_log_text, &e))?;
        let log_filter = args.log.or(file.log).unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_filter) {
            return Err(invalid("log", &log_filter, &e.to_string()));
        }
        let internal_api = parse_addr(
            "internal_api",
            &args
                .internal_api
                .or(file.internal_api)
                .unwrap_or_else(|| DEFAULT_INTERNAL_API.into()),
        )?;
        let reconcile_interval = positive_secs(
            "reconcile_interval",
            args.reconcile_interval
                .or(file.reconcile_interval)
                .unwrap_or(DEFAULT_RECONCILE_INTERVAL),
        )?;
        let deploy_concurrency = args
            .deploy_concurrency
            .or(file.deploy_concurrency)
            .unwrap_or(DEFAULT_DEPLOY_CONCURRENCY);
        if !(1..=64).contains(&deploy_concurrency) {
            return Err(invalid(
                "deploy_concurrency",
                &deploy_concurrency.to_string(),
                "must be 1 to 64",
            ));
        }
        let rollout_timeout = positive_secs(
            "rollout_timeout",
            args.rollout_timeout
                .or(file.rollout_timeout)
                .unwrap_or(DEFAULT_ROLLOUT_TIMEOUT),
        )?;
        let pids_limit = args
            .pids_limit
            .or(file.pids_limit)
            .unwrap_or(DEFAULT_PIDS_LIMIT);
        if pids_limit < 16 {
            return Err(invalid(
                "pids_limit",
                &pids_limit.to_string(),
                "must be at least 16 (a runtime needs a few threads)",
            ));
        }
        let autoscale_period = positive_secs(
            "autoscale_period",
            args.autoscale_period
                .or(file.autoscale_period)
                .unwrap_or(DEFAULT_AUTOSCALE_PERIOD),
        )?;
        let autoscale_scale_down_window = positive_secs(
            "autoscale_scale_down_window",
            args.autoscale_scale_down_window
                .or(file.autoscale_scale_down_window)
                .unwrap_or(DEFAULT_AUTOSCALE_SCALE_DOWN_WINDOW),
        )?;
        let target_percent = args
            .autoscale_target
            .or(file.autoscale_target)
            .unwrap_or(DEFAULT_AUTOSCALE_TARGET);
        if !(1..=100).contains(&target_percent) {
            return Err(invalid(
                "autoscale_target",
                &target_percent.to_string(),
                "must be a percentage from 1 to 100",
            ));
        }
        let autoscale_max_replicas = args
            .autoscale_max_replicas
            .or(file.autoscale_max_replicas)
            .unwrap_or(DEFAULT_AUTOSCALE_MAX_REPLICAS);
        if !(1..=100).contains(&autoscale_max_replicas) {
            return Err(invalid(
                "autoscale_max_replicas",
                &autoscale_max_replicas.to_string(),
                "must be from 1 to 100",
            ));
        }
        let drain_period = Duration::from_secs(
            args.drain_period
                .or(file.drain_period)
                .unwrap_or(DEFAULT_DRAIN_PERIOD),
        );
        let label_texts = if args.container_labels.is_empty() {
            file.container_labels.unwrap_or_default()
        } else {
            args.container_labels
        };
        let mut container_labels = Vec::new();
        for text in label_texts.iter().filter(|t| !t.trim().is_empty()) {
            match text.split_once('=') {
                Some((k, v)) if !k.is_empty() && !k.starts_with("berth.installation") => {
                    container_labels.push((k.to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(invalid(
                        "container_labels",
                        text,
                        "expected key=value (and not the reserved berth.installation)",
                    ));
                }
            }
        }
        let replicas = args
            .max_replicas
            .or(file.max_replicas)
            .unwrap_or(DEFAULT_MAX_REPLICAS);
        if !(1..=DEFAULT_MAX_REPLICAS).contains(&replicas) {
            return Err(invalid(
                "max_replicas",
                &replicas.to_string(),
                "must be from 1 to 5 (manifests cannot ask for more)",
            ));
        }
        let tenant_containers = args
            .tenant_max_containers
            .or(file.tenant_max_containers)
            .unwrap_or(DEFAULT_TENANT_MAX_CONTAINERS);
        if tenant_containers == 0 {
            return Err(invalid("tenant_max_containers", "0", "must be at least 1"));
        }
        let limits = LimitSettings {
            container_memory: size_setting(
                "max_container_memory",
                args.max_container_memory,
                file.max_container_memory,
            )?,
            container_millicores: cpu_setting(
                "max_container_cpu",
                args.max_container_cpu,
                file.max_container_cpu,
            )?,
            replicas,
            tenant_memory: size_setting(
                "tenant_max_memory",
                args.tenant_max_memory,
                file.tenant_max_memory,
            )?,
            tenant_millicores: cpu_setting(
                "tenant_max_cpu",
                args.tenant_max_cpu,
                file.tenant_max_cpu,
            )?,
            tenant_containers,
            refuse_root_images: args
                .refuse_root_images
                .or(file.refuse_root_images)
                .unwrap_or(false),
        };
        let host_firewall = args.host_firewall.or(file.host_firewall).unwrap_or(true);
        let runtime = runtime::runtime_choice(runtime::RuntimeSettings {
            runtime: args.runtime.or(file.runtime),
            registry: args.registry.or(file.registry),
            registry_user: args.registry_user.or(file.registry_user),
            registry_password: std::env::var("BERTH_REGISTRY_PASSWORD").ok(),
            swarm_relay_image: args.swarm_relay_image.or(file.swarm_relay_image),
            swarm_platform_address: args.swarm_platform_address.or(file.swarm_platform_address),
            swarm_node_engines: if args.swarm_node_engines.is_empty() {
                file.swarm_node_engines.unwrap_or_default()
            } else {
                args.swarm_node_engines
            },
            network_holders: args.network_holders.or(file.network_holders),
        })?;
        // Swarm's overlays come from a pool of their own (see `runtime::SWARM_NETWORK_POOL`).
        let (pool_default, prefix_default) = match runtime {
            runtime::RuntimeChoice::Docker(_) => {
                (DEFAULT_NETWORK_POOL, DEFAULT_NETWORK_SUBNET_PREFIX)
            }
            runtime::RuntimeChoice::Swarm(_) => (
                runtime::SWARM_NETWORK_POOL,
                runtime::SWARM_NETWORK_SUBNET_PREFIX,
            ),
        };
        let network_pool = network_pool(
            Some(
                args.network_pool
                    .or(file.network_pool)
                    .unwrap_or_else(|| pool_default.to_owned()),
            ),
            Some(
                args.network_subnet_prefix
                    .or(file.network_subnet_prefix)
                    .unwrap_or(prefix_default),
            ),
        )?;
        let password_hash_concurrency = args
            .password_hash_concurrency
            .or(file.password_hash_concurrency)
            .unwrap_or_else(crate::auth::password::default_concurrency);
        if !(1..=256).contains(&password_hash_concurrency) {
            return Err(invalid(
                "password_hash_concurrency",
                &password_hash_concurrency.to_string(),
                "must be from 1 to 256",
            ));
        }
        let password_hash_queue = args
            .password_hash_queue
            .or(file.password_hash_queue)
            .unwrap_or(password_hash_concurrency * DEFAULT_PASSWORD_HASH_QUEUE_PER_SLOT);
        Ok(Config {
            limits,
            host_firewall,
            network_pool,
            login_limits,
            password_hash_concurrency,
            password_hash_queue,
            connections,
            internal_api,
            reconcile_interval,
            deploy_concurrency,
            rollout_timeout,
            pids_limit,
            autoscale_period,
            autoscale_target: f64::from(target_percent) / 100.0,
            autoscale_scale_down_window,
            autoscale_max_replicas,
            drain_period,
            container_labels,
            default_timezone: None,
            data_dir,
            https,
            http,
            tls,
            upload_limit,
            image_size_limit,
            tenant_storage_quota,
            docker_socket,
            runtime,
            admin_user,
            admin_password,
            token_lifetime: Duration::from_secs(token_seconds),
            log_filter,
            access_log,
        })
    }
}

#[cfg(test)]
mod tests;
