//! A blocking client for the platform's Cumulocity REST API: find or create a microservice
//! application, upload a package to it, subscribe a tenant. Every non-2xx answer becomes a
//! [`ClientError`] carrying the server's own error message; a 2xx without the expected body is
//! an error too, so nothing is ever reported as done that the server did not confirm.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use ureq::SendBody;
use ureq::http::Response;

pub use crate::client_error::ClientError;
use crate::client_error::{Limits, answer, transport, unexpected};
use crate::multipart_body::MultipartBody;
use crate::tls_trust::{self, Trust};

/// Where the platform is and who we are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://host:port` (no trailing slash).
    pub base_url: String,
    /// `tenant/user` (or a bare user name).
    pub user: String,
    pub password: String,
    pub trust: Trust,
    /// How long a transfer may make no progress (`--stall-timeout`).
    pub stall: Duration,
}

/// A reachable server is local or nearby; a dead address should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// After the upload the server loads the image into its container engine before answering;
/// a large image takes minutes. Past this the server is considered hung. Only the upload's
/// wait for its answer gets this; every other phase of every call is bounded by the stall
/// timeout, so a server that stops reading or writing cannot hang a pipeline.
const UPLOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn media(name: &str) -> String {
    format!("application/vnd.com.nsn.cumulocity.{name}+json")
}

/// The fields of an application the tool needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub app_type: String,
    pub active_version_id: Option<String>,
    /// The owner tenant's id (`owner.tenant.id`), when the platform says.
    pub owner: Option<String>,
}

impl Application {
    fn from_json(value: &Value) -> Option<Application> {
        let text = |key: &str| match value.get(key)? {
            Value::String(text) => Some(text.clone()),
            // Ids are strings in Cumulocity; tolerate numbers from other implementations.
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        Some(Application {
            id: text("id").filter(|id| !id.is_empty())?,
            name: text("name").unwrap_or_default(),
            app_type: text("type").unwrap_or_default(),
            active_version_id: text("activeVersionId"),
            owner: value
                .pointer("/owner/tenant/id")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// What a subscription request achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Created,
    /// HTTP 409: the goal was already met.
    AlreadySubscribed,
}

/// A client bound to one platform and one login.
#[derive(Debug)]
pub struct PlatformClient {
    agent: ureq::Agent,
    base_url: String,
    authorization: String,
    /// The tenant of a `tenant/user` login; a bare user's is asked for when needed.
    tenant: Option<String>,
    stall: Duration,
}

impl PlatformClient {
    pub fn new(target: &Target) -> Result<PlatformClient, ClientError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_send_request(Some(target.stall))
            .timeout_per_write(Some(target.stall))
            .timeout_per_read(Some(target.stall))
            .timeout_recv_response(Some(target.stall))
            .timeout_recv_body(Some(target.stall))
            .user_agent(concat!("berth-pack/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls_trust::tls_config(&target.trust)?)
            .build();
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", target.user, target.password));
        Ok(PlatformClient {
            agent: config.into(),
            base_url: target.base_url.clone(),
            authorization: format!("Basic {credentials}"),
            tenant: target
                .user
                .split_once('/')
                .map(|(tenant, _)| tenant.to_owned()),
            stall: target.stall,
        })
    }

    /// The application called exactly `name` that the caller's tenant owns, if there is one.
    /// The platform lists others of that name too (Cumulocity, and Berth, list what a tenant
    /// may use: its own, those it is subscribed to or offered), which must never take an
    /// upload meant for an application of its own.
    pub fn find_application(&self, name: &str) -> Result<Option<Application>, ClientError> {
        let named = self.applications_named(name)?;
        self.own_among(named)
    }

    /// The application called `name` a subscription means: the caller's own if it has one,
    /// else the first other one the platform lists (one offered to the caller's tenant).
    pub fn find_subscribable(&self, name: &str) -> Result<Option<Application>, ClientError> {
        let named = self.applications_named(name)?;
        let first = named.first().cloned();
        Ok(self.own_among(named)?.or(first))
    }

    /// The first of `named` the caller's tenant owns; one without an owner counts as its own
    /// (the platform did not say), so the tenant is asked for only when an owner is named.
    fn own_among(&self, named: Vec<Application>) -> Result<Option<Application>, ClientError> {
        if named.iter().all(|a| a.owner.is_none()) {
            return Ok(named.into_iter().next());
        }
        let tenant = self.own_tenant()?;
        Ok(named
            .into_iter()
            .find(|a| a.owner.as_deref().is_none_or(|owner| owner == tenant)))
    }

    /// The caller's tenant: the login's prefix, else `GET /tenant/currentTenant`'s `name`.
    fn own_tenant(&self) -> Result<String, ClientError> {
        if let Some(tenant) = &self.tenant {
            return Ok(tenant.clone());
        }
        let action = "reading the login's tenant";
        let url = format!("{}/tenant/currentTenant", self.base_url);
        let request = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("currentTenant"));
        let (status, body) = self.answer(action, &url, request.call())?;
        body.get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| unexpected(action, status, "no tenant `name`", &body))
    }

    /// Every application called exactly `name` the platform lists for the caller, in its order.
    fn applications_named(&self, name: &str) -> Result<Vec<Application>, ClientError> {
        let action = format!("looking up application {name:?}");
        let url = format!(
            "{}/application/applicationsByName/{}",
            self.base_url,
            path_segment(name)
        );
        let request = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("applicationCollection"));
        let (status, body) = self.answer(&action, &url, request.call())?;
        let applications = body
            .get("applications")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected(&action, status, "no `applications` array", &body))?;
        // The server filters by name already; compare again so a loose match is never used.
        Ok(applications
            .iter()
            .filter_map(Application::from_json)
            .filter(|application| application.name == name)
            .collect())
    }

    /// Creates a microservice application with the conventional key `<name>-microservice-key`.
    pub fn create_microservice(&self, name: &str) -> Result<Application, ClientError> {
        let action = format!("creating application {name:?}");
        let url = format!("{}/application/applications", self.base_url);
        let request = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("application"))
            .header("Content-Type", media("application"));
        let body = json!({
            "name": name,
            "key": format!("{name}-microservice-key"),
            "type": "MICROSERVICE",
        });
        let (status, body) = self.answer(&action, &url, request.send_json(&body))?;
        Application::from_json(&body)
            .ok_or_else(|| unexpected(&action, status, "no application in the body", &body))
    }

    /// Uploads the package at `path` to application `id` as the multipart part `file`,
    /// streaming it from disk; `progress` advances with the bytes sent.
    pub fn upload_package(
        &self,
        id: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<Application, ClientError> {
        let io_error = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        let file_len = file.metadata().map_err(io_error)?.len();
        let file_name = path
            .file_name()
            .map_or_else(|| "package.zip".into(), |name| name.to_string_lossy());
        let body = MultipartBody::new("file", &file_name, progress.wrap_read(file), file_len);
        let action = format!("uploading {} to application {id}", path.display());
        let url = format!(
            "{}/application/applications/{}/binaries",
            self.base_url,
            path_segment(id)
        );
        let request = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("application"))
            .header("Content-Type", &body.content_type)
            .header("Content-Length", body.content_length.to_string())
            .config()
            // Per-read would cut the image load short; the wait as a whole is bounded instead.
            .timeout_per_read(None)
            .timeout_recv_response(Some(UPLOAD_ANSWER_TIMEOUT))
            .build();
        let all_sent = Arc::new(AtomicBool::new(false));
        let sent = request.send(SendBody::from_owned_reader(AnnounceEnd {
            remaining: body.content_length,
            inner: body.reader(),
            progress: progress.clone(),
            all_sent: all_sent.clone(),
        }));
        let answered = self.answer_within(&action, &url, sent, UPLOAD_ANSWER_TIMEOUT);
        let (status, body) = answered.map_err(|error| {
            if all_sent.load(Ordering::SeqCst) {
                error.after_upload()
            } else {
                error
            }
        })?;
        let application = Application::from_json(&body).ok_or_else(|| {
            unexpected(
                &action,
                status,
                "the upload was not confirmed with an application body",
                &body,
            )
        })?;
        if application.id != id {
            return Err(unexpected(
                &action,
                status,
                &format!(
                    "the server confirmed application {} instead",
                    application.id
                ),
                &body,
            ));
        }
        Ok(application)
    }

    /// Subscribes `tenant` to application `id`; "already subscribed" (409) is success.
    pub fn subscribe(&self, tenant: &str, id: &str) -> Result<Subscription, ClientError> {
        let action = format!("subscribing tenant {tenant} to application {id}");
        let url = format!(
            "{}/tenant/tenants/{}/applications",
            self.base_url,
            path_segment(tenant)
        );
        let request = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("applicationReference"))
            .header("Content-Type", media("applicationReference"));
        let sent = request.send_json(json!({ "application": { "id": id } }));
        match self.answer(&action, &url, sent) {
            Ok(_) => Ok(Subscription::Created),
            // A 409 also says the subscription was not recorded (the application changed
            // meanwhile, a user name is taken): only the tenant's list tells which.
            Err(refused @ ClientError::Refused { status: 409, .. }) => {
                match self.subscribed_to(tenant, id) {
                    Ok(true) => Ok(Subscription::AlreadySubscribed),
                    Ok(false) | Err(_) => Err(refused),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Whether `tenant`'s subscriptions (its first 2,000) include application `id`.
    fn subscribed_to(&self, tenant: &str, id: &str) -> Result<bool, ClientError> {
        let action = format!("listing the applications tenant {tenant} is subscribed to");
        let url = format!(
            "{}/tenant/tenants/{}/applications?pageSize=2000",
            self.base_url,
            path_segment(tenant)
        );
        let request = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization)
            .header("Accept", media("applicationReferenceCollection"));
        let (_, body) = self.answer(&action, &url, request.call())?;
        let references = body.get("references").and_then(Value::as_array);
        Ok(references.is_some_and(|references| {
            references.iter().any(|reference| {
                let listed = &reference["application"]["id"];
                listed.as_str() == Some(id)
                    || listed.as_i64().map(|n| n.to_string()).as_deref() == Some(id)
            })
        }))
    }
}

/// Tells the user, once the last byte is sent, that the wait that follows is the platform's
/// work, and records that the whole body was handed over.
struct AnnounceEnd<R> {
    inner: R,
    /// Counted down, as ureq stops reading at `Content-Length` and never sees the end.
    remaining: u64,
    progress: ProgressBar,
    all_sent: Arc<AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for AnnounceEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        if self.remaining == 0 && !self.all_sent.swap(true, Ordering::SeqCst) {
            self.progress
                .set_message("sent; the platform is loading the image");
        }
        Ok(n)
    }
}

impl PlatformClient {
    /// The status and JSON body of a 2xx answer (`Null` when empty); any other outcome as an error.
    fn answer(
        &self,
        action: &str,
        url: &str,
        sent: Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value), ClientError> {
        self.answer_within(action, url, sent, self.stall)
    }

    /// [`Self::answer`] for a call whose headers may take `wait` (the upload's).
    fn answer_within(
        &self,
        action: &str,
        url: &str,
        sent: Result<Response<ureq::Body>, ureq::Error>,
        wait: Duration,
    ) -> Result<(u16, Value), ClientError> {
        let limits = Limits {
            stall: self.stall,
            wait,
        };
        let response = sent.map_err(|error| transport(action, url, error, limits))?;
        answer(action, &url[self.base_url.len()..], response, self.stall)
    }
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        let cases = [
            ("hello", "hello"),
            ("my app", "my%20app"),
            ("a/b", "a%2Fb"),
            ("ü", "%C3%BC"),
        ];
        for (input, expected) in cases {
            assert_eq!(path_segment(input), expected, "{input}");
        }
    }

    #[test]
    fn applications_need_an_id() {
        let cases = [
            (
                json!({"id": "7", "name": "a", "type": "MICROSERVICE"}),
                Some("7"),
            ),
            (json!({"id": 8, "name": "a"}), Some("8")),
            (json!({"id": "", "name": "a"}), None),
            (json!({"name": "a"}), None),
            (Value::Null, None),
        ];
        for (body, expected) in cases {
            let id = Application::from_json(&body).map(|application| application.id);
            assert_eq!(id.as_deref(), expected, "{body}");
        }
    }
}
