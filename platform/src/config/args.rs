//! The command line of `berth`: flags of `berth serve`, each also read from its `BERTH_*`
//! variable (clap's `env`). Nothing here is validated; [`super::Config`] does that.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Serve(Box<ServeArgs>),
    /// The host firewall rules `berth serve` installs, which outlive it by design.
    #[command(subcommand)]
    Firewall(FirewallCommand),
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Remove an installation's host firewall rules (when uninstalling Berth; a server started
    /// again with `host_firewall` on puts them back).
    Remove(FirewallRemoveArgs),
}

/// Whose rules `berth firewall remove` removes.
#[derive(Debug, Args)]
pub struct FirewallRemoveArgs {
    /// The data directory of the installation [default: ./berth-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The installation's id (`berth: installation <id>` at start), instead of its data
    /// directory.
    #[arg(long, value_name = "ID")]
    pub installation: Option<String>,
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
    /// runtime = swarm: each node's own engine, as NODE_ADDRESS=/path/to/docker.sock,
    /// comma-separated (for usage samples, exec probes, liveness kills and OOM records, which
    /// the manager cannot give) [default: none].
    #[arg(
        long,
        env = "BERTH_SWARM_NODE_ENGINES",
        value_name = "ADDR=SOCKET,…",
        value_delimiter = ','
    )]
    pub swarm_node_engines: Vec<String>,
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
    /// Deployments a reconcile pass creates or converges at once (each deployment's own steps
    /// stay in order), 1 to 64 [default: 8].
    #[arg(long, env = "BERTH_DEPLOY_CONCURRENCY", value_name = "N")]
    pub deploy_concurrency: Option<usize>,
    /// Seconds a new application version gets to become ready before it is rolled back
    /// [default: 300].
    #[arg(long, env = "BERTH_ROLLOUT_TIMEOUT", value_name = "SECONDS")]
    pub rollout_timeout: Option<u64>,
    /// Seconds a container may take to start answering a /service request before the
    /// client gets 504 [default: 60].
    #[arg(long, env = "BERTH_PROXY_TIMEOUT", value_name = "SECONDS")]
    pub proxy_timeout: Option<u64>,
    /// Seconds a proxied response's body may go without a byte from its container before the
    /// client's response is aborted [default: 300].
    #[arg(long, env = "BERTH_PROXY_READ_TIMEOUT", value_name = "SECONDS")]
    pub proxy_read_timeout: Option<u64>,
    /// Seconds the proxy waits for a TCP connection to a container [default: 5].
    #[arg(long, env = "BERTH_PROXY_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub proxy_connect_timeout: Option<u64>,
    /// Seconds a replica that refused, reset or timed out a proxied request stays out of
    /// routing (never the last routable one) [default: 10].
    #[arg(long, env = "BERTH_PROXY_EJECT_PERIOD", value_name = "SECONDS")]
    pub proxy_eject_period: Option<u64>,
    /// Seconds a client connection of the HTTPS listener may stay open with no request in
    /// progress [default: 75].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Seconds an upload's body may go without a byte from the client before it is refused
    /// with 408 [default: 60].
    #[arg(long, env = "BERTH_BODY_TIMEOUT", value_name = "SECONDS")]
    pub body_timeout: Option<u64>,
    /// Client connections the HTTPS listener keeps open at once; more are closed unread
    /// [default: what the file-descriptor limit allows, at most 16384].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections of one client address (trusted proxies excepted) [default: 1024].
    #[arg(long, env = "BERTH_MAX_CLIENT_CONNECTIONS", value_name = "N")]
    pub max_client_connections: Option<usize>,
    /// Connections one container address (on Swarm: one deployment network) may hold open to
    /// the internal API; more are closed unread [default: 256].
    #[arg(long, env = "BERTH_MAX_CONTAINER_CONNECTIONS", value_name = "N")]
    pub max_container_connections: Option<usize>,
    /// Live log streams (the console's live log) open on the whole platform, all tenants
    /// together; more get 503 with Retry-After (each tenant has at most 8) [default: 64].
    #[arg(long, env = "BERTH_MAX_LOG_STREAMS", value_name = "N")]
    pub max_log_streams: Option<usize>,
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
    /// Start each replica in the network namespace of a small holder container made ahead
    /// (faster starts; one more container of about 2.4 MB per replica); false joins replicas
    /// to their network directly. Local Docker runtime only [default: true].
    #[arg(long, env = "BERTH_NETWORK_HOLDERS", value_name = "BOOL")]
    pub network_holders: Option<bool>,
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
