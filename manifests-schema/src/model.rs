//! The typed, defaults-resolved manifest. Produced only by [`crate::validate`], so every value
//! here has passed the schema and the semantic checks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A validated microservice manifest with every default filled in.
///
/// Serializes back to the manifest's JSON shape (camelCase), defaults included and unknown
/// top-level keys preserved, which is what the platform shows as an application's `manifest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// As written (`"2"`, `"v2"`); see [`Manifest::api_version_number`].
    pub api_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_path: Option<String>,
    pub version: String,
    pub provider: Provider,
    pub billing_mode: BillingMode,
    pub isolation: Isolation,
    pub scale: Scale,
    pub replicas: u8,
    pub resources: Resources,
    pub requested_resources: Resources,
    pub settings: Vec<SettingOption>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_category: Option<String>,
    pub required_roles: Vec<String>,
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    pub extensions: Vec<Extension>,
    /// Top-level keys the contract does not define, preserved verbatim (in source order).
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provider {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    #[default]
    Resources,
    Subscription,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Isolation {
    #[default]
    MultiTenant,
    PerTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scale {
    Auto,
    #[default]
    None,
}

/// `resources` (limits) or `requestedResources` (requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
}

/// A CPU quantity: `"0.5"` or `"500m"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Cpu {
    /// As written in the manifest (or the default's spelling).
    pub text: String,
    pub millicores: u64,
}

/// A memory quantity: `"512M"`, `"1Gi"`, `"1048576"` (bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Memory {
    /// As written in the manifest (or the default's spelling).
    pub text: String,
    pub bytes: u64,
}

impl From<Cpu> for String {
    fn from(cpu: Cpu) -> String {
        cpu.text
    }
}

impl From<Memory> for String {
    fn from(memory: Memory) -> String {
        memory.text
    }
}

/// One entry of `settings`: becomes a tenant option.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingOption {
    pub key: String,
    pub default_value: String,
    pub editable: bool,
    pub overwrite_on_update: bool,
    pub inherit_from_owner: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<Value>,
}

/// A Kubernetes-style probe with the contract's defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(flatten)]
    pub handler: ProbeHandler,
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub success_threshold: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeHandler {
    Exec {
        command: Vec<String>,
    },
    TcpSocket {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        port: u16,
    },
    HttpGet {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        path: String,
        port: u16,
        /// `HTTP` or `HTTPS`.
        scheme: String,
        /// `(name, value)` pairs, in order; serialized as `[{"name": ..., "value": ...}]`.
        #[serde(serialize_with = "serialize_headers")]
        headers: Vec<(String, String)>,
    },
}

/// Writes headers in the manifest's shape, a list of `{name, value}` objects.
fn serialize_headers<S: serde::Serializer>(
    headers: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(headers.len()))?;
    for (name, value) in headers {
        seq.serialize_element(&serde_json::json!({ "name": name, "value": value }))?;
    }
    seq.end()
}

/// One entry of `extensions`: a `type` plus free-form configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub config: Map<String, Value>,
}

impl Manifest {
    /// `replicas` when not given.
    pub const DEFAULT_REPLICAS: u8 = 1;

    /// The API version as a number: `"2"` and `"v2"` give 2; anything not matching
    /// `^v?[1-9][0-9]*$` is treated as 2, as the contract says.
    pub fn api_version_number(&self) -> u32 {
        let digits = self
            .api_version
            .strip_prefix('v')
            .unwrap_or(&self.api_version);
        match digits.parse::<u32>() {
            Ok(n) if n >= 1 && !digits.starts_with('0') => n,
            _ => 2,
        }
    }

    /// `x.y.z-SNAPSHOT` versions are replaced on every upload.
    pub fn is_snapshot(&self) -> bool {
        self.version.ends_with("-SNAPSHOT")
    }

    /// The tenant-option category of `settings`: `settingsCategory`, else `contextPath`, else the
    /// application name.
    pub fn settings_category_or<'a>(&'a self, application_name: &'a str) -> &'a str {
        self.settings_category
            .as_deref()
            .or(self.context_path.as_deref())
            .unwrap_or(application_name)
    }

    /// The manifest as JSON, defaults included, unknown keys preserved.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("manifest serializes to JSON")
    }
}

impl Resources {
    /// Limits when the manifest gives none: 0.5 CPU, 512M.
    pub fn default_limits() -> Resources {
        Resources {
            cpu: Cpu {
                text: "0.5".to_owned(),
                millicores: 500,
            },
            memory: Memory {
                text: "512M".to_owned(),
                bytes: 512_000_000,
            },
        }
    }

    /// Requests when the manifest gives none: 250m, 256M (lowered to the limits if above them).
    pub fn default_requests() -> Resources {
        Resources {
            cpu: Cpu {
                text: "250m".to_owned(),
                millicores: 250,
            },
            memory: Memory {
                text: "256M".to_owned(),
                bytes: 256_000_000,
            },
        }
    }
}

impl Probe {
    pub const DEFAULT_INITIAL_DELAY_SECONDS: u32 = 0;
    pub const DEFAULT_PERIOD_SECONDS: u32 = 10;
    pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
    pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1;
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
    /// Port of `httpGet` and `tcpSocket` when not given.
    pub const DEFAULT_PORT: u16 = 80;
    /// Scheme of `httpGet` when not given.
    pub const DEFAULT_SCHEME: &str = "HTTP";
}

impl SettingOption {
    pub const DEFAULT_EDITABLE: bool = false;
    pub const DEFAULT_OVERWRITE_ON_UPDATE: bool = true;
    pub const DEFAULT_INHERIT_FROM_OWNER: bool = true;
}
