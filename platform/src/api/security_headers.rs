//! Security headers of every response: `X-Content-Type-Options: nosniff`, HSTS over HTTPS and,
//! on Berth's own API, `Cache-Control: no-store` (its responses carry passwords, tokens,
//! credentials options and bootstrap users; none may stay in a browser or proxy cache).
//! Responses proxied from a microservice only get what they lack: what it sent is kept.

use actix_web::http::header::{
    CACHE_CONTROL, HeaderMap, HeaderValue, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};

use crate::edge::{HSTS, ORIGIN_WIDE};

/// Where a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Berth's API.
    Api,
    /// Anything under `/service/…`: a microservice's response passed through the proxy (or the
    /// proxy's own error, which does not need more).
    Proxied,
}

/// Adds the headers `origin` calls for; `https` when the client reached Berth over TLS. A
/// microservice's own `Cache-Control` and `nosniff` stay, but not its HSTS: one service's
/// `max-age=0` would end HTTPS-only for the whole platform host in its callers' browsers.
pub fn apply(headers: &mut HeaderMap, origin: Origin, https: bool) {
    let wanted = [
        (X_CONTENT_TYPE_OPTIONS, "nosniff", true),
        (CACHE_CONTROL, "no-store", origin == Origin::Api),
    ];
    for (name, value, applies) in wanted {
        if applies && !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if https {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    if origin == Origin::Proxied {
        for name in ORIGIN_WIDE {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(origin: Origin, https: bool, present: &[(&str, &str)]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in present {
            headers.insert(
                actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        apply(&mut headers, origin, https);
        let mut out: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!("{}: {}", n, v.to_str().unwrap()))
            .collect();
        out.sort();
        out
    }

    /// Origin, HTTPS, headers already present, all headers after.
    type Case<'a> = (Origin, bool, &'a [(&'a str, &'a str)], &'a [&'a str]);

    #[test]
    fn headers_are_added_where_missing_and_never_replaced() {
        let cases: &[Case<'_>] = &[
            (
                Origin::Api,
                true,
                &[],
                &[
                    "cache-control: no-store",
                    "strict-transport-security: max-age=31536000",
                    "x-content-type-options: nosniff",
                ],
            ),
            (
                Origin::Api,
                false,
                &[],
                &["cache-control: no-store", "x-content-type-options: nosniff"],
            ),
            (
                Origin::Proxied,
                true,
                &[],
                &[
                    "strict-transport-security: max-age=31536000",
                    "x-content-type-options: nosniff",
                ],
            ),
            (
                Origin::Proxied,
                false,
                &[],
                &["x-content-type-options: nosniff"],
            ),
            // A microservice's own choices are kept, but not where they reach the whole origin.
            (
                Origin::Proxied,
                true,
                &[
                    ("cache-control", "public, max-age=60"),
                    ("strict-transport-security", "max-age=0"),
                    ("x-content-type-options", "nosniff"),
                    ("clear-site-data", "\"cookies\", \"storage\""),
                ],
                &[
                    "cache-control: public, max-age=60",
                    "strict-transport-security: max-age=31536000",
                    "x-content-type-options: nosniff",
                ],
            ),
        ];
        for (origin, https, present, expected) in cases {
            assert_eq!(
                after(*origin, *https, present),
                *expected,
                "{origin:?} https={https} {present:?}"
            );
        }
    }
}
