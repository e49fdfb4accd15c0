//! Builds the typed, defaults-resolved [`Manifest`] from a manifest that passed every check.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::{
    BillingMode, Extension, Isolation, Manifest, Probe, ProbeHandler, Provider, Resources, Scale,
    SettingOption,
};

/// The manifest as written: every optional field optional, unknown keys collected in order.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    api_version: String,
    name: Option<String>,
    context_path: Option<String>,
    version: String,
    provider: RawProvider,
    billing_mode: Option<BillingMode>,
    isolation: Option<Isolation>,
    scale: Option<Scale>,
    replicas: Option<u8>,
    // Resolved by `resources`; named here so they do not land in `unknown`.
    #[serde(rename = "resources")]
    _resources: Option<serde::de::IgnoredAny>,
    #[serde(rename = "requestedResources")]
    _requested_resources: Option<serde::de::IgnoredAny>,
    settings: Option<Vec<RawSetting>>,
    settings_category: Option<String>,
    required_roles: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    liveness_probe: Option<RawProbe>,
    readiness_probe: Option<RawProbe>,
    extensions: Option<Vec<Extension>>,
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawProvider {
    name: String,
    domain: Option<String>,
    support: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSetting {
    key: String,
    default_value: String,
    editable: Option<bool>,
    overwrite_on_update: Option<bool>,
    inherit_from_owner: Option<bool>,
    value_schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProbe {
    exec: Option<RawExec>,
    tcp_socket: Option<RawTcpSocket>,
    http_get: Option<RawHttpGet>,
    initial_delay_seconds: Option<u32>,
    period_seconds: Option<u32>,
    success_threshold: Option<u32>,
    timeout_seconds: Option<u32>,
    failure_threshold: Option<u32>,
}

#[derive(Deserialize)]
struct RawExec {
    command: Vec<String>,
}

#[derive(Deserialize)]
struct RawTcpSocket {
    host: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct RawHttpGet {
    host: Option<String>,
    path: String,
    port: Option<u16>,
    scheme: Option<String>,
    headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize)]
struct RawHeader {
    name: String,
    value: String,
}

/// Builds the typed manifest. `manifest` has passed the schema, so a failure here means the
/// schema and these types disagree; it is returned as a message rather than a panic.
pub(crate) fn resolve(
    mut manifest: Value,
    (resources, requested_resources): (Resources, Resources),
) -> Result<Manifest, String> {
    for field in ["replicas", "livenessProbe", "readinessProbe"] {
        if let Some(value) = manifest.get_mut(field) {
            integral_floats_to_integers(value);
        }
    }
    let raw: RawManifest = serde_json::from_value(manifest).map_err(|e| e.to_string())?;
    let liveness_probe = raw.liveness_probe.map(probe).transpose()?;
    let readiness_probe = raw.readiness_probe.map(probe).transpose()?;
    Ok(Manifest {
        api_version: raw.api_version,
        name: raw.name,
        context_path: raw.context_path,
        version: raw.version,
        provider: Provider {
            name: raw.provider.name,
            domain: raw.provider.domain,
            support: raw.provider.support,
        },
        billing_mode: raw.billing_mode.unwrap_or_default(),
        isolation: raw.isolation.unwrap_or_default(),
        scale: raw.scale.unwrap_or_default(),
        replicas: raw.replicas.unwrap_or(Manifest::DEFAULT_REPLICAS),
        resources,
        requested_resources,
        settings: raw
            .settings
            .unwrap_or_default()
            .into_iter()
            .map(setting)
            .collect(),
        settings_category: raw.settings_category,
        required_roles: raw.required_roles.unwrap_or_default(),
        roles: raw.roles.unwrap_or_default(),
        liveness_probe,
        readiness_probe,
        extensions: raw.extensions.unwrap_or_default(),
        unknown: raw.unknown,
    })
}

fn setting(raw: RawSetting) -> SettingOption {
    SettingOption {
        key: raw.key,
        default_value: raw.default_value,
        editable: raw.editable.unwrap_or(SettingOption::DEFAULT_EDITABLE),
        overwrite_on_update: raw
            .overwrite_on_update
            .unwrap_or(SettingOption::DEFAULT_OVERWRITE_ON_UPDATE),
        inherit_from_owner: raw
            .inherit_from_owner
            .unwrap_or(SettingOption::DEFAULT_INHERIT_FROM_OWNER),
        value_schema: raw.value_schema,
    }
}

fn probe(raw: RawProbe) -> Result<Probe, String> {
    let handler = match (raw.http_get, raw.tcp_socket, raw.exec) {
        (Some(http), None, None) => ProbeHandler::HttpGet {
            host: http.host,
            path: http.path,
            port: http.port.unwrap_or(Probe::DEFAULT_PORT),
            scheme: http
                .scheme
                .unwrap_or_else(|| Probe::DEFAULT_SCHEME.to_owned()),
            headers: http
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
        },
        (None, Some(tcp), None) => ProbeHandler::TcpSocket {
            host: tcp.host,
            port: tcp.port.unwrap_or(Probe::DEFAULT_PORT),
        },
        (None, None, Some(exec)) => ProbeHandler::Exec {
            command: exec.command,
        },
        _ => return Err("a probe needs exactly one handler".to_owned()),
    };
    Ok(Probe {
        handler,
        initial_delay_seconds: raw
            .initial_delay_seconds
            .unwrap_or(Probe::DEFAULT_INITIAL_DELAY_SECONDS),
        period_seconds: raw.period_seconds.unwrap_or(Probe::DEFAULT_PERIOD_SECONDS),
        success_threshold: raw
            .success_threshold
            .unwrap_or(Probe::DEFAULT_SUCCESS_THRESHOLD),
        timeout_seconds: raw
            .timeout_seconds
            .unwrap_or(Probe::DEFAULT_TIMEOUT_SECONDS),
        failure_threshold: raw
            .failure_threshold
            .unwrap_or(Probe::DEFAULT_FAILURE_THRESHOLD),
    })
}

/// JSON Schema counts `2.0` as an integer but serde does not, so the integer fields' integral
/// floats become integers before deserializing.
fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && (0.0..=f64::from(u32::MAX)).contains(&float)
            {
                // Exact: an integral value within u32 range.
                *value = Value::from(float as u64);
            }
        }
        Value::Object(object) => object.values_mut().for_each(integral_floats_to_integers),
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}
