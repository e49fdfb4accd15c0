//! Berth, the platform server: configuration, TLS, the SQLite store, authentication, the
//! Cumulocity-shaped HTTP API and the Docker runtime, assembled by [`serve`].

pub(crate) mod admission;
pub(crate) mod api;
pub(crate) mod apps;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod client_noise;
pub mod config;
pub(crate) mod console;
pub(crate) mod counts;
pub(crate) mod edge;
pub(crate) mod fault;
pub(crate) mod front;
pub(crate) mod internal_api;
pub(crate) mod limits;
pub(crate) mod log_output;
pub mod package;
pub(crate) mod proxy;
pub(crate) mod routing;
pub mod runtime;
pub(crate) mod secrets;
pub(crate) mod series;
pub(crate) mod storage;
pub(crate) mod store;
pub(crate) mod supervisor;
pub(crate) mod sync;
pub(crate) mod tls;
pub(crate) mod truncate;

/// The database handle, for tests and tools that inspect a data directory while Berth is stopped.
pub use store::{DATABASE_FILE, Store};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::{App, HttpServer, web};

use api::AppState;
use auth::cache::{CredentialCache, DEFAULT_TTL};
use config::Config;
use store::tenants::{self, NewTenant};
use store::users::NewUser;

/// Sub-directory of the data directory for uploads in progress; emptied at every start.
pub const TMP_DIR: &str = "tmp";
/// Sub-directory of the data directory for accepted packages.
pub const PACKAGES_DIR: &str = "packages";
/// File in the data directory holding this installation's id (labels its Docker objects).
pub const INSTALLATION_FILE: &str = "installation-id";
pub use internal_api::INTERNAL_PORT_FILE;
/// File in the data directory remembering the Swarm gateway's port (every relay's service
/// spec names it, so it must not change with a restart).
pub const SWARM_GATEWAY_PORT_FILE: &str = "swarm-gateway-port";
/// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("cannot hash the admin password: {0}")]
    Hash(#[from] auth::password::HashError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Server(std::io::Error),
    #[error("invalid setting {0}")]
    Limits(#[from] limits::OverHost),
    #[error(transparent)]
    Firewall(#[from] runtime::firewall::FirewallError),
    #[error("invalid setting {0}")]
    Connections(#[from] admission::OverFdLimit),
}

/// Installs the tracing subscriber: to stderr (stdout carries the machine-readable lines) in
/// batches (see [`log_output`]), coloured only on a terminal. Keep the returned flusher until
/// exit: dropping it writes out what is buffered.
pub fn init_tracing(filter: &str) -> log_output::Flusher {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // What anonymous clients can cause at will is counted and summarized, not logged per event.
    for directive in client_noise::silencing_directives() {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| log_output::BatchedStderr)
        .with_filter(filter);
    let noise = client_noise::Counter.with_filter(client_noise::targets());
    if tracing_subscriber::registry()
        .with(log)
        .with(noise)
        .try_init()
        .is_ok()
    {
        client_noise::start_reporter();
    }
    log_output::Flusher::start()
}

/// Prints one machine-readable line on stdout (`berth: …`).
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "berth: {line}");
    let _ = stdout.flush();
}

fn prepare_dir(path: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| StartupError::DataDir {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}

/// This installation's id: random on first start, then read from the data directory. Every
/// container and network carries it, and the supervisor only touches objects with its own id.
fn installation_id(data_dir: &Path, secrets: &secrets::Secrets) -> Result<String, StartupError> {
    let path = data_dir.join(INSTALLATION_FILE);
    let fail = |source| StartupError::DataDir {
        path: path.clone(),
        source,
    };
    if let Some(id) = stored_installation_id(data_dir)? {
        return Ok(id);
    }
    let id = secrets.random_token(16)?.to_ascii_lowercase();
    secrets::write_atomically(&path, id.as_bytes(), 0o600).map_err(fail)?;
    Ok(id)
}

/// The installation id a data directory holds, if any.
pub fn stored_installation_id(data_dir: &Path) -> Result<Option<String>, StartupError> {
    let path = data_dir.join(INSTALLATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartupError::DataDir { path, source }),
    }
}

/// On Swarm: binds the gateway that carries the relays' connections to the internal API
/// (`runtime::swarm::gateway`) on the platform address (its port remembered, as every relay's
/// spec names it) and hands the runtime its identity.
async fn start_swarm_gateway(
    swarm: &runtime::swarm::SwarmRuntime,
    config: &Config,
    installation: &str,
    secrets: &secrets::Secrets,
    internal_addr: std::net::SocketAddr,
) -> Result<(), StartupError> {
    let listener = internal_api::bind_remembered(
        std::net::SocketAddr::new(swarm.platform_address(), 0),
        &config.data_dir.join(SWARM_GATEWAY_PORT_FILE),
    )?;
    let gateway = listener.local_addr().map_err(StartupError::Server)?;
    listener
        .set_nonblocking(true)
        .map_err(StartupError::Server)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(StartupError::Server)?;
    let key = secrets.purpose_key("berth swarm relay tokens").to_vec();
    swarm.identify(installation.to_owned(), key.clone(), gateway);
    tokio::spawn(runtime::swarm::gateway::serve(listener, key, internal_addr));
    announce(&format!("swarm gateway on {gateway}"));
    Ok(())
}

/// Creates the management tenant and its administrator on first start. The password comes
/// from `BERTH_ADMIN_PASSWORD` or is generated and printed once.
fn ensure_management_tenant(
    store: &Store,
    config: &Config,
    secrets: &secrets::Secrets,
) -> Result<(), StartupError> {
    if store.run_now(|c| tenants::exists(c, tenants::MANAGEMENT))? {
        return Ok(());
    }
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), false),
        None => (secrets.random_token(24)?, true),
    };
    let admin = NewUser {
        user_name: config.admin_user.clone(),
        password_hash: auth::password::hash(&password)?,
        enabled: true,
        ..NewUser::default()
    };
    let tenant = NewTenant {
        id: tenants::MANAGEMENT.to_owned(),
        domain: tenants::MANAGEMENT.to_owned(),
        company: "Berth management".to_owned(),
        parent: None,
        contact_name: None,
        contact_phone: None,
        custom_properties: Default::default(),
        allow_create_tenants: true,
    };
    store.run_now(|c| tenants::create(c, &tenant, &admin, auth::roles::MANAGEMENT_GROUPS))?;
    announce(&format!("admin user {}", config.admin_user));
    if generated {
        announce(&format!("admin password {password}"));
    }
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT, then lets in-flight requests finish.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    tls::install_crypto_provider();
    // The descriptors the connection limit needs, before anything is started or written.
    let budget = admission::connection_budget(config.connections.max_connections)?;
    // The HTTPS listener's connections, and the requests they keep in progress at the app: as
    // many of the one as of the other, per address and in all.
    let public_limits = admission::Limits {
        max_connections: budget.public,
        max_client_connections: config.connections.max_client_connections,
        exempt: config.connections.trusted_proxies.clone(),
    };
    let public_admission = admission::Admission::new(public_limits.clone());
    let internal_admission = admission::Admission::new(admission::Limits {
        max_connections: budget.internal,
        max_client_connections: config.connections.max_container_connections,
        exempt: Vec::new(),
    });
    // Docker first: without an engine nothing can run, and nothing has been written yet.
    let (runtime, swarm): (Arc<dyn runtime::Runtime>, _) = match &config.runtime {
        config::runtime::RuntimeChoice::Docker(choice) => {
            let engine = runtime::docker::DockerEngine::connect(&config.docker_socket).await?;
            let engine = if choice.network_holders {
                engine
            } else {
                engine.without_holders()
            };
            (Arc::new(engine), None)
        }
        config::runtime::RuntimeChoice::Swarm(choice) => {
            if choice.registry_credentials.is_none() {
                // Tasks reach the nodes' network (their egress), so the registry too.
                tracing::warn!(
                    registry = %choice.registry,
                    "the registry takes no credentials: any tenant's task can list, pull and \
                     delete every tenant's images there; set BERTH_REGISTRY_USER and \
                     BERTH_REGISTRY_PASSWORD (README: What Swarm cannot guarantee)"
                );
            }
            let swarm = Arc::new(
                runtime::swarm::SwarmRuntime::connect(
                    &config.docker_socket,
                    runtime::swarm::SwarmSettings {
                        registry: choice.registry.clone(),
                        registry_credentials: choice.registry_credentials.clone(),
                        relay_image: choice.relay_image.clone(),
                        platform_address: choice.platform_address,
                        node_engines: choice.node_engines.iter().cloned().collect(),
                    },
                )
                .await?,
            );
            (Arc::clone(&swarm) as Arc<dyn runtime::Runtime>, Some(swarm))
        }
    };
    let host = runtime.host_resources().await?;
    let limits = config.limits.resolve(limits::Host {
        millicores: host.cpus.saturating_mul(1000),
        memory_bytes: host.memory_bytes,
        only_port: host.only_port,
        exec_probes: host.exec_probes,
    })?;
    prepare_dir(&config.data_dir)?;
    let tmp = config.data_dir.join(TMP_DIR);
    // Leftovers of uploads interrupted by a crash: never part of any accepted state.
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|source| StartupError::DataDir {
            path: tmp.clone(),
            source,
        })?;
    }
    prepare_dir(&tmp)?;
    prepare_dir(&config.data_dir.join(PACKAGES_DIR))?;
    auth::password::configure(config.password_hash_concurrency, config.password_hash_queue);
    let secrets = Arc::new(secrets::Secrets::load_or_create(&config.data_dir)?);
    let store = Store::open(&config.data_dir.join(store::DATABASE_FILE))?;
    // What a kill interrupted, read before any request can record an intent of its own.
    let interrupted = store.run_now(store::intents::pending)?;
    apps::intents::sweep_packages(&config.data_dir, &store, &interrupted)?;
    ensure_management_tenant(&store, &config, &secrets)?;
    let (tls_config, certificate) = tls::server_config(&config.tls, &config.data_dir)?;
    tokio::spawn(tls::watch(certificate));
    let installation = installation_id(&config.data_dir, &secrets)?;

    // The internal listener is bound first: containers get its real port in C8Y_BASEURL.
    let internal_listener = internal_api::bind(&config)?;
    let internal_addr = internal_listener
        .local_addr()
        .map_err(StartupError::Server)?;
    // Before any container runs: the host answers deployment networks on this port only.
    if config.host_firewall {
        runtime::firewall::install(&installation, internal_addr.port())?;
    } else {
        let _ = runtime::firewall::remove(&installation);
    }
    // On Swarm the tasks reach the internal API through their relay and the gateway, at the
    // relays' platform port.
    let (base_port, gateway_peer) = match &swarm {
        Some(swarm) => {
            start_swarm_gateway(swarm, &config, &installation, &secrets, internal_addr).await?;
            (runtime::swarm::services::PLATFORM_PORT, true)
        }
        None => (internal_addr.port(), false),
    };
    let routing = routing::RoutingTable::new();
    let audit = audit::AuditLog::start(store.clone());
    // Series of deleted applications go within a minute even when nobody reads /metrics.
    series::spawn_sweep(store.clone(), std::time::Duration::from_secs(60));
    let supervisor = supervisor::Supervisor::new(
        supervisor::Settings {
            installation: installation.clone(),
            extra_labels: config.container_labels.clone(),
            reconcile_interval: config.reconcile_interval,
            rollout_timeout: config.rollout_timeout,
            pids_limit: config.pids_limit,
            autoscaling: supervisor::Autoscaling {
                period: config.autoscale_period,
                target: config.autoscale_target,
                scale_down_window: config.autoscale_scale_down_window,
                max_replicas: config.autoscale_max_replicas,
                drain_period: config.drain_period,
            },
            answer_timeout: config.connections.proxy_connect_timeout,
            network_pool: config.network_pool,
            deploy_concurrency: config.deploy_concurrency,
            roll_back: apps::rollback::roll_back,
            maxima: limits::Maxima {
                limits,
                autoscale_max: config.autoscale_max_replicas,
            },
            platform: supervisor::spec::Platform {
                base_url: format!("http://{}:{base_port}", runtime::PLATFORM_HOST),
                default_timezone: config.default_timezone.clone(),
            },
        },
        store.clone(),
        audit.clone(),
        Arc::clone(&runtime),
        Arc::clone(&secrets),
        routing.clone(),
    );
    let supervisor_handle = supervisor.handle();

    let cache = Arc::new(CredentialCache::new(DEFAULT_TTL));
    let flows = Arc::new(apps::Apps {
        data_dir: config.data_dir.clone(),
        store: store.clone(),
        secrets: Arc::clone(&secrets),
        runtime: Arc::clone(&runtime),
        supervisor: supervisor_handle.clone(),
        audit: audit.clone(),
        cache: Arc::clone(&cache),
        limits,
        autoscale_max_replicas: config.autoscale_max_replicas,
        installation: installation.clone(),
        image_size_limit: config.image_size_limit,
        tenant_storage_quota: config.tenant_storage_quota,
        upload_lock: tokio::sync::Mutex::new(()),
        arriving_uploads: tokio::sync::Semaphore::new(apps::upload::ARRIVING_UPLOADS),
        uploads: counts::Quota::new(apps::upload::UPLOADS, apps::upload::TENANT_UPLOADS),
    });
    let state = web::Data::new(AppState {
        config: Arc::new(config.clone()),
        store,
        secrets,
        cache,
        throttle: auth::throttle::Throttle::new(config.login_limits),
        runtime,
        supervisor: supervisor_handle.clone(),
        routing,
        audit: audit.clone(),
        apps: Arc::clone(&flows),
        log_snapshots: api::instance_logs::snapshots(),
    });
    let app_state = state.clone();
    let proxy = proxy::Proxy::new(
        proxy::Settings {
            timeout: config.connections.proxy_timeout,
            read_timeout: config.connections.proxy_read_timeout,
            connect_timeout: config.connections.proxy_connect_timeout,
            eject_period: config.connections.proxy_eject_period,
        },
        config.access_log,
        // One upstream connection per client connection the descriptor budget counted.
        budget.public + budget.internal,
    );
    let public_proxy = proxy.clone();
    let platform: Arc<dyn proxy::Platform> = state.clone().into_inner();
    let public_platform = Arc::clone(&platform);
    let internal_platform = Arc::clone(&platform);
    let log_streams = console::log_stream::OpenStreams::new(config.connections.max_log_streams);
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(public_proxy.invalidate_on_write())
            .wrap_fn(api::hygiene::run_writes_to_end)
            .wrap_fn(api::hygiene::request_span)
            .wrap_fn(api::hygiene::edge_hygiene)
            // Outermost: a request the front passed on gets its client's address first.
            .wrap_fn(|mut req, srv| {
                front::backend::adopt(&mut req);
                srv.call(req)
            })
            .configure(public_proxy.configure(public_platform.clone()))
            .configure(console::routes(log_streams.clone()))
            .configure(api::configure(app_state.clone(), api::Listener::Public))
    })
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    // A peer that closed its side has left: its handler (a proxied response or a tunnel to a
    // service that never ends) is dropped, not kept waiting for a reader that is gone.
    .h1_allow_half_closed(false);
    // HTTPS is the front's (hyper); the app answers what it passes on over a Unix socket.
    let bind_error = |addr: std::net::SocketAddr| {
        move |source| StartupError::Bind {
            addr: addr.to_string(),
            source,
        }
    };
    let https_listener =
        std::net::TcpListener::bind(config.https).map_err(bind_error(config.https))?;
    let https_addr = https_listener
        .local_addr()
        .map_err(bind_error(config.https))?;
    https_listener
        .set_nonblocking(true)
        .map_err(bind_error(config.https))?;
    let https_listener =
        tokio::net::TcpListener::from_std(https_listener).map_err(bind_error(config.https))?;
    let (socket, socket_path) =
        front::backend::bind(&config.data_dir).map_err(|source| StartupError::DataDir {
            path: config.data_dir.join(front::backend::SOCKET_FILE),
            source,
        })?;
    server = server
        .listen_uds(socket)
        .map_err(|source| StartupError::DataDir {
            path: socket_path.clone(),
            source,
        })?;
    announce(&format!("listening on https://{https_addr}"));
    if let Some(http) = config.http {
        let listener = std::net::TcpListener::bind(http).map_err(bind_error(http))?;
        let addr = listener.local_addr().map_err(bind_error(http))?;
        server = server.listen(listener).map_err(bind_error(http))?;
        announce(&format!("listening on http://{addr}"));
    }
    let front = Arc::new(front::Front {
        direct: proxy.direct(platform),
        backend: front::backend::Backend::new(
            socket_path,
            admission::Admission::new(public_limits),
        ),
        trusted: config.connections.trusted_proxies.clone(),
        idle_timeout: config.connections.idle_timeout,
    });
    let internal = internal_api::server(internal_api::Parts {
        listener: internal_listener,
        state: state.clone(),
        proxy,
        platform: internal_platform,
        gateway_peer,
        admission: internal_admission,
        shutdown_grace_secs: SHUTDOWN_GRACE_SECS,
    })?;
    announce(&format!("internal api on http://{internal_addr}"));
    announce(&format!("installation {installation}"));
    announce(&format!("management tenant {}", tenants::MANAGEMENT));
    let supervisor_task = tokio::spawn(supervisor.run());
    let recount_task = tokio::spawn(apps::recount::run(Arc::clone(&flows)));
    tokio::spawn(apps::intents::resume(flows, interrupted));
    let (stop_front, front_stopped) = tokio::sync::watch::channel(false);
    let front_task = tokio::spawn(front::serve(
        https_listener,
        Arc::new(tls_config),
        front,
        public_admission,
        front_stopped,
        std::time::Duration::from_secs(SHUTDOWN_GRACE_SECS),
    ));
    let (public, internal) = futures_util::future::join(server.run(), internal).await;
    let _ = stop_front.send(true);
    let _ = front_task.await;
    supervisor_task.abort();
    recount_task.abort();
    // What was recorded up to now, including by requests that finished during the grace period.
    audit.flush().await;
    public.map_err(StartupError::Server)?;
    internal.map_err(StartupError::Server)?;
    drop(state);
    tracing::info!("stopped");
    Ok(())
}
