//! Parsing of single setting values (addresses, sizes, CPUs) into typed values, with errors that
//! name the setting.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;

pub(super) fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A number of seconds that must not be 0.
pub(super) fn positive_secs(name: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        Err(invalid(name, "0", "must be at least 1 second"))
    } else {
        Ok(Duration::from_secs(value))
    }
}

pub(super) fn parse_addr(name: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            name,
            text,
            "expected IP:PORT, e.g. 127.0.0.1:8443 (port 0 picks a free port)",
        )
    })
}

/// A size setting from a flag/variable (text) or the file (bytes or text); None when unset.
pub(super) fn size_setting(
    name: &'static str,
    arg: Option<String>,
    file: Option<toml::Value>,
) -> Result<Option<u64>, ConfigError> {
    let text = match (arg, file) {
        (Some(text), _) | (None, Some(toml::Value::String(text))) => text,
        (None, Some(toml::Value::Integer(n))) => n.to_string(),
        (None, Some(other)) => {
            return Err(invalid(
                name,
                &format!("{other:?}"),
                "must be bytes or a string like \"8GiB\"",
            ));
        }
        (None, None) => return Ok(None),
    };
    parse_size_of(name, &text).map(Some)
}

/// A CPU setting (`2`, `1.5`, `500m`, as in manifests) from a flag/variable or the file.
pub(super) fn cpu_setting(
    name: &'static str,
    arg: Option<String>,
    file: Option<toml::Value>,
) -> Result<Option<u64>, ConfigError> {
    let text = match (arg, file) {
        (Some(text), _) | (None, Some(toml::Value::String(text))) => text,
        (None, Some(toml::Value::Integer(n))) => n.to_string(),
        (None, Some(toml::Value::Float(f))) => f.to_string(),
        (None, Some(other)) => {
            return Err(invalid(
                name,
                &format!("{other:?}"),
                "must be CPUs such as 2, 1.5 or \"500m\"",
            ));
        }
        (None, None) => return Ok(None),
    };
    match manifests_schema::parse_cpu(text.trim()) {
        Ok(m) if m > 0 => Ok(Some(m)),
        _ => Err(invalid(
            name,
            &text,
            "must be a positive number of CPUs such as 2, 1.5 or 500m",
        )),
    }
}

/// Parses `1048576`, `512KiB`, `500MiB`, `2GiB` (also KB/MB/GB as binary units).
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    parse_size_of("upload_limit", text)
}

/// [`parse_size`] for the setting `name` (named in the error).
pub(super) fn parse_size_of(name: &'static str, text: &str) -> Result<u64, ConfigError> {
    // The rule `berth-pack --image-size-limit` parses by too, so one value means the same to both.
    package_rules::size::parse_size(text).map_err(|error| invalid(name, text, &error.to_string()))
}
