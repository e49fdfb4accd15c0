//! The challenge of a 401 (`WWW-Authenticate`, which RFC 9110 requires of every 401), as
//! Cumulocity sends it: `Basic realm="Cumulocity"`, or `XBasic` when the request carries
//! `UseXBasic` (what Cumulocity's web clients send so the browser shows no login dialog of its
//! own). Clients that send credentials only when challenged (Apache HttpClient's non-preemptive
//! Basic, used by the Maven plugin's upload) never log in without it.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};

const USE_XBASIC: HeaderName = HeaderName::from_static("usexbasic");

/// Whether the request asked for the `XBasic` scheme.
pub fn wants_xbasic(request: &HeaderMap) -> bool {
    request
        .get(USE_XBASIC)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("false"))
}

/// Adds the challenge to a 401 of Berth's own that has none.
pub fn apply(status: StatusCode, response: &mut HeaderMap, xbasic: bool) {
    if status == StatusCode::UNAUTHORIZED && !response.contains_key(WWW_AUTHENTICATE) {
        response.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(if xbasic {
                "XBasic realm=\"Cumulocity\""
            } else {
                "Basic realm=\"Cumulocity\""
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, UseXBasic sent, challenge already there; the challenge after.
    type Case<'a> = (u16, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    #[test]
    fn a_401_is_challenged_in_the_scheme_asked_for() {
        let cases: &[Case<'_>] = &[
            (401, None, None, Some("Basic realm=\"Cumulocity\"")),
            (401, Some("true"), None, Some("XBasic realm=\"Cumulocity\"")),
            (401, Some(""), None, Some("XBasic realm=\"Cumulocity\"")),
            (401, Some("false"), None, Some("Basic realm=\"Cumulocity\"")),
            (401, None, Some("Bearer"), Some("Bearer")),
            (403, Some("true"), None, None),
            (200, None, None, None),
        ];
        for (status, xbasic, present, expected) in cases {
            let mut request = HeaderMap::new();
            if let Some(value) = xbasic {
                request.insert(USE_XBASIC, HeaderValue::from_str(value).unwrap());
            }
            let mut response = HeaderMap::new();
            if let Some(value) = present {
                response.insert(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
            }
            let status = StatusCode::from_u16(*status).unwrap();
            apply(status, &mut response, wants_xbasic(&request));
            let got = response
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(got.as_deref(), *expected, "{status} {xbasic:?} {present:?}");
        }
    }
}
