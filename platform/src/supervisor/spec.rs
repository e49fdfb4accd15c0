//! The desired state: from the database's subscribed microservices to one [`Deployment`] per
//! shared (MULTI_TENANT) or per-tenant (PER_TENANT) deployment, with the container environment
//! of the contract's §4.1, limits, probes and a revision hash that changes whenever any of it
//! does.

use std::collections::BTreeMap;

use manifests_schema::{Isolation, Probe, Scale};
use sha2::{Digest, Sha256};

use crate::routing::DeploymentKey;
use crate::store::desired::DesiredApplication;

/// Runtime options of the owner tenant (category `microservice.runtime`) and their env names.
pub const RUNTIME_CATEGORY: &str = "microservice.runtime";
const PROXY_OPTIONS: &[(&str, &str, &str)] = &[
    ("proxy.http.host", "PROXY_HTTP_HOST", "http"),
    ("proxy.http.port", "PROXY_HTTP_PORT", "http"),
    (
        "proxy.http.non.proxy.hosts",
        "PROXY_HTTP_NON_PROXY_HOSTS",
        "http",
    ),
    ("proxy.https.host", "PROXY_HTTPS_HOST", "https"),
    ("proxy.https.port", "PROXY_HTTPS_PORT", "https"),
    ("proxy.socks.host", "PROXY_SOCKS_HOST", "socks"),
    ("proxy.socks.port", "PROXY_SOCKS_PORT", "socks"),
];

/// Version of the hardening every container gets whatever its manifest says (capabilities,
/// no-new-privileges, IPC): part of the revision, so a change replaces older containers.
const HARDENING: &str = "floor-1";

/// One deployment the supervisor must converge to.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub key: DeploymentKey,
    pub application_name: String,
    /// The owner tenant (where its events and alarms are recorded).
    pub owner: String,
    /// `scale: AUTO`: `replicas` is the minimum and the CPU autoscaler decides the count.
    pub autoscale: bool,
    pub version: String,
    /// The version a rollout in progress returns to (None before a version was ever ready
    /// everywhere). Which old instances keep serving is by revision, not by this
    /// (`plan::kept`): it says whether a version rollback bounds them.
    pub stable_version: Option<String>,
    /// The image id (`sha256:…`) Berth checked at upload. Containers run from the id, never
    /// from the tag: anyone with access to the engine can move a tag.
    pub image: String,
    pub replicas: u32,
    pub env: Vec<String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    /// Hash of everything a container is created from; containers of another revision are
    /// replaced (rolling: new ones first).
    pub revision: String,
}

impl Deployment {
    /// How its application's series are labelled.
    pub fn series_app(&self) -> crate::series::apps::AppLabel {
        crate::series::apps::AppLabel::new(&self.owner, &self.application_name)
    }
}

/// Clear-text credentials and options resolved for one application (the caller opens the
/// sealed passwords and reads the owner's options).
#[derive(Debug, Clone)]
pub struct Inputs {
    pub app: DesiredApplication,
    pub bootstrap_password: String,
    /// (tenant, service user, password) per subscription.
    pub service_users: Vec<(String, String, String)>,
    /// The owner's `microservice.runtime` options.
    pub runtime_options: BTreeMap<String, String>,
}

/// Platform-wide facts the environment needs.
#[derive(Debug, Clone)]
pub struct Platform {
    pub base_url: String,
    pub default_timezone: Option<String>,
}

/// Why an application's stored state cannot be turned into deployments.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The active version's manifest no longer validates (e.g. the rules changed since upload).
    #[error("stored manifest of version {version} is invalid: {message}")]
    InvalidManifest { version: String, message: String },
}

/// The keys of the deployments an application of `isolation` has with `subscribed` tenants
/// (none without a subscriber: an application nobody subscribed runs nowhere).
pub fn deployment_keys(
    application_id: i64,
    isolation: Isolation,
    subscribed: &[String],
) -> Vec<DeploymentKey> {
    if subscribed.is_empty() {
        return Vec::new();
    }
    match isolation {
        Isolation::PerTenant => subscribed
            .iter()
            .map(|t| DeploymentKey {
                application_id,
                tenant: Some(t.clone()),
            })
            .collect(),
        Isolation::MultiTenant => vec![DeploymentKey {
            application_id,
            tenant: None,
        }],
    }
}

/// The deployments an application that cannot be deployed now (its stored manifest no longer
/// validates, or a sealed password does not open) may have running with `subscribed` tenants,
/// whichever its isolation was: the pass holds them as they are (nothing made, nothing
/// removed, routes kept) until it can be deployed again. An unsubscribed tenant's or a
/// deleted application's are not among them, and go as usual.
pub fn held_keys(application_id: i64, subscribed: &[String]) -> Vec<DeploymentKey> {
    let mut keys = deployment_keys(application_id, Isolation::MultiTenant, subscribed);
    keys.extend(deployment_keys(
        application_id,
        Isolation::PerTenant,
        subscribed,
    ));
    keys
}

/// The deployments of one application; Err says why its manifest cannot be used.
pub fn deployments(inputs: &Inputs, platform: &Platform) -> Result<Vec<Deployment>, SpecError> {
    let app = &inputs.app;
    let manifest = manifests_schema::validate(&app.manifest)
        .map_err(|r| SpecError::InvalidManifest {
            version: app.active_version.clone(),
            message: r
                .diagnostics
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default(),
        })?
        .manifest;
    let per_tenant = manifest.isolation == Isolation::PerTenant;
    let isolation = if per_tenant {
        "PER_TENANT"
    } else {
        "MULTI_TENANT"
    };
    let limits = &manifest.resources;
    let mut base = vec![
        format!("APPLICATION_NAME={}", app.name),
        format!("APPLICATION_KEY={}", app.key),
        "SERVER_PORT=80".to_owned(),
        "MICROSERVICE_SUBSCRIPTION_ENABLED=true".to_owned(),
        format!("C8Y_BASEURL={}", platform.base_url),
        format!("C8Y_MICROSERVICE_ISOLATION={isolation}"),
        "C8Y_BOOTSTRAP_REGISTER=false".to_owned(),
        format!("C8Y_BOOTSTRAP_TENANT={}", app.owner),
        format!("C8Y_BOOTSTRAP_USER={}", app.bootstrap_user),
        format!("C8Y_BOOTSTRAP_PASSWORD={}", inputs.bootstrap_password),
        format!("MEMORY_LIMIT={}", memory_limit_text(limits.memory.bytes)),
        "LOG4J_FORMAT_MSG_NO_LOOKUPS=true".to_owned(),
    ];
    let timezone = inputs
        .runtime_options
        .get("timezone")
        .cloned()
        .or_else(|| platform.default_timezone.clone());
    if let Some(tz) = timezone {
        base.push(format!("TZ={tz}"));
    }
    for (option, variable, protocol) in PROXY_OPTIONS {
        // Per protocol, nothing is passed unless that protocol's host is set.
        let host_set = inputs
            .runtime_options
            .contains_key(&format!("proxy.{protocol}.host"));
        if let (true, Some(value)) = (host_set, inputs.runtime_options.get(*option)) {
            base.push(format!("{variable}={value}"));
        }
    }
    let template = |key: DeploymentKey, env: Vec<String>| {
        let memory_bytes = i64::try_from(limits.memory.bytes).unwrap_or(i64::MAX);
        let nano_cpus =
            i64::try_from(limits.cpu.millicores.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let mut hasher = Sha256::new();
        for part in [&app.image_tag, &app.image_id, &app.active_version] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for var in &env {
            hasher.update(var.as_bytes());
            hasher.update([0]);
        }
        // HARDENING names the container hardening (runtime::docker::containers): containers made
        // under an older one are replaced.
        hasher.update(
            format!(
                "{memory_bytes}/{nano_cpus}/{HARDENING}/{:?}/{:?}",
                manifest.liveness_probe, manifest.readiness_probe
            )
            .as_bytes(),
        );
        Deployment {
            key,
            application_name: app.name.clone(),
            owner: app.owner.clone(),
            autoscale: manifest.scale == Scale::Auto,
            version: app.active_version.clone(),
            stable_version: app.stable_version.clone(),
            image: app.image_id.clone(),
            replicas: u32::from(manifest.replicas.max(1)),
            env,
            memory_bytes,
            nano_cpus,
            liveness: manifest.liveness_probe.clone(),
            readiness: manifest.readiness_probe.clone(),
            revision: hex::encode(&hasher.finalize()[..8]),
        }
    };
    if per_tenant {
        Ok(inputs
            .service_users
            .iter()
            .map(|(tenant, user, password)| {
                let mut env = base.clone();
                env.push(format!("C8Y_TENANT={tenant}"));
                env.push(format!("C8Y_USER={user}"));
                env.push(format!("C8Y_PASSWORD={password}"));
                template(
                    DeploymentKey {
                        application_id: app.application_id,
                        tenant: Some(tenant.clone()),
                    },
                    env,
                )
            })
            .collect())
    } else {
        Ok(vec![template(
            DeploymentKey {
                application_id: app.application_id,
                tenant: None,
            },
            base,
        )])
    }
}

/// `MEMORY_LIMIT` as the JVM and shell scripts read it (binary units: 1K = 1024 bytes), exact to
/// the byte of the enforced limit: the manifest's `512M` (SI, 512 000 000 bytes, what Docker
/// enforces) becomes `500000K`, its `512Mi` becomes `512M`.
pub fn memory_limit_text(bytes: u64) -> String {
    for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Reads a `MEMORY_LIMIT` text back into bytes (binary units): the tests' inverse of the above.
#[cfg(test)]
fn memory_limit_bytes(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?.min(text.len()));
    let size = match unit {
        "G" => 1u64 << 30,
        "M" => 1 << 20,
        "K" => 1 << 10,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(isolation: &str) -> Inputs {
        let manifest = format!(
            r#"{{"apiVersion":"2","name":"svc","version":"1.0.0","provider":{{"name":"x"}},"isolation":"{isolation}","replicas":2,"resources":{{"cpu":"250m","memory":"128M"}}}}"#
        );
        Inputs {
            app: DesiredApplication {
                application_id: 9,
                name: "svc".into(),
                key: "svc-key".into(),
                owner: "t0".into(),
                active_version: "1.0.0".into(),
                stable_version: None,
                stable_manifest: None,
                image_tag: "berth/0a1b/t0-9:1.0.0".into(),
                image_id: "sha256:00".into(),
                manifest,
                bootstrap_user: "servicebootstrap_svc".into(),
                bootstrap_password_sealed: String::new(),
                subscriptions: Vec::new(),
            },
            bootstrap_password: "bpw".into(),
            service_users: vec![
                ("t1".into(), "service_svc".into(), "p1".into()),
                ("t2".into(), "service_svc".into(), "p2".into()),
            ],
            runtime_options: BTreeMap::from([
                ("timezone".to_owned(), "Europe/Berlin".to_owned()),
                ("proxy.http.port".to_owned(), "3128".to_owned()),
                ("proxy.https.host".to_owned(), "proxy".to_owned()),
                ("proxy.https.port".to_owned(), "3129".to_owned()),
            ]),
        }
    }

    #[test]
    fn memory_limit_text_is_exact_to_the_byte() {
        let cases = [
            (512_000_000, "500000K"),
            (512 << 20, "512M"),
            (1 << 30, "1G"),
            (128_000_000, "125000K"),
            (1_000_001, "1000001"),
        ];
        for (bytes, text) in cases {
            assert_eq!(memory_limit_text(bytes), text);
            assert_eq!(
                memory_limit_bytes(text).unwrap_or_else(|| text.parse().unwrap()),
                bytes
            );
        }
    }

    fn platform() -> Platform {
        Platform {
            base_url: "http://berth-platform:8111".into(),
            default_timezone: Some("UTC".into()),
        }
    }

    #[test]
    fn isolation_decides_the_deployments_and_their_credentials() {
        let cases = [
            ("MULTI_TENANT", vec![None]),
            ("PER_TENANT", vec![Some("t1"), Some("t2")]),
        ];
        for (isolation, tenants) in cases {
            let deps = deployments(&inputs(isolation), &platform()).unwrap();
            let keys: Vec<_> = deps.iter().map(|d| d.key.tenant.as_deref()).collect();
            assert_eq!(keys, tenants, "{isolation}");
            // What an upload has made ahead is what the pass deploys.
            let parsed: Isolation = serde_json::from_value(isolation.into()).unwrap();
            let subscribed = ["t1".to_owned(), "t2".to_owned()];
            let ahead = deployment_keys(9, parsed, &subscribed);
            let deployed: Vec<_> = deps.iter().map(|d| d.key.clone()).collect();
            assert_eq!(ahead, deployed, "{isolation}");
            assert!(deployment_keys(9, parsed, &[]).is_empty());
            for d in &deps {
                // Containers run the image Berth checked, whatever the tag points at now.
                assert_eq!(d.image, "sha256:00");
                assert_eq!(d.replicas, 2);
                assert_eq!(d.memory_bytes, 128_000_000);
                assert_eq!(d.nano_cpus, 250_000_000);
                let has = |v: &str| d.env.iter().any(|e| e == v);
                assert!(has(&format!("C8Y_MICROSERVICE_ISOLATION={isolation}")));
                assert!(has("C8Y_BOOTSTRAP_PASSWORD=bpw") && has("TZ=Europe/Berlin"));
                assert!(has("PROXY_HTTPS_HOST=proxy") && has("PROXY_HTTPS_PORT=3129"));
                // The http proxy port alone, without its host, is not passed.
                assert!(!d.env.iter().any(|e| e.starts_with("PROXY_HTTP_PORT")));
                match &d.key.tenant {
                    Some(t) => assert!(has(&format!("C8Y_TENANT={t}"))),
                    None => assert!(!d.env.iter().any(|e| e.starts_with("C8Y_TENANT"))),
                }
            }
            if deps.len() == 2 {
                assert_ne!(deps[0].revision, deps[1].revision);
            }
        }
    }
}
