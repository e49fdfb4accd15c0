//! The settings of connections and proxied requests: timeouts, the connection bounds and the
//! proxies whose forwarding headers are believed.

use std::time::Duration;

use super::args::ServeArgs;
use super::file::FileConfig;
use super::parse::{invalid, positive_secs};
use super::{Cidr, ConfigError};

/// Default seconds an upstream container may take to start answering a proxied request.
pub const DEFAULT_PROXY_TIMEOUT: u64 = 60;
/// Default seconds a proxied response's body may go without a byte from its container (nginx
/// `proxy_read_timeout`: 60 s). Longer than nginx's so a quiet event stream with a heartbeat
/// of a minute or two survives; short enough that a stalled body is reported, not waited on.
pub const DEFAULT_PROXY_READ_TIMEOUT: u64 = 300;
/// Default seconds the proxy waits for a TCP connection to a replica (nginx: 60 s, Envoy: 5 s;
/// a container on a local bridge connects in well under a millisecond).
pub const DEFAULT_PROXY_CONNECT_TIMEOUT: u64 = 5;
/// Default seconds a replica that refused, reset or timed out a proxied request stays out of
/// routing (nginx `fail_timeout`: 10 s; Envoy `base_ejection_time`: 30 s).
pub const DEFAULT_PROXY_EJECT_PERIOD: u64 = 10;
/// Default seconds a client connection of the HTTPS listener may stay open with no request in
/// progress (nginx `keepalive_timeout`: 75 s).
pub const DEFAULT_IDLE_TIMEOUT: u64 = 75;
/// Default seconds an upload's body may go without a byte from its client (nginx
/// `client_body_timeout`: 60 s). An upload holds one of the tenant's few upload places while
/// it arrives: one trickling a byte a minute would hold it for ever.
pub const DEFAULT_BODY_TIMEOUT: u64 = 60;
/// Default connections of one client address: more than any browser or SDK opens, a small
/// share of the whole.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 1_024;
/// Default connections of one container to the internal API: more than an SDK's connection
/// pool holds, a small share of the whole.
pub const DEFAULT_MAX_CONTAINER_CONNECTIONS: usize = 256;
/// Default live log streams open on the whole platform. Each holds a client connection, a
/// follow request to the engine (its connection, and a reader of the log in the engine) and up
/// to 64 KiB of a partial line, for up to an hour: 64 is 8 tenants at their own bound of 8,
/// twice the 32 one-shot log answers (a stream holds far less memory than an answer's 4 MiB,
/// but lasts long), a few MiB and a few hundred descriptors in all.
pub const DEFAULT_MAX_LOG_STREAMS: usize = 64;

/// The validated connection settings.
#[derive(Debug, Clone)]
pub struct Connections {
    /// Response-header timeout of a proxied request (504 after it).
    pub proxy_timeout: Duration,
    /// Longest silence of a container within a proxied response's body (aborted after it).
    pub proxy_read_timeout: Duration,
    /// Passive health of the data path: connect timeout, and how long a failing replica is
    /// ejected from routing.
    pub proxy_connect_timeout: Duration,
    pub proxy_eject_period: Duration,
    /// The HTTPS listener's client connections: idle ones are closed after `idle_timeout`;
    /// `max_connections` (unset: what the descriptor limit allows, decided at start) and
    /// `max_client_connections` bound how many are open.
    pub idle_timeout: Duration,
    /// Longest silence of a client within an upload's body (408 after it).
    pub body_timeout: Duration,
    pub max_connections: Option<usize>,
    pub max_client_connections: usize,
    /// Connections one container address (on Swarm: one deployment network) may hold open to
    /// the internal API; all containers together get a quarter of `max_connections`.
    pub max_container_connections: usize,
    /// Live log streams (`…/logs/{instance}/stream`) open on the platform, all tenants together.
    pub max_log_streams: usize,
    /// Peers whose forwarding headers are believed (see `api::origin`); empty: nobody's.
    pub trusted_proxies: Vec<Cidr>,
}

/// Takes the connection settings out of `args` and `file` (flag > environment > file >
/// default) and validates them.
pub(super) fn connections(
    args: &mut ServeArgs,
    file: &mut FileConfig,
) -> Result<Connections, ConfigError> {
    let seconds = |name, arg: Option<u64>, file: Option<u64>, default| {
        positive_secs(name, arg.or(file).unwrap_or(default))
    };
    let proxy_timeout = seconds(
        "proxy_timeout",
        args.proxy_timeout,
        file.proxy_timeout,
        DEFAULT_PROXY_TIMEOUT,
    )?;
    let proxy_read_timeout = seconds(
        "proxy_read_timeout",
        args.proxy_read_timeout,
        file.proxy_read_timeout,
        DEFAULT_PROXY_READ_TIMEOUT,
    )?;
    let proxy_connect_timeout = seconds(
        "proxy_connect_timeout",
        args.proxy_connect_timeout,
        file.proxy_connect_timeout,
        DEFAULT_PROXY_CONNECT_TIMEOUT,
    )?;
    let proxy_eject_period = seconds(
        "proxy_eject_period",
        args.proxy_eject_period,
        file.proxy_eject_period,
        DEFAULT_PROXY_EJECT_PERIOD,
    )?;
    let idle_timeout = seconds(
        "idle_timeout",
        args.idle_timeout,
        file.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
    )?;
    let body_timeout = seconds(
        "body_timeout",
        args.body_timeout,
        file.body_timeout,
        DEFAULT_BODY_TIMEOUT,
    )?;
    let max_connections = args.max_connections.or(file.max_connections);
    let max_client_connections = args
        .max_client_connections
        .or(file.max_client_connections)
        .unwrap_or(DEFAULT_MAX_CLIENT_CONNECTIONS);
    let max_container_connections = args
        .max_container_connections
        .or(file.max_container_connections)
        .unwrap_or(DEFAULT_MAX_CONTAINER_CONNECTIONS);
    let max_log_streams = args
        .max_log_streams
        .or(file.max_log_streams)
        .unwrap_or(DEFAULT_MAX_LOG_STREAMS);
    for (name, value) in [
        ("max_connections", max_connections.unwrap_or(1)),
        ("max_client_connections", max_client_connections),
        ("max_container_connections", max_container_connections),
        ("max_log_streams", max_log_streams),
    ] {
        if value == 0 {
            return Err(invalid(name, "0", "must be at least 1"));
        }
    }
    let proxy_texts = if args.trusted_proxies.is_empty() {
        file.trusted_proxies.take().unwrap_or_default()
    } else {
        std::mem::take(&mut args.trusted_proxies)
    };
    let mut trusted_proxies = Vec::new();
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
    Ok(Connections {
        proxy_timeout,
        proxy_read_timeout,
        proxy_connect_timeout,
        proxy_eject_period,
        idle_timeout,
        body_timeout,
        max_connections,
        max_client_connections,
        max_container_connections,
        max_log_streams,
        trusted_proxies,
    })
}
