//! The optional TOML config file: the same settings as the flags, in snake_case.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// The config file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) https: Option<String>,
    pub(super) http: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) upload_limit: Option<toml::Value>,
    pub(super) image_size_limit: Option<toml::Value>,
    pub(super) tenant_storage_quota: Option<toml::Value>,
    pub(super) docker_socket: Option<PathBuf>,
    pub(super) runtime: Option<String>,
    pub(super) registry: Option<String>,
    pub(super) registry_user: Option<String>,
    pub(super) swarm_relay_image: Option<String>,
    pub(super) swarm_platform_address: Option<String>,
    pub(super) swarm_node_engines: Option<Vec<String>>,
    pub(super) admin_user: Option<String>,
    pub(super) token_lifetime: Option<u64>,
    pub(super) log: Option<String>,
    pub(super) access_log: Option<String>,
    pub(super) internal_api: Option<String>,
    pub(super) reconcile_interval: Option<u64>,
    pub(super) deploy_concurrency: Option<usize>,
    pub(super) rollout_timeout: Option<u64>,
    pub(super) pids_limit: Option<i64>,
    pub(super) autoscale_period: Option<u64>,
    pub(super) autoscale_target: Option<u32>,
    pub(super) autoscale_scale_down_window: Option<u64>,
    pub(super) autoscale_max_replicas: Option<u32>,
    pub(super) drain_period: Option<u64>,
    pub(super) container_labels: Option<Vec<String>>,
    pub(super) proxy_timeout: Option<u64>,
    pub(super) proxy_read_timeout: Option<u64>,
    pub(super) proxy_connect_timeout: Option<u64>,
    pub(super) proxy_eject_period: Option<u64>,
    pub(super) idle_timeout: Option<u64>,
    pub(super) body_timeout: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_client_connections: Option<usize>,
    pub(super) max_container_connections: Option<usize>,
    pub(super) max_log_streams: Option<usize>,
    pub(super) max_container_memory: Option<toml::Value>,
    pub(super) max_container_cpu: Option<toml::Value>,
    pub(super) max_replicas: Option<u32>,
    pub(super) tenant_max_memory: Option<toml::Value>,
    pub(super) tenant_max_cpu: Option<toml::Value>,
    pub(super) tenant_max_containers: Option<u64>,
    pub(super) refuse_root_images: Option<bool>,
    pub(super) host_firewall: Option<bool>,
    pub(super) network_holders: Option<bool>,
    pub(super) network_pool: Option<String>,
    pub(super) network_subnet_prefix: Option<u8>,
    pub(super) login_user_failures: Option<u32>,
    pub(super) login_source_failures: Option<u32>,
    pub(super) login_failure_window: Option<u64>,
    pub(super) login_lockout: Option<u64>,
    pub(super) password_hash_concurrency: Option<usize>,
    pub(super) password_hash_queue: Option<usize>,
    pub(super) trusted_proxies: Option<Vec<String>>,
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}
