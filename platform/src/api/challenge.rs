//! The challenge of a 401 (`WWW-Authenticate`, which RFC 9110 requires of every 401), as
//! Cumulocity sends it: `Basic realm="Cumulocity"`, or `XBasic` when the request carries
//! `UseXBasic` (what Cumulocity's web clients send so the browser shows no login dialog of its
//! own). Clients that send credentials only when challenged (Apache HttpClient's non-preemptive
//! Basic, used by the Maven plugin's upload) never log in without it.
//!
//! A browser's request for another site's page (`Sec-Fetch-Site: cross-site` or `same-site`, a
//! header only browsers send) gets `XBasic` too: a link, frame or image of another site's page
//! would otherwise open Berth's genuine login dialog over that page, and the credentials typed
//! into it stay in the browser, sent again to every API URL (see [`crate::edge::cross_site`]).
//! A URL the user typed or bookmarked (`none`) or a link of the platform's own pages still gets
//! the dialog; no client that is not a browser sends the header.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};

const USE_XBASIC: HeaderName = HeaderName::from_static("usexbasic");

/// Whether the request gets the `XBasic` scheme: it asked for it, or a browser made it for
/// another site's page.
pub fn wants_xbasic(request: &HeaderMap) -> bool {
    let asked = request
        .get(USE_XBASIC)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("false"));
    let another_site = request
        .get(crate::edge::cross_site::SEC_FETCH_SITE)
        .is_some_and(|v| crate::edge::cross_site::another_site(v.as_bytes()));
    asked || another_site
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

    /// Status, UseXBasic sent, Sec-Fetch-Site sent, challenge already there; the challenge after.
    type Case<'a> = (
        u16,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    #[test]
    fn a_401_is_challenged_in_the_scheme_asked_for() {
        const BASIC: Option<&str> = Some("Basic realm=\"Cumulocity\"");
        const XBASIC: Option<&str> = Some("XBasic realm=\"Cumulocity\"");
        let cases: &[Case<'_>] = &[
            (401, None, None, None, BASIC),
            (401, Some("true"), None, None, XBASIC),
            (401, Some(""), None, None, XBASIC),
            (401, Some("false"), None, None, BASIC),
            (401, None, None, Some("Bearer"), Some("Bearer")),
            (403, Some("true"), None, None, None),
            (200, None, None, None, None),
            // A browser: the dialog only for what the user typed or the platform's pages.
            (401, None, Some("none"), None, BASIC),
            (401, None, Some("same-origin"), None, BASIC),
            (401, None, Some("cross-site"), None, XBASIC),
            (401, None, Some("same-site"), None, XBASIC),
            (401, Some("false"), Some("cross-site"), None, XBASIC),
            (401, Some("true"), Some("same-origin"), None, XBASIC),
        ];
        for (status, xbasic, site, present, expected) in cases {
            let mut request = HeaderMap::new();
            if let Some(value) = xbasic {
                request.insert(USE_XBASIC, HeaderValue::from_str(value).unwrap());
            }
            if let Some(value) = site {
                request.insert(
                    HeaderName::from_static(crate::edge::cross_site::SEC_FETCH_SITE),
                    HeaderValue::from_str(value).unwrap(),
                );
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
            assert_eq!(
                got.as_deref(),
                *expected,
                "{status} {xbasic:?} {site:?} {present:?}"
            );
        }
    }
}
