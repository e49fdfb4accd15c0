//! The test fixture: a real `berth serve` process on a temporary data directory, and a small
//! HTTP client (ureq over real TLS, trusting the certificate the server generated).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "Admin-Passw0rd";
/// The management tenant's admin as a Basic login.
pub const MGMT_ADMIN: &str = "management/admin";

/// How long a server may take to print its listening lines.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Options for starting a server.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub http: bool,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Do not set BERTH_ADMIN_PASSWORD (the server then generates one).
    pub no_admin_password: bool,
    /// The certificate clients trust; default: the one generated in the data directory.
    pub trust_cert: Option<PathBuf>,
    /// Append the server's log (its stderr) to this file instead of the test's stderr.
    pub log_file: Option<PathBuf>,
}

pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    /// Owns the temporary directory (removed on drop) unless the data dir was given.
    _tmp: Option<Arc<tempfile::TempDir>>,
    pub https: String,
    pub http: Option<String>,
    /// Every `berth: …` line printed on stdout.
    pub lines: Vec<String>,
    options: Options,
    agent: ureq::Agent,
}

/// Runs `berth serve` with the given arguments and returns its exit status and stderr
/// (for configuration errors, which exit before listening).
pub fn run_expecting_failure(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(args)
        .env_remove("BERTH_ADMIN_PASSWORD")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run berth");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Server {
        let tmp = Arc::new(
            tempfile::Builder::new()
                .prefix("berth-it-")
                .tempdir()
                .expect("tempdir"),
        );
        let data_dir = tmp.path().join("data");
        Server::launch(data_dir, Some(tmp), options)
    }

    fn launch(data_dir: PathBuf, tmp: Option<Arc<tempfile::TempDir>>, options: Options) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--https")
            .arg("127.0.0.1:0")
            // Containers reach the internal API through the Docker host gateway; port 0
            // because servers run in parallel. Test containers are labelled for cleanup.
            .arg("--internal-api")
            .arg("0.0.0.0:0")
            .arg("--container-label")
            .arg("berth.test=1");
        if options.http {
            command.arg("--http").arg("127.0.0.1:0");
        }
        command.args(&options.extra_args);
        command
            .env_remove("BERTH_ADMIN_PASSWORD")
            // BERTH_TEST_LOG keeps more of the servers' logs when a test has to be looked into.
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if !options.no_admin_password {
            command.env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match &options.log_file {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("log file"),
                ),
                None => Stdio::inherit(),
            });
        let mut child = command.spawn().expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("berth: management tenant");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("berth did not start ({e}); stdout so far: {lines:?}");
                }
            }
        }
        let listening = |scheme: &str| {
            lines.iter().find_map(|l| {
                l.strip_prefix(&format!("berth: listening on {scheme}://"))
                    .map(|a| format!("{scheme}://{a}"))
            })
        };
        let https = listening("https").expect("https listening line");
        let http = listening("http");
        let cert_path = options
            .trust_cert
            .clone()
            .unwrap_or_else(|| data_dir.join("tls/cert.pem"));
        let cert = std::fs::read(cert_path).expect("server certificate");
        let agent = agent_trusting(&[cert], None);
        Server {
            child: Some(child),
            data_dir,
            _tmp: tmp,
            https,
            http,
            lines,
            options,
            agent,
        }
    }

    /// Stops the server gracefully (SIGTERM) and starts a new one on the same data directory.
    pub fn restart(mut self) -> Server {
        self.stop();
        let data_dir = self.data_dir.clone();
        let tmp = self._tmp.clone();
        let options = self.options.clone();
        drop(self);
        Server::launch(data_dir, tmp, options)
    }

    /// [`Server::restart`] with `extra` added to its arguments (each flag it had not yet).
    pub fn restart_with_args(mut self, extra: &[&str]) -> Server {
        (self.options.extra_args).extend(extra.iter().map(|s| (*s).to_owned()));
        self.restart()
    }

    /// Kills the server (SIGKILL: no cleanup, like a crash); `restart` starts it again.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.terminate();
        self.wait_exit()
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit (after [`Server::terminate`]); returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            server: self,
            base: self.https.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: vec![("Accept".into(), "application/json".into())],
            body: None,
        }
    }

    /// A request to the plain-HTTP listener.
    pub fn req_http(&self, method: &str, path: &str) -> Req<'_> {
        let mut req = self.req(method, path);
        req.base = self.http.clone().expect("server started with --http");
        req
    }

    /// A GET as the management admin.
    pub fn admin_get(&self, path: &str) -> Resp {
        self.req("GET", path)
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .send()
    }

    /// The server's process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A fresh agent (its own connections) trusting this server's certificate.
    pub fn agent(&self, timeout: Option<Duration>) -> ureq::Agent {
        let pem = std::fs::read(self.path("tls/cert.pem")).expect("the server's certificate");
        agent_trusting(&[pem], timeout)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.data_dir.join(relative)
    }

    /// This server's installation id, from its `berth: installation <id>` line.
    pub fn installation(&self) -> &str {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("berth: installation "))
            .expect("installation line")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The last owner of a data directory (not a restart handing it on) also removes what
        // outlives the process by design: the host firewall rules, and the containers, networks
        // and image tags of its installation (a test that unsubscribes just before it ends
        // cannot know whether the killed server had removed them yet).
        let last = self
            ._tmp
            .as_ref()
            .map_or(self.child.is_some(), |t| Arc::strong_count(t) == 1);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if last
            && let Some(installation) = self
                .lines
                .iter()
                .find_map(|l| l.strip_prefix("berth: installation "))
        {
            remove_host_firewall(installation);
            remove_installation_objects(installation);
        }
    }
}

/// Removes what a server of `installation` left in Docker: its containers (forced), then its
/// networks, then its image tags (each image goes with its last tag).
pub fn remove_installation_objects(installation: &str) {
    let filter = format!("label=berth.installation={installation}");
    let list = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    // A start in flight when the server died (a spare network holder's, most often) ends
    // first: removed mid-start, a container leaves the engine counting a network endpoint no
    // container has, and that network can never be removed.
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let created = [
        "ps",
        "-aq",
        "--filter",
        &filter,
        "--filter",
        "status=created",
    ];
    while std::time::Instant::now() < settle && !list(&created).trim().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A killed server's last engine calls (a network or a spare network holder being made)
    // still complete after it died: remove until a pass a second after the start finds nothing.
    let start = std::time::Instant::now();
    for _ in 0..20 {
        let containers = list(&["ps", "-aq", "--filter", &filter]);
        let networks = list(&["network", "ls", "-q", "--filter", &filter]);
        if containers.trim().is_empty()
            && networks.trim().is_empty()
            && start.elapsed() >= std::time::Duration::from_secs(1)
        {
            break;
        }
        for id in containers.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        for id in networks.split_whitespace() {
            let _ = Command::new("docker").args(["network", "rm", id]).output();
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // The tags `berth/<installation>/…` (forced: an image another test's container still
    // uses is untagged and goes once nothing holds it).
    let prefix: String = installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let reference = format!("reference=berth/{prefix}/*");
    let tags = list(&[
        "images",
        "--filter",
        &reference,
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    for tag in tags.split_whitespace() {
        let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    }
}

/// Removes the host firewall rules a server installed (they outlive it by design) with
/// `berth firewall remove`, as an operator would.
pub fn remove_host_firewall(installation: &str) {
    let _ = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["firewall", "remove", "--installation", installation])
        .output();
}

/// An HTTPS agent trusting exactly the certificates `pems`: statuses are returned, not
/// raised, redirects are not followed, and a call (its body included) may take `timeout`.
pub fn agent_trusting(pems: &[Vec<u8>], timeout: Option<Duration>) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let certs = pems
        .iter()
        .map(|pem| {
            Certificate::from_pem(pem)
                .expect("certificate PEM")
                .to_owned()
        })
        .collect();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .accept(ureq::config::AutoHeaderValue::None)
        .max_redirects(0)
        .timeout_global(timeout)
        .build()
        .into()
}

/// The `Authorization` value of Basic authentication as `login`.
pub fn basic_auth(login: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{login}:{password}")))
}

/// A request being built.
pub struct Req<'a> {
    server: &'a Server,
    base: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn no_accept(mut self) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("accept"));
        self
    }

    pub fn basic(self, login: &str, password: &str) -> Self {
        let value = basic_auth(login, password);
        self.header("Authorization", &value)
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn json(self, body: &Value) -> Self {
        let mut req = self.header("Content-Type", "application/json");
        req.body = Some(body.to_string().into_bytes());
        req
    }

    pub fn raw(self, content_type: &str, body: Vec<u8>) -> Self {
        let mut req = self.header("Content-Type", content_type);
        req.body = Some(body);
        req
    }

    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.raw("application/x-www-form-urlencoded", text.into_bytes())
    }

    pub fn send(self) -> Resp {
        let url = format!("{}{}", self.base, self.path);
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(&url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(self.body.unwrap_or_default())
            .expect("request");
        let mut response = self
            .server
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{} {url}: {e}", self.method));
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in response.headers() {
            headers.push((
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            ));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all_headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Asserts the status, printing the body on mismatch; returns self for chaining.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts a Cumulocity error body with this status and `error` value.
    #[track_caller]
    pub fn expect_error(self, status: u16, error: &str) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert!(
            self.header("content-type")
                .unwrap_or_default()
                .starts_with("application/vnd.com.nsn.cumulocity.error+json"),
            "error content type: {:?}",
            self.header("content-type")
        );
        let body = self.json();
        assert_eq!(body["error"], error, "error body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message in {body}"
        );
        assert!(body["info"].is_string(), "info in {body}");
        self
    }

    /// Cookies set by the response, name → value.
    pub fn cookies(&self) -> HashMap<String, String> {
        self.all_headers("set-cookie")
            .iter()
            .filter_map(|c| {
                c.split(';')
                    .next()?
                    .split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect()
    }
}

/// Lists every file under `dir` (relative paths), for "no trace left" checks.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

/// A unique id for names created by this test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..10)
            .unwrap_or_default()
    )
}

/// A subtenant created through the API, with its admin's Basic login.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub admin_login: String,
    pub admin_password: String,
}

impl Tenant {
    /// The `Authorization` value of its admin.
    pub fn basic(&self) -> String {
        basic_auth(&self.admin_login, &self.admin_password)
    }
}

/// The name (the `/service/<name>` path segment) of application `app`, read as its owner.
pub fn app_name(server: &Server, owner: &Tenant, app: &str) -> String {
    server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The management tenant as a [`Tenant`].
pub fn management() -> Tenant {
    Tenant {
        id: "management".to_owned(),
        admin_login: MGMT_ADMIN.to_owned(),
        admin_password: ADMIN_PASSWORD.to_owned(),
    }
}

pub fn create_tenant(server: &Server, label: &str) -> Tenant {
    let domain = format!("{}.example.com", unique(label));
    let password = "Tenant-Admin-1";
    let body = serde_json::json!({"company": format!("{label} Inc"), "domain": domain, "adminName": "boss", "adminEmail": "boss@example.com", "adminPass": password});
    let created = server
        .req("POST", "/tenant/tenants")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&body)
        .send()
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("tenant id").to_owned();
    Tenant {
        admin_login: format!("{id}/boss"),
        id,
        admin_password: password.to_owned(),
    }
}

/// Creates a user in `tenant` (as its admin) and returns their Basic login.
pub fn create_user(server: &Server, tenant: &Tenant, name: &str, password: &str) -> String {
    let body = serde_json::json!({"userName": name, "password": password, "email": format!("{name}@example.com")});
    server
        .req("POST", &format!("/user/{}/users", tenant.id))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .json(&body)
        .send()
        .expect(201);
    format!("{}/{name}", tenant.id)
}

/// The `Accept` that asks `…/currentApplication/settings` for the flat `{key: value}` values
/// (pyc8y's; the Java SDK gets them for `application/json`), whatever the client.
pub const SETTINGS_VALUES: &str = "application/vnd.com.nsn.cumulocity.option+json";
