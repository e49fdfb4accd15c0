//! HTTP routes of the example service and the app builder shared by `main` and the tests.

use std::collections::BTreeMap;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::probes::{self, HealthSwitch};

/// Variables the platform injects besides the `C8Y_*` family (see the contract, section 4.1).
const PLATFORM_VARS: &[&str] = &[
    "APPLICATION_NAME",
    "APPLICATION_KEY",
    "SERVER_PORT",
    "MEMORY_LIMIT",
    "MICROSERVICE_SUBSCRIPTION_ENABLED",
    "TZ",
    "LOG4J_FORMAT_MSG_NO_LOOKUPS",
];

/// The platform-injected environment, captured once at startup.
///
/// It deliberately includes secrets such as `C8Y_PASSWORD` and `C8Y_BOOTSTRAP_PASSWORD`: this service exists so
/// tests can read back exactly what the platform injected. Never deploy it anywhere real.
#[derive(Debug, Clone, Default)]
pub struct InjectedEnv(pub BTreeMap<String, String>);

impl InjectedEnv {
    /// Keeps only the variables a Cumulocity platform injects.
    pub fn select(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        InjectedEnv(
            vars.into_iter()
                .filter(|(name, _)| is_platform_var(name))
                .collect(),
        )
    }
}

fn is_platform_var(name: &str) -> bool {
    name.starts_with("C8Y_") || PLATFORM_VARS.contains(&name)
}

/// Registers every route; `main` and the tests both call this so tests exercise the real wiring.
/// `switch` is shared by every worker (created once in `main`).
pub fn configure(
    config: Config,
    env: InjectedEnv,
    switch: web::Data<HealthSwitch>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(config))
            .app_data(web::Data::new(env))
            .app_data(switch)
            .route("/health", web::get().to(health))
            .route("/health/fail", web::post().to(probes::fail))
            .route("/health/pass", web::post().to(probes::pass))
            .route("/connect", web::get().to(probes::connect))
            .route("/alloc", web::post().to(probes::alloc))
            .route("/burn", web::get().to(crate::burn::burn))
            .route(
                "/platform/subscriptions",
                web::get().to(crate::platform_client::subscriptions),
            )
            .route("/hello", web::get().to(hello))
            .route("/env", web::get().to(injected_env))
            .route("/headers", web::get().to(echo_headers))
            .route("/sleep", web::get().to(crate::streams::sleep))
            .route("/upload", web::post().to(crate::streams::upload))
            .route("/download", web::get().to(crate::streams::download))
            .route("/sse", web::get().to(crate::streams::sse))
            .route("/ws", web::get().to(crate::streams::websocket))
            .route("/whoami", web::get().to(crate::streams::whoami));
    }
}

async fn health(switch: web::Data<HealthSwitch>) -> HttpResponse {
    if switch.failing() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "DOWN"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "UP"}))
    }
}

async fn hello(req: HttpRequest, config: web::Data<Config>) -> HttpResponse {
    let caller = basic_caller(req.headers());
    let application = config.application_name.as_deref();
    let message = match (&caller, application) {
        (Some(c), Some(app)) => format!("Hello {} of tenant {} from {app}!", c.user, c.tenant),
        (Some(c), None) => format!("Hello {} of tenant {}!", c.user, c.tenant),
        (None, Some(app)) => format!("Hello from {app}!"),
        (None, None) => "Hello!".to_string(),
    };
    HttpResponse::Ok().json(json!({
        "message": message,
        "application": application,
        "tenant": caller.as_ref().map(|c| c.tenant.as_str()),
        "user": caller.as_ref().map(|c| c.user.as_str()),
    }))
}

async fn injected_env(env: web::Data<InjectedEnv>) -> HttpResponse {
    HttpResponse::Ok().json(&env.0)
}

async fn echo_headers(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers_as_json(req.headers()),
    }))
}

/// Header names map to their value; a repeated header keeps every value, joined by ", " as HTTP allows.
fn headers_as_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    Value::Object(out)
}

/// The caller named by a Cumulocity-style Basic header: `tenant/user:password`.
#[derive(Debug, PartialEq, Eq)]
struct Caller {
    tenant: String,
    user: String,
}

fn basic_caller(headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (login, _password) = decoded.split_once(':')?;
    let (tenant, user) = login.split_once('/')?;
    (!tenant.is_empty() && !user.is_empty()).then(|| Caller {
        tenant: tenant.to_string(),
        user: user.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn basic_caller_reads_tenant_and_user() {
        let cases: Vec<(String, Option<(&str, &str)>)> = vec![
            (basic("t100/alice:secret"), Some(("t100", "alice"))),
            (basic("t100/alice:pa:ss"), Some(("t100", "alice"))),
            (basic("alice:secret"), None),
            (basic("/alice:secret"), None),
            (basic("t100/:secret"), None),
            (format!("Bearer {}", basic("t1/u:p")), None),
            ("Basic !!!not-base64".to_string(), None),
            ("Basic".to_string(), None),
        ];
        for (header_value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&header_value).unwrap(),
            );
            let expected = expected.map(|(t, u)| Caller {
                tenant: t.into(),
                user: u.into(),
            });
            assert_eq!(basic_caller(&headers), expected, "{header_value}");
        }
    }

    #[test]
    fn only_platform_variables_are_exposed() {
        let vars = [
            ("C8Y_TENANT", true),
            ("C8Y_BOOTSTRAP_PASSWORD", true),
            ("APPLICATION_NAME", true),
            ("TZ", true),
            ("PATH", false),
            ("HOME", false),
            ("C8YTENANT", false),
            ("HELLO_FAIL_HEALTH", false),
        ];
        let env = InjectedEnv::select(vars.iter().map(|(n, _)| (n.to_string(), "v".to_string())));
        for (name, kept) in vars {
            assert_eq!(env.0.contains_key(name), kept, "{name}");
        }
    }
}
