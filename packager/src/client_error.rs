//! What a call to the platform came to when it was not a confirmed success: [`ClientError`], and
//! the reading of an answer into a status and JSON body or into that error. Answers are read as
//! bytes up to a limit, so once a status came it is the one reported, whatever the body holds.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use ureq::Timeout;
use ureq::http::Response;

use crate::tls_trust::TrustError;
use crate::url_text::without_userinfo;

/// How much of an answer is read: far more than any real one; the rest is left unread.
const BODY_LIMIT: u64 = 16 << 20;
/// How much of a non-JSON error body is shown.
const BODY_EXCERPT: usize = 300;

/// Why a call to the platform did not end in a confirmed success.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{action}: cannot reach {url}: {message}")]
    Transport {
        action: String,
        url: String,
        message: String,
    },
    /// Connected, then no progress within the stall timeout.
    #[error("{action}: {url} stopped {phase} for {seconds} s")]
    Stalled {
        action: String,
        url: String,
        phase: &'static str,
        seconds: u64,
    },
    /// The whole upload was handed over, then the answer failed: the platform may well have
    /// taken the package, so "cannot reach" would mislead a retry.
    #[error(
        "{action}: the whole package was sent, but no complete answer came back ({message}); \
         the upload may have succeeded: look at the application before uploading again"
    )]
    AfterUpload {
        action: String,
        /// The status, when headers came before the failure.
        status: Option<u16>,
        message: String,
    },
    /// A 2xx whose body broke off: the call may have done its work.
    #[error("{action}: the platform answered HTTP {status}, but its body broke off: {cause}")]
    BrokenBody {
        action: String,
        status: u16,
        cause: String,
    },
    /// The server refused (4xx) or failed (5xx) and said why.
    #[error("{action}: the platform answered HTTP {status}: {message}")]
    Refused {
        action: String,
        status: u16,
        message: String,
    },
    /// A 3xx: never followed, as ureq would replay a POST as a GET without the login and the
    /// user would see a misleading 401.
    #[error(
        "{action}: the platform answered HTTP {status} (a redirect) to {location}; berth-pack does not follow redirects: {advice}"
    )]
    Redirected {
        action: String,
        status: u16,
        location: String,
        advice: String,
    },
    /// A 2xx answer without what it must contain.
    #[error("{action}: unexpected answer (HTTP {status}): {reason}")]
    Unexpected {
        action: String,
        status: u16,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl ClientError {
    /// 1 when the platform rejected the request (4xx), 2 for everything environmental
    /// (connection, TLS, IO, server failures and malformed answers) and for the 4xx that say
    /// "not now" (408 timeout, 429 too many uploads at once): a pipeline may try those again,
    /// not a rejected package.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused {
                status: 408 | 429, ..
            } => 2,
            ClientError::Refused { status, .. } if (400..500).contains(status) => 1,
            _ => 2,
        }
    }

    /// A connection failure or stall once the whole upload was sent, reworded to say so.
    pub(crate) fn after_upload(self) -> ClientError {
        match self {
            ClientError::Transport {
                action, message, ..
            } => ClientError::AfterUpload {
                action,
                status: None,
                message,
            },
            ClientError::BrokenBody {
                action,
                status,
                cause,
            } => ClientError::AfterUpload {
                action,
                status: Some(status),
                message: format!("HTTP {status} came, but its body broke off: {cause}"),
            },
            ClientError::Stalled {
                action,
                phase,
                seconds,
                ..
            } => ClientError::AfterUpload {
                action,
                status: None,
                message: format!("the platform stopped {phase} for {seconds} s"),
            },
            error => error,
        }
    }

    /// The HTTP status the platform answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. }
            | ClientError::Unexpected { status, .. }
            | ClientError::Redirected { status, .. }
            | ClientError::BrokenBody { status, .. } => Some(*status),
            ClientError::AfterUpload { status, .. } => *status,
            _ => None,
        }
    }
}

/// The status and JSON body of a 2xx answer (`Null` when empty) once its headers arrived, any
/// other outcome as an error; `path` is the call's URL after the platform's base URL.
pub(crate) fn answer(
    action: &str,
    path: &str,
    mut response: Response<ureq::Body>,
    stall: Duration,
) -> Result<(u16, Value), ClientError> {
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        let location = response
            .headers()
            .get("location")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        return Err(redirected(action, status, location, path));
    }
    // Bytes, not a string: an error page in Latin-1, one cut short or one over the limit must
    // still be reported with the status that came, not as a connection failure.
    let mut bytes = Vec::new();
    let broken = response
        .body_mut()
        .as_reader()
        .take(BODY_LIMIT)
        .read_to_end(&mut bytes)
        .err()
        .map(|error| describe(&ureq::Error::from(error), stall));
    let text = String::from_utf8_lossy(&bytes);
    if !(200..300).contains(&status) {
        let mut message = error_message(&text);
        if let Some(cause) = broken {
            message.push_str(&format!(" (the rest of the body did not arrive: {cause})"));
        }
        return Err(ClientError::Refused {
            action: action.to_owned(),
            status,
            message,
        });
    }
    if let Some(cause) = broken {
        return Err(ClientError::BrokenBody {
            action: action.to_owned(),
            status,
            cause,
        });
    }
    if text.trim().is_empty() {
        return Ok((status, Value::Null));
    }
    let body: Value = serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
        action: action.to_owned(),
        status,
        reason: format!("the body is not JSON: {}", excerpt(&text)),
    })?;
    Ok((status, body))
}

/// A body read failure in words; a timeout (the body's total budget) names its length.
fn describe(error: &ureq::Error, stall: Duration) -> String {
    match error {
        ureq::Error::Timeout(_) => format!("still incomplete after {} s", stall.as_secs()),
        error => error.to_string(),
    }
}

/// The time limits of one call that a timeout message names.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) stall: Duration,
    /// For the response headers.
    pub(crate) wait: Duration,
}

/// A call that got no answer in words: a stall names its phase and limit, a certificate
/// failure the flag that fixes it.
pub(crate) fn transport(
    action: &str,
    url: &str,
    error: ureq::Error,
    limits: Limits,
) -> ClientError {
    if let ureq::Error::Timeout(timeout) = &error {
        let stalled = match timeout {
            Timeout::Resolve | Timeout::Connect => None,
            Timeout::PerWrite | Timeout::SendRequest | Timeout::SendBody | Timeout::Await100 => {
                Some(("reading what was sent", limits.stall))
            }
            Timeout::RecvResponse => Some(("answering", limits.wait)),
            _ => Some(("answering", limits.stall)),
        };
        if let Some((phase, limit)) = stalled {
            return ClientError::Stalled {
                action: action.to_owned(),
                url: url.to_owned(),
                phase,
                seconds: limit.as_secs(),
            };
        }
    }
    let mut message = error.to_string();
    if message.contains("certificate") || message.contains("Certificate") {
        message.push_str(
            " (pass --ca-cert FILE to trust the platform's certificate, e.g. <data-dir>/tls/cert.pem)",
        );
    }
    ClientError::Transport {
        action: action.to_owned(),
        url: url.to_owned(),
        message,
    }
}

/// Names the redirect's target and, when it is the same call under another base, that base.
fn redirected(action: &str, status: u16, location: Option<String>, path: &str) -> ClientError {
    let Some(location) = location else {
        return ClientError::Redirected {
            action: action.to_owned(),
            status,
            location: "(no Location header)".to_owned(),
            advice: "check --url".to_owned(),
        };
    };
    let location = without_userinfo(location.trim()).into_owned();
    let base = location
        .strip_suffix(path)
        .filter(|base| base.contains("://"));
    let advice = match base {
        Some(base) => format!("use {base} as --url"),
        None => "use the platform's own address as --url".to_owned(),
    };
    ClientError::Redirected {
        action: action.to_owned(),
        status,
        location,
        advice,
    }
}

/// A 2xx answer without `reason`, with an excerpt of the body that came.
pub(crate) fn unexpected(action: &str, status: u16, reason: &str, body: &Value) -> ClientError {
    ClientError::Unexpected {
        action: action.to_owned(),
        status,
        reason: format!("{reason}; body: {}", excerpt(&body.to_string())),
    }
}

/// `error: message` from a Cumulocity error body, else an excerpt of whatever came back.
fn error_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let field = |key: &str| {
        parsed
            .as_ref()
            .and_then(|body| body.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (field("error"), field("message")) {
        (Some(error), Some(message)) => format!("{error}: {message}"),
        (None, Some(message)) => message,
        (Some(error), None) => error,
        (None, None) if text.trim().is_empty() => "(empty body)".to_owned(),
        (None, None) => excerpt(text),
    }
}

/// The start of `text`, trimmed, cut at [`BODY_EXCERPT`] characters.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_prefer_the_cumulocity_fields() {
        let cases = [
            (
                r#"{"error":"applications/Invalid Data","message":"bad zip","info":"x"}"#,
                "applications/Invalid Data: bad zip",
            ),
            (r#"{"message":"only a message"}"#, "only a message"),
            (
                "<html>502 Bad Gateway</html>",
                "<html>502 Bad Gateway</html>",
            ),
            ("  ", "(empty body)"),
        ];
        for (body, expected) in cases {
            assert_eq!(error_message(body), expected, "{body}");
        }
    }
}
