//! Server configuration: command-line flags, `BERTH_*` environment variables and an optional
//! TOML file, merged (flag > environment > file > built-in default) into one validated [`Config`]
//! before anything is bound or written.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::limits::LimitSettings;

pub mod runtime;

/// Default HTTPS listener: loopback only, so a fresh `berth serve` is not exposed by accident.
pub const DEFAULT_HTTPS: &str = "127.0.0.1:8443";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "berth-data";
/// Default upload limit for application packages (the Cumulocity UI limit).
pub const DEFAULT_UPLOAD_LIMIT: u64 = 500 * 1024 * 1024;
/// Default limit on what a package's `image.tar` unpacks to: a compressed upload within the
/// upload limit must not turn into an unbounded image on the Docker disk.
pub const DEFAULT_IMAGE_SIZE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Default storage quota per tenant over all its kept versions (package plus unpacked image).
pub const DEFAULT_TENANT_STORAGE_QUOTA: u64 = 10 * 1024 * 1024 * 1024;
/// Default internal API listener: plain HTTP for containers (peers outside Berth's container
/// networks are refused), reached by them as `http://berth-platform:8111`.
pub const DEFAULT_INTERNAL_API: &str = "0.0.0.0:8111";
/// Default seconds between periodic reconcile passes.
pub const DEFAULT_RECONCILE_INTERVAL: u64 = 5;
/// Default seconds a new version gets to become ready before it is rolled back.
pub const DEFAULT_ROLLOUT_TIMEOUT: u64 = 300;
/// Default seconds an upstream container may take to start answering a proxied request.
pub const DEFAULT_PROXY_TIMEOUT: u64 = 60;
/// Default seconds the proxy waits for a TCP connection to a replica (nginx: 60 s, Envoy: 5 s;
/// a container on a local bridge connects in well under a millisecond).
pub const DEFAULT_PROXY_CONNECT_TIMEOUT: u64 = 5;
/// Default seconds a replica that refused, reset or timed out a proxied request stays out of
/// routing (nginx `fail_timeout`: 10 s; Envoy `base_ejection_time`: 30 s).
pub const DEFAULT_PROXY_EJECT_PERIOD: u64 = 10;
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

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-hostable, Cumulocity-compatible microservice platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform server.
    Serve(ServeArgs),
}

/// Flags of `berth serve`; each one can also come from its `BERTH_*` variable or the config file.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the database, keys, certificate and packages [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS listen address; port 0 picks a free port [default: 127.0.0.1:8443].
    #[arg(long, env = "BERTH_HTTPS", value_name = "ADDR:PORT")]
    pub https: Option<String>,
    /// Additional plain-HTTP listen address; off unless given.
    #[arg(long, env = "BERTH_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// PEM certificate chain to serve instead of the generated self-signed one.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted application package: bytes or KiB/MiB/GiB [default: 500MiB].
    #[arg(long, env = "BERTH_UPLOAD_LIMIT", value_name = "SIZE")]
    pub upload_limit: Option<String>,
    /// Largest image a package's image.tar may unpack to: bytes or KiB/MiB/GiB [default: 2GiB].
    #[arg(long, env = "BERTH_IMAGE_SIZE_LIMIT", value_name = "SIZE")]
    pub image_size_limit: Option<String>,
    /// Storage per tenant over all kept versions (package + unpacked image) [default: 10GiB].
    #[arg(long, env = "BERTH_TENANT_STORAGE_QUOTA", value_name = "SIZE")]
    pub tenant_storage_quota: Option<String>,
    /// Docker engine unix socket [default: /var/run/docker.sock].
    #[arg(long, env = "BERTH_DOCKER_SOCKET", value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    /// Where deployments run: docker (the engine at docker_socket) or swarm (the Swarm whose
    /// manager's engine is at docker_socket) [default: docker].
    #[arg(long, env = "BERTH_RUNTIME", value_name = "docker|swarm")]
    pub runtime: Option<String>,
    /// runtime = swarm: HOST:PORT of the registry every node pulls from (images are pushed
    /// there on upload and deleted with their last version).
    #[arg(long, env = "BERTH_REGISTRY", value_name = "HOST:PORT")]
    pub registry: Option<String>,
    /// runtime = swarm: the registry user; its password comes from BERTH_REGISTRY_PASSWORD.
    #[arg(long, env = "BERTH_REGISTRY_USER", value_name = "USER")]
    pub registry_user: Option<String>,
    /// runtime = swarm: the relay image (swarm-relay/build.sh), pullable from the registry.
    #[arg(long, env = "BERTH_SWARM_RELAY_IMAGE", value_name = "IMAGE")]
    pub swarm_relay_image: Option<String>,
    /// runtime = swarm: this host's IP address as the nodes reach it (berth-platform in
    /// every container).
    #[arg(long, env = "BERTH_SWARM_PLATFORM_ADDRESS", value_name = "IP")]
    pub swarm_platform_address: Option<String>,
    /// User name of the management tenant's first administrator [default: admin]. Its password
    /// comes from BERTH_ADMIN_PASSWORD, or is generated and printed once on first start.
    #[arg(long, env = "BERTH_ADMIN_USER")]
    pub admin_user: Option<String>,
    /// Lifetime of OAI-Secure tokens, in seconds [default: 1209600 = 14 days].
    #[arg(long, env = "BERTH_TOKEN_LIFETIME", value_name = "SECONDS")]
    pub token_lifetime: Option<u64>,
    /// Log filter, tracing env-filter syntax [default: info].
    #[arg(long, env = "BERTH_LOG")]
    pub log: Option<String>,
    /// Which proxied requests get an access line: all, sample:N (one in N plus every 5xx),
    /// errors (5xx only) or off [default: all].
    #[arg(long, env = "BERTH_ACCESS_LOG", value_name = "all|sample:N|errors|off")]
    pub access_log: Option<String>,
    /// Plain-HTTP API for microservice containers (C8Y_BASEURL); only peers inside Berth's
    /// container networks are served; port 0 picks a free port, kept in the data directory
    /// across restarts [default: 0.0.0.0:8111].
    #[arg(long, env = "BERTH_INTERNAL_API", value_name = "ADDR:PORT")]
    pub internal_api: Option<String>,
    /// Seconds between periodic reconcile passes (changes and container deaths trigger one
    /// at once) [default: 5].
    #[arg(long, env = "BERTH_RECONCILE_INTERVAL", value_name = "SECONDS")]
    pub reconcile_interval: Option<u64>,
    /// Seconds a new application version gets to become ready before it is rolled back
    /// [default: 300].
    #[arg(long, env = "BERTH_ROLLOUT_TIMEOUT", value_name = "SECONDS")]
    pub rollout_timeout: Option<u64>,
    /// Seconds a container may take to start answering a /service request before the
    /// client gets 504 [default: 60].
    #[arg(long, env = "BERTH_PROXY_TIMEOUT", value_name = "SECONDS")]
    pub proxy_timeout: Option<u64>,
    /// Seconds the proxy waits for a TCP connection to a container [default: 5].
    #[arg(long, env = "BERTH_PROXY_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub proxy_connect_timeout: Option<u64>,
    /// Seconds a replica that refused, reset or timed out a proxied request stays out of
    /// routing (never the last routable one) [default: 10].
    #[arg(long, env = "BERTH_PROXY_EJECT_PERIOD", value_name = "SECONDS")]
    pub proxy_eject_period: Option<u64>,
    /// Process/thread limit per container [default: 10240].
    #[arg(long, env = "BERTH_PIDS_LIMIT", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Seconds between decisions of the CPU autoscaler (`scale: AUTO`) [default: 2].
    #[arg(long, env = "BERTH_AUTOSCALE_PERIOD", value_name = "SECONDS")]
    pub autoscale_period: Option<u64>,
    /// Target CPU utilisation in percent of each replica's CPU limit [default: 80].
    #[arg(long, env = "BERTH_AUTOSCALE_TARGET", value_name = "PERCENT")]
    pub autoscale_target: Option<u32>,
    /// Seconds of low load before the autoscaler removes replicas (stabilisation window)
    /// [default: 60].
    #[arg(
        long,
        env = "BERTH_AUTOSCALE_SCALE_DOWN_WINDOW",
        value_name = "SECONDS"
    )]
    pub autoscale_scale_down_window: Option<u64>,
    /// Most replicas the autoscaler runs per deployment [default: 5].
    #[arg(long, env = "BERTH_AUTOSCALE_MAX_REPLICAS", value_name = "N")]
    pub autoscale_max_replicas: Option<u32>,
    /// Seconds a removed replica keeps running after leaving the routing table, so requests
    /// in flight finish [default: 2].
    #[arg(long, env = "BERTH_DRAIN_PERIOD", value_name = "SECONDS")]
    pub drain_period: Option<u64>,
    /// Extra labels for every container and network Berth creates, as key=value (repeatable;
    /// the variable takes a space-separated list).
    #[arg(
        long = "container-label",
        env = "BERTH_CONTAINER_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ' '
    )]
    pub container_labels: Vec<String>,
    /// Most memory one container may ask for: bytes or KiB/MiB/GiB [default: the Docker
    /// host's memory].
    #[arg(long, env = "BERTH_MAX_CONTAINER_MEMORY", value_name = "SIZE")]
    pub max_container_memory: Option<String>,
    /// Most CPUs one container may ask for, e.g. 2 or 500m [default: the Docker host's CPUs].
    #[arg(long, env = "BERTH_MAX_CONTAINER_CPU", value_name = "CPUS")]
    pub max_container_cpu: Option<String>,
    /// Most replicas a manifest may ask for, 1 to 5 [default: 5, the manifest's maximum].
    #[arg(long, env = "BERTH_MAX_REPLICAS", value_name = "N")]
    pub max_replicas: Option<u32>,
    /// Most memory one tenant's deployments may reserve together [default: the Docker host's
    /// memory].
    #[arg(long, env = "BERTH_TENANT_MAX_MEMORY", value_name = "SIZE")]
    pub tenant_max_memory: Option<String>,
    /// Most CPUs one tenant's deployments may reserve together [default: 4 × the host's].
    #[arg(long, env = "BERTH_TENANT_MAX_CPU", value_name = "CPUS")]
    pub tenant_max_cpu: Option<String>,
    /// Most containers one tenant's deployments may run together [default: 50].
    #[arg(long, env = "BERTH_TENANT_MAX_CONTAINERS", value_name = "N")]
    pub tenant_max_containers: Option<u64>,
    /// Refuse packages whose image runs as root (no USER, or not a numeric non-zero uid)
    /// [default: false].
    #[arg(long, env = "BERTH_REFUSE_ROOT_IMAGES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub refuse_root_images: Option<bool>,
    /// Firewall the host from deployment networks (iptables INPUT rules on Berth's bridges:
    /// only the internal API port answers); false runs without host isolation [default: true].
    #[arg(long, env = "BERTH_HOST_FIREWALL", value_name = "BOOL")]
    pub host_firewall: Option<bool>,
    /// IPv4 block Berth cuts deployment network subnets from; must not overlap Docker's own
    /// address pools or the host's networks [default: 10.213.0.0/16].
    #[arg(long, env = "BERTH_NETWORK_POOL", value_name = "CIDR")]
    pub network_pool: Option<String>,
    /// Prefix length of each deployment network's subnet, from the pool's own up to 29
    /// [default: 28, i.e. 4096 networks of 13 containers in the default pool].
    #[arg(long, env = "BERTH_NETWORK_SUBNET_PREFIX", value_name = "BITS")]
    pub network_subnet_prefix: Option<u8>,
    /// Failed password checks of one user within the failure window that lock it out
    /// [default: 10].
    #[arg(long, env = "BERTH_LOGIN_USER_FAILURES", value_name = "N")]
    pub login_user_failures: Option<u32>,
    /// Failed password checks from one source address (IPv6: its /64) within the failure
    /// window that lock it out [default: 100].
    #[arg(long, env = "BERTH_LOGIN_SOURCE_FAILURES", value_name = "N")]
    pub login_source_failures: Option<u32>,
    /// Seconds over which failed password checks are counted [default: 900].
    #[arg(long, env = "BERTH_LOGIN_FAILURE_WINDOW", value_name = "SECONDS")]
    pub login_failure_window: Option<u64>,
    /// Seconds a locked-out user or source waits (429 with Retry-After) [default: 900].
    #[arg(long, env = "BERTH_LOGIN_LOCKOUT", value_name = "SECONDS")]
    pub login_lockout: Option<u64>,
    /// Password hashes computed at once; each argon2 hash takes ~19 MiB [default: CPU cores].
    #[arg(long, env = "BERTH_PASSWORD_HASH_CONCURRENCY", value_name = "N")]
    pub password_hash_concurrency: Option<usize>,
    /// Password checks that may wait for a hashing slot; more get 503 with Retry-After
    /// [default: 16 per slot].
    #[arg(long, env = "BERTH_PASSWORD_HASH_QUEUE", value_name = "N")]
    pub password_hash_queue: Option<usize>,
    /// Reverse proxies whose `Forwarded`/`X-Forwarded-*` headers are believed (scheme, host,
    /// client address), as CIDRs or addresses, comma-separated; from anyone else they are
    /// ignored [default: none].
    #[arg(
        long = "trusted-proxies",
        env = "BERTH_TRUSTED_PROXIES",
        value_name = "CIDR,…",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
}

/// The config file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    https: Option<String>,
    http: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    upload_limit: Option<toml::Value>,
    image_size_limit: Option<toml::Value>,
    tenant_storage_quota: Option<toml::Value>,
    docker_socket: Option<PathBuf>,
    runtime: Option<String>,
    registry: Option<String>,
    registry_user: Option<String>,
    swarm_relay_image: Option<String>,
    swarm_platform_address: Option<String>,
    admin_user: Option<String>,
    token_lifetime: Option<u64>,
    log: Option<String>,
    access_log: Option<String>,
    internal_api: Option<String>,
    reconcile_interval: Option<u64>,
    rollout_timeout: Option<u64>,
    pids_limit: Option<i64>,
    autoscale_period: Option<u64>,
    autoscale_target: Option<u32>,
    autoscale_scale_down_window: Option<u64>,
    autoscale_max_replicas: Option<u32>,
    drain_period: Option<u64>,
    container_labels: Option<Vec<String>>,
    proxy_timeout: Option<u64>,
    proxy_connect_timeout: Option<u64>,
    proxy_eject_period: Option<u64>,
    max_container_memory: Option<toml::Value>,
    max_container_cpu: Option<toml::Value>,
    max_replicas: Option<u32>,
    tenant_max_memory: Option<toml::Value>,
    tenant_max_cpu: Option<toml::Value>,
    tenant_max_containers: Option<u64>,
    refuse_root_images: Option<bool>,
    host_firewall: Option<bool>,
    network_pool: Option<String>,
    network_subnet_prefix: Option<u8>,
    login_user_failures: Option<u32>,
    login_source_failures: Option<u32>,
    login_failure_window: Option<u64>,
    login_lockout: Option<u64>,
    password_hash_concurrency: Option<usize>,
    password_hash_queue: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
}

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Self-signed, generated on first start and kept in the data directory.
    Generated,
    /// The operator's PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

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
    /// Response-header timeout of a proxied request (504 after it).
    pub proxy_timeout: Duration,
    /// Passive health of the data path: connect timeout, and how long a failing replica is
    /// ejected from routing.
    pub proxy_connect_timeout: Duration,
    pub proxy_eject_period: Duration,
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
    /// Peers whose forwarding headers are believed (see `api::origin`); empty: nobody's.
    pub trusted_proxies: Vec<Cidr>,
}

/// An address block, `10.0.0.0/8` or `::1/128`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

const DEFAULT_NETWORK_POOL: &str = "10.213.0.0/16";
const DEFAULT_NETWORK_SUBNET_PREFIX: u8 = 28;
/// A /29 holds the gateway and five containers; smaller would not fit a rollout of two.
const MAX_NETWORK_SUBNET_PREFIX: u8 = 29;

fn network_pool(
    pool: Option<String>,
    prefix: Option<u8>,
) -> Result<crate::supervisor::subnets::Pool, ConfigError> {
    use crate::supervisor::subnets::{Block, Pool};
    let text = pool.unwrap_or_else(|| DEFAULT_NETWORK_POOL.to_owned());
    let block = Block::parse(&text)
        .filter(|b| text.trim().starts_with(&format!("{}/", b.addr)))
        .ok_or_else(|| {
            invalid(
                "network_pool",
                &text,
                "expected an IPv4 block starting at its first address, such as 10.213.0.0/16",
            )
        })?;
    let subnet_prefix = prefix.unwrap_or(DEFAULT_NETWORK_SUBNET_PREFIX);
    if subnet_prefix < block.prefix || subnet_prefix > MAX_NETWORK_SUBNET_PREFIX {
        return Err(invalid(
            "network_subnet_prefix",
            &subnet_prefix.to_string(),
            &format!(
                "must be from the pool's prefix length ({}) to {MAX_NETWORK_SUBNET_PREFIX}",
                block.prefix
            ),
        ));
    }
    Ok(Pool {
        pool: block,
        subnet_prefix,
    })
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
        args: ServeArgs,
        file: FileConfig,
        admin_password: Option<String>,
    ) -> Result<Config, ConfigError> {
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
        if let Err(reason) = crate::store::users::check_user_name(&admin_user) {
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
        let positive = |name: &'static str, value: u64| {
            if value == 0 {
                Err(invalid(name, "0", "must be at least 1 second"))
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        let reconcile_interval = positive(
            "reconcile_interval",
            args.reconcile_interval
                .or(file.reconcile_interval)
                .unwrap_or(DEFAULT_RECONCILE_INTERVAL),
        )?;
        let rollout_timeout = positive(
            "rollout_timeout",
            args.rollout_timeout
                .or(file.rollout_timeout)
                .unwrap_or(DEFAULT_ROLLOUT_TIMEOUT),
        )?;
        let proxy_timeout = positive(
            "proxy_timeout",
            args.proxy_timeout
                .or(file.proxy_timeout)
                .unwrap_or(DEFAULT_PROXY_TIMEOUT),
        )?;
        let proxy_connect_timeout = positive(
            "proxy_connect_timeout",
            args.proxy_connect_timeout
                .or(file.proxy_connect_timeout)
                .unwrap_or(DEFAULT_PROXY_CONNECT_TIMEOUT),
        )?;
        let proxy_eject_period = positive(
            "proxy_eject_period",
            args.proxy_eject_period
                .or(file.proxy_eject_period)
                .unwrap_or(DEFAULT_PROXY_EJECT_PERIOD),
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
        let autoscale_period = positive(
            "autoscale_period",
            args.autoscale_period
                .or(file.autoscale_period)
                .unwrap_or(DEFAULT_AUTOSCALE_PERIOD),
        )?;
        let autoscale_scale_down_window = positive(
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
        })?;
        // Swarm's overlays come from a pool of their own (see `runtime::SWARM_NETWORK_POOL`).
        let (pool_default, prefix_default) = match runtime {
            runtime::RuntimeChoice::Docker => (DEFAULT_NETWORK_POOL, DEFAULT_NETWORK_SUBNET_PREFIX),
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
        let mut trusted_proxies = Vec::new();
        let proxy_texts = if args.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            args.trusted_proxies
        };
        for text in proxy_texts.iter().filter(|t| !t.trim().is_empty()) {
            let cidr = Cidr::parse(text).map_err(|reason| {
                invalid(
                    "trusted_proxies",
                    text,
                    &format!("{reason}; expected a CIDR such as 10.0.0.0/8 or an address"),
                )
            })?;
            trusted_proxies.push(cidr);
        }
        Ok(Config {
            limits,
            host_firewall,
            network_pool,
            login_limits,
            password_hash_concurrency,
            password_hash_queue,
            trusted_proxies,
            proxy_timeout,
            proxy_connect_timeout,
            proxy_eject_period,
            internal_api,
            reconcile_interval,
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

/// The login settings given as flags or variables.
fn args_login(args: &ServeArgs) -> [Option<u64>; 4] {
    [
        args.login_user_failures.map(u64::from),
        args.login_source_failures.map(u64::from),
        args.login_failure_window,
        args.login_lockout,
    ]
}

/// Validates the password-guessing limits (flag > file > default).
fn login_limits(
    args: &[Option<u64>; 4],
    file: &FileConfig,
) -> Result<crate::auth::throttle::Limits, ConfigError> {
    let file_values = [
        file.login_user_failures.map(u64::from),
        file.login_source_failures.map(u64::from),
        file.login_failure_window,
        file.login_lockout,
    ];
    let defaults = [
        u64::from(DEFAULT_LOGIN_USER_FAILURES),
        u64::from(DEFAULT_LOGIN_SOURCE_FAILURES),
        DEFAULT_LOGIN_FAILURE_WINDOW,
        DEFAULT_LOGIN_LOCKOUT,
    ];
    let names = [
        "login_user_failures",
        "login_source_failures",
        "login_failure_window",
        "login_lockout",
    ];
    let mut values = [0u64; 4];
    for i in 0..4 {
        values[i] = args[i].or(file_values[i]).unwrap_or(defaults[i]);
        if values[i] == 0 || values[i] > 1_000_000 {
            return Err(invalid(
                names[i],
                &values[i].to_string(),
                "must be from 1 to 1000000",
            ));
        }
    }
    Ok(crate::auth::throttle::Limits {
        user_failures: u32::try_from(values[0]).unwrap_or(u32::MAX),
        source_failures: u32::try_from(values[1]).unwrap_or(u32::MAX),
        window: Duration::from_secs(values[2]),
        lockout: Duration::from_secs(values[3]),
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_addr(name: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            name,
            text,
            "expected IP:PORT, e.g. 127.0.0.1:8443 (port 0 picks a free port)",
        )
    })
}

/// A size setting from a flag/variable (text) or the file (bytes or text); None when unset.
fn size_setting(
    name: &'static str,
    arg: Option<String>,
    file: Option<toml::Value>,
) -> Result<Option<u64>, ConfigError> {
    let text = match (arg, file) {
        (Some(text), _) | (None, Some(toml::Value::String(text))) => text,
        (None, Some(toml::Value::Integer(n))) => n.to_string(),
        (None, Some(other)) => {
            return Err(invalid(
                name,
                &format!("{other:?}"),
                "must be bytes or a string like \"8GiB\"",
            ));
        }
        (None, None) => return Ok(None),
    };
    parse_size_of(name, &text).map(Some)
}

/// A CPU setting (`2`, `1.5`, `500m`, as in manifests) from a flag/variable or the file.
fn cpu_setting(
    name: &'static str,
    arg: Option<String>,
    file: Option<toml::Value>,
) -> Result<Option<u64>, ConfigError> {
    let text = match (arg, file) {
        (Some(text), _) | (None, Some(toml::Value::String(text))) => text,
        (None, Some(toml::Value::Integer(n))) => n.to_string(),
        (None, Some(toml::Value::Float(f))) => f.to_string(),
        (None, Some(other)) => {
            return Err(invalid(
                name,
                &format!("{other:?}"),
                "must be CPUs such as 2, 1.5 or \"500m\"",
            ));
        }
        (None, None) => return Ok(None),
    };
    match manifests_schema::parse_cpu(text.trim()) {
        Ok(m) if m > 0 => Ok(Some(m)),
        _ => Err(invalid(
            name,
            &text,
            "must be a positive number of CPUs such as 2, 1.5 or 500m",
        )),
    }
}

/// Parses `1048576`, `512KiB`, `500MiB`, `2GiB` (also KB/MB/GB as binary units).
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    parse_size_of("upload_limit", text)
}

/// [`parse_size`] for the setting `name` (named in the error).
fn parse_size_of(name: &'static str, text: &str) -> Result<u64, ConfigError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(invalid(name, text, "unknown unit; use B, KiB, MiB or GiB"));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(name, text, "must be a positive size such as 500MiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        let cases = [
            ("1024", Some(1024)),
            ("1KiB", Some(1024)),
            ("500MiB", Some(500 << 20)),
            ("2 GiB", Some(2 << 30)),
            ("0", None),
            ("5XB", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let file: FileConfig = toml::from_str(
            "https = \"0.0.0.0:9443\"\nupload_limit = \"1MiB\"\nadmin_user = \"root\"",
        )
        .unwrap();
        let args = ServeArgs {
            https: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        let config = Config::merge(args, file, None).unwrap();
        assert_eq!(config.https, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.upload_limit, 1 << 20);
        assert_eq!(config.image_size_limit, DEFAULT_IMAGE_SIZE_LIMIT);
        assert_eq!(config.tenant_storage_quota, DEFAULT_TENANT_STORAGE_QUOTA);
        assert_eq!(config.admin_user, "root");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.tls, TlsSource::Generated);
    }

    #[test]
    fn cidrs_parse_and_match() {
        let cases = [
            ("10.0.0.0/8", "10.200.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("::1", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "10.0.0.1", false),
            ("::/0", "2001:db8::1", true),
        ];
        for (cidr, ip, expected) in cases {
            let parsed = Cidr::parse(cidr).unwrap();
            assert_eq!(
                parsed.contains(ip.parse().unwrap()),
                expected,
                "{cidr} ∋ {ip}"
            );
        }
        for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("https = \"nonsense\"", "https"),
            ("upload_limit = -1", "upload_limit"),
            ("image_size_limit = 0", "image_size_limit"),
            ("image_size_limit = \"2TB\"", "image_size_limit"),
            ("tenant_storage_quota = true", "tenant_storage_quota"),
            ("tenant_storage_quota = \"-5\"", "tenant_storage_quota"),
            ("token_lifetime = 5", "token_lifetime"),
            ("admin_user = \"a/b\"", "admin_user"),
            ("tls_cert = \"/nonexistent.pem\"", "tls_key"),
            ("reconcile_interval = 0", "reconcile_interval"),
            ("pids_limit = 3", "pids_limit"),
            ("access_log = \"sample:0\"", "access_log"),
            ("access_log = \"some\"", "access_log"),
            ("proxy_timeout = 0", "proxy_timeout"),
            ("proxy_connect_timeout = 0", "proxy_connect_timeout"),
            ("proxy_eject_period = 0", "proxy_eject_period"),
            ("container_labels = [\"nokey\"]", "container_labels"),
            ("internal_api = \"8111\"", "internal_api"),
            ("max_container_memory = \"lots\"", "max_container_memory"),
            ("max_container_cpu = \"-1\"", "max_container_cpu"),
            ("max_replicas = 0", "max_replicas"),
            ("tenant_max_memory = 0", "tenant_max_memory"),
            ("tenant_max_cpu = \"0\"", "tenant_max_cpu"),
            ("tenant_max_containers = 0", "tenant_max_containers"),
            ("login_user_failures = 0", "login_user_failures"),
            ("login_lockout = 0", "login_lockout"),
            ("password_hash_concurrency = 0", "password_hash_concurrency"),
            ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies"),
            ("trusted_proxies = [\"proxy.local\"]", "trusted_proxies"),
            ("network_pool = \"fd00::/64\"", "network_pool"),
            ("network_pool = \"10.213.0.1/16\"", "network_pool"),
            ("network_pool = \"lots\"", "network_pool"),
            ("network_subnet_prefix = 30", "network_subnet_prefix"),
            (
                "network_pool = \"10.0.0.0/24\"\nnetwork_subnet_prefix = 20",
                "network_subnet_prefix",
            ),
        ];
        for (text, name) in cases {
            let file: FileConfig = toml::from_str(text).unwrap();
            let err = Config::merge(ServeArgs::default(), file, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{text}: {err}");
        }
        assert!(toml::from_str::<FileConfig>("htps = \"x\"").is_err());
    }

    #[test]
    fn limits_parse_from_the_file_and_unset_ones_stay_for_the_host() {
        let file: FileConfig = toml::from_str(
            "max_container_memory = \"2GiB\"\nmax_container_cpu = 1.5\ntenant_max_cpu = \"500m\"\nrefuse_root_images = true\nhost_firewall = false",
        )
        .unwrap();
        let config = Config::merge(ServeArgs::default(), file, None).unwrap();
        let expected = LimitSettings {
            container_memory: Some(2 << 30),
            container_millicores: Some(1500),
            replicas: DEFAULT_MAX_REPLICAS,
            tenant_memory: None,
            tenant_millicores: Some(500),
            tenant_containers: DEFAULT_TENANT_MAX_CONTAINERS,
            refuse_root_images: true,
        };
        assert_eq!(config.limits, expected);
        assert!(!config.host_firewall);
        let defaults = Config::merge(ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert!(defaults.host_firewall && !defaults.limits.refuse_root_images);
    }

    #[test]
    fn weak_admin_passwords_are_config_errors() {
        let cases = [
            ("Admin-Passw0rd", true),
            ("password", false),
            ("aaaaaaaaaaaa", false),
            ("administrator", false),
            ("short", false),
        ];
        for (password, ok) in cases {
            let result = Config::merge(
                ServeArgs::default(),
                FileConfig::default(),
                Some(password.into()),
            );
            match result {
                Ok(_) => assert!(ok, "{password} accepted"),
                Err(e) => {
                    assert!(!ok, "{password}: {e}");
                    assert!(e.to_string().contains("BERTH_ADMIN_PASSWORD"), "{e}");
                }
            }
        }
    }
}
