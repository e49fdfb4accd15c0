//! Typed settings read from the environment before the server binds anything.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

/// Default port: Cumulocity microservices must serve HTTP on port 80.
const DEFAULT_PORT: u16 = 80;
/// One worker is plenty for an example and keeps memory well under the 64M limit in `cumulocity.json`.
const DEFAULT_WORKERS: usize = 1;
const MAX_WORKERS: usize = 16;

/// Everything the service reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub workers: usize,
    /// `HELLO_FAIL_HEALTH=1` makes `/health` answer 503, so platform probe handling can be tested.
    pub fail_health: bool,
    /// `APPLICATION_NAME` as injected by the platform, if any.
    pub application_name: Option<String>,
}

/// A setting that cannot be used; the message says which variable to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the config from any variable lookup, so parsing is testable without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let port = match lookup("SERVER_PORT").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_PORT,
            Some(raw) => raw.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                ConfigError(format!("SERVER_PORT={raw:?} is not a port number: set it to 1..65535 or unset it for 80"))
            })?,
        };
        let workers = match lookup("HELLO_WORKERS").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_WORKERS,
            Some(raw) => raw
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|w| (1..=MAX_WORKERS).contains(w))
                .ok_or_else(|| {
                    ConfigError(format!("HELLO_WORKERS={raw:?} is invalid: set it to a number from 1 to {MAX_WORKERS}"))
                })?,
        };
        let fail_health = match lookup("HELLO_FAIL_HEALTH").as_deref().map(str::trim) {
            None | Some("") | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "HELLO_FAIL_HEALTH={other:?} is invalid: set it to 1/true or 0/false"
                )));
            }
        };
        Ok(Config {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            workers,
            fail_health,
            application_name: lookup("APPLICATION_NAME").filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    /// One case: the environment, then the expected port, workers, fail_health and application name.
    type ValidCase = (
        &'static [(&'static str, &'static str)],
        u16,
        usize,
        bool,
        Option<&'static str>,
    );

    #[test]
    fn valid_environments_parse() {
        let cases: &[ValidCase] = &[
            (&[], 80, 1, false, None),
            (
                &[("SERVER_PORT", "8080"), ("HELLO_WORKERS", "2")],
                8080,
                2,
                false,
                None,
            ),
            (
                &[("SERVER_PORT", " "), ("HELLO_FAIL_HEALTH", "1")],
                80,
                1,
                true,
                None,
            ),
            (
                &[
                    ("HELLO_FAIL_HEALTH", "false"),
                    ("APPLICATION_NAME", "hello"),
                ],
                80,
                1,
                false,
                Some("hello"),
            ),
        ];
        for (vars, port, workers, fail, name) in cases {
            let config = parse(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
            assert_eq!(config.listen.port(), *port, "{vars:?}");
            assert_eq!(config.workers, *workers, "{vars:?}");
            assert_eq!(config.fail_health, *fail, "{vars:?}");
            assert_eq!(config.application_name.as_deref(), *name, "{vars:?}");
        }
    }

    #[test]
    fn invalid_environments_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("SERVER_PORT", "http"),
            ("SERVER_PORT", "0"),
            ("SERVER_PORT", "70000"),
            ("HELLO_WORKERS", "0"),
            ("HELLO_WORKERS", "many"),
            ("HELLO_FAIL_HEALTH", "yes please"),
        ];
        for (name, value) in cases {
            let err =
                parse(&[(name, value)]).expect_err(&format!("{name}={value} must be rejected"));
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }
}
