//! A small blocking HTTP client for talking to services under test, with deadline-based polling.

use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one request may take; services under test answer locally, so this only bounds a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between polls of a condition that is not met yet.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One HTTP answer, with the body read as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }
}

/// A client that reports every status as a `Reply` (4xx/5xx are answers, not errors).
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        Http {
            agent: config.into(),
        }
    }

    /// GET `url` with extra `headers`; `Err` only for transport failures (refused, reset, timeout).
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, ureq::Error> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok(Reply { status, body })
    }

    /// Polls GET `url` until it answers `status` or `deadline` passes; returns the last outcome as the error.
    pub fn wait_for_status(
        &self,
        url: &str,
        status: u16,
        deadline: Duration,
    ) -> Result<Reply, String> {
        let give_up = Instant::now() + deadline;
        loop {
            let last = match self.get(url, &[]) {
                Ok(reply) if reply.status == status => return Ok(reply),
                Ok(reply) => format!("last answer {} {}", reply.status, reply.body),
                Err(err) => format!("last error: {err}"),
            };
            if Instant::now() >= give_up {
                return Err(format!(
                    "GET {url} did not answer {status} within {deadline:?}; {last}"
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}
