//! The typed, defaults-resolved manifest. Produced only by [`crate::validate`], so every value
//! here has passed the schema and the semantic checks.

use serde::Serialize;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    Resources,
    Subscription,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Isolation {
    MultiTenant,
    PerTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scale {
    Auto,
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
        /// `(name, value)` pairs, in order.
        headers: Vec<(String, String)>,
    },
}

/// One entry of `extensions`: a `type` plus free-form configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub config: Map<String, Value>,
}

impl Manifest {
    /// The API version as a number: `"2"` and `"v2"` give 2; anything not matching
    /// `^v?[1-9][0-9]*$` is treated as 2, as the contract says.
    pub fn api_version_number(&self) -> u32 {
        let digits = self.api_version.strip_prefix('v').unwrap_or(&self.api_version);
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
