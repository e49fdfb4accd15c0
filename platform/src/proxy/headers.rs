//! Header rules of the proxy: hop-by-hop headers are dropped in both directions (RFC 9110
//! §7.6.1: Connection and the headers it names, Keep-Alive, TE, Trailer, Transfer-Encoding,
//! Upgrade, Proxy-*), and the `X-Forwarded-*` family is set by Berth, never taken from the client
//! (a trusted proxy's word reaches the container through what `api::origin` made of it).

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::principal::{TOKEN_COOKIE, XSRF_COOKIE};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop by definition (RFC 9110 §7.6.1, plus the non-standard Proxy-Connection); `name`
/// is lower case, as both header map types keep it.
fn is_hop_by_hop_name(name: &str) -> bool {
    matches!(
        name,
        "connection" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "keep-alive"
    ) || name.starts_with("proxy-")
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str())
}

/// True when one of the `Connection` header values lists `name` (those are hop-by-hop too).
fn connection_lists<'v>(mut values: impl Iterator<Item = &'v [u8]>, name: &str) -> bool {
    values.any(|value| {
        std::str::from_utf8(value).is_ok_and(|text| {
            text.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name))
        })
    })
}

fn listed_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    connection_lists(
        headers
            .get_all(header::CONNECTION)
            .map(HeaderValue::as_bytes),
        name.as_str(),
    )
}

/// Headers Berth sets itself on forwarded requests; a client's values are dropped, so a
/// container can trust them. `Host` names the container (set by the client library),
/// `Content-Length` comes from the forwarded body, and `Expect: 100-continue` was answered by
/// Berth's server already (the body follows at once, so the container must not wait for it).
fn set_by_proxy(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::EXPECT
        || name == header::FORWARDED
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_HOST
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_PREFIX
        || name == X_REAL_IP
        || name == X_REQUEST_ID
}

/// Copies the end-to-end headers of a client request (Authorization, cookies, `tfatoken`,
/// content type… unchanged) into the upstream request; the platform's session cookies only
/// when they are the request's credentials ([`cookie_to_forward`]).
pub fn copy_request(src: &HeaderMap, dst: &mut HeaderMap) {
    let has_connection = src.contains_key(header::CONNECTION);
    let has_authorization = src.contains_key(header::AUTHORIZATION);
    for (name, value) in src {
        if is_hop_by_hop(name)
            || set_by_proxy(name)
            || (has_connection && listed_in_connection(src, name))
        {
            continue;
        }
        if has_authorization && name == header::COOKIE {
            match cookie_to_forward(value.as_bytes()) {
                Forward::Unchanged => {}
                Forward::Without(rest) => {
                    if let Ok(rest) = HeaderValue::from_bytes(&rest) {
                        dst.append(name.clone(), rest);
                    }
                    continue;
                }
                Forward::Nothing => continue,
            }
        }
        dst.append(name.clone(), value.clone());
    }
}

/// What of a `Cookie` header goes to a service when the request authenticated with its
/// `Authorization` header (which the platform reads before cookies).
#[derive(Debug, PartialEq, Eq)]
enum Forward {
    Unchanged,
    Without(Vec<u8>),
    Nothing,
}

/// The cookie pairs of `value` but the platform's own. A request authenticated by its
/// `Authorization` header may still carry another user's session cookies (a browser sends
/// both when a page made it use credentials of the page's choosing): the service would get
/// that user's session token. With the cookie as the credential it goes on, as the SDKs expect.
fn cookie_to_forward(value: &[u8]) -> Forward {
    let is_ours = |pair: &[u8]| sets_platform_cookie(pair);
    if !value.split(|b| *b == b';').any(is_ours) {
        return Forward::Unchanged;
    }
    let kept: Vec<&[u8]> = value
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !is_ours(pair))
        .collect();
    if kept.is_empty() {
        Forward::Nothing
    } else {
        Forward::Without(kept.join(&b"; "[..]))
    }
}

/// Whether a `Set-Cookie` value (or a `Cookie` pair) names one of the platform's own cookies:
/// the session token or its XSRF pair. A service answers on the platform's origin, so such a cookie would replace the
/// caller's session with one the service chose (signing the visitor in as someone else) or break
/// it; it is dropped, whatever else the service sets stays.
fn sets_platform_cookie(value: &[u8]) -> bool {
    let name = value
        .split(|b| *b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    [TOKEN_COOKIE, XSRF_COOKIE]
        .iter()
        .any(|ours| name.eq_ignore_ascii_case(ours.as_bytes()))
}

/// Copies the end-to-end headers of an upstream response into the client response.
/// `Content-Length` is left out: the response body carries its size.
pub fn copy_response(src: &HeaderMap, dst: &mut HeaderMap) {
    let has_connection = src.contains_key(header::CONNECTION);
    for (name, value) in src {
        if is_hop_by_hop(name)
            || name == header::CONTENT_LENGTH
            || (has_connection && listed_in_connection(src, name))
            || (name == header::SET_COOKIE && sets_platform_cookie(value.as_bytes()))
        {
            continue;
        }
        dst.append(name.clone(), value.clone());
    }
}

/// The forwarded request's headers for the upstream client (`http` 1.x types), with the
/// body's `Content-Length` when the client sent one (otherwise the body is chunked).
pub fn to_upstream(src: &HeaderMap, length: Option<u64>, dst: &mut http::HeaderMap) {
    dst.reserve(src.len() + 1);
    for (name, value) in src {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            dst.append(name, value);
        }
    }
    if let Some(length) = length {
        dst.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(length),
        );
    }
}

/// Copies the end-to-end headers of an upstream client response into the client response
/// (`Content-Length` left out, as in [`copy_response`]).
pub fn copy_upstream_response(src: &http::HeaderMap, dst: &mut HeaderMap) {
    let has_connection = src.contains_key(http::header::CONNECTION);
    for (name, value) in src {
        let text = name.as_str();
        if is_hop_by_hop_name(text)
            || text == "content-length"
            || (has_connection
                && connection_lists(
                    src.get_all(http::header::CONNECTION)
                        .iter()
                        .map(http::HeaderValue::as_bytes),
                    text,
                ))
            || (text == "set-cookie" && sets_platform_cookie(value.as_bytes()))
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(text.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            dst.append(name, value);
        }
    }
}

/// [`copy_request`] for a request hyper's server received (`http` 1.x types).
pub fn copy_request_h1(src: &http::HeaderMap, dst: &mut http::HeaderMap) {
    let connection = src.get_all(http::header::CONNECTION);
    let has_connection = src.contains_key(http::header::CONNECTION);
    let has_authorization = src.contains_key(http::header::AUTHORIZATION);
    for (name, value) in src {
        let text = name.as_str();
        if is_hop_by_hop_name(text)
            || set_by_proxy_name(text)
            || (has_connection
                && connection_lists(connection.iter().map(http::HeaderValue::as_bytes), text))
        {
            continue;
        }
        if has_authorization && name == http::header::COOKIE {
            match cookie_to_forward(value.as_bytes()) {
                Forward::Unchanged => {}
                Forward::Without(rest) => {
                    if let Ok(rest) = http::HeaderValue::from_bytes(&rest) {
                        dst.append(name.clone(), rest);
                    }
                    continue;
                }
                Forward::Nothing => continue,
            }
        }
        dst.append(name.clone(), value.clone());
    }
}

fn set_by_proxy_name(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "expect"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-prefix"
            | "x-real-ip"
            | "x-request-id"
    )
}

/// Drops the hop-by-hop headers of an upstream response in place (`http` 1.x types);
/// `Content-Length` stays: hyper's server frames the body by it.
pub fn strip_response_h1(headers: &mut http::HeaderMap) {
    if headers.contains_key(http::header::CONNECTION) {
        let listed: Vec<String> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|token| token.trim().to_ascii_lowercase())
            .filter(|token| !token.is_empty())
            .collect();
        for name in listed {
            headers.remove(name.as_str());
        }
    }
    // Names, not strings: this runs for every proxied response, and a string is parsed
    // into a name at each call.
    for name in &H1_HOP_BY_HOP {
        headers.remove(name);
    }
    let cookies = headers.get_all(http::header::SET_COOKIE);
    if cookies.iter().any(|v| sets_platform_cookie(v.as_bytes())) {
        let kept: Vec<http::HeaderValue> = cookies
            .iter()
            .filter(|v| !sets_platform_cookie(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(http::header::SET_COOKIE);
        for value in kept {
            headers.append(http::header::SET_COOKIE, value);
        }
    }
}

// The forwarding headers as `http` 1.x names (constants: parsed at compile time).
const H1_X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const H1_X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");
const H1_X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
const H1_X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const H1_X_FORWARDED_PREFIX: http::HeaderName = http::HeaderName::from_static("x-forwarded-prefix");
const H1_X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The hop-by-hop headers of a response (RFC 9110 7.6.1, and the obsolete ones still seen).
const H1_HOP_BY_HOP: [http::HeaderName; 8] = [
    http::header::CONNECTION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
];

/// [`add_forwarded`] for the direct path, where the peer is never a trusted proxy (so the
/// client is the peer and there is no earlier `X-Forwarded-For`).
pub fn add_forwarded_h1(
    dst: &mut http::HeaderMap,
    client: std::net::IpAddr,
    host: &str,
    prefix: &str,
    request_id: &HeaderValue,
) {
    let ip = http::HeaderValue::from_str(&client.to_string());
    if let Ok(ip) = ip {
        dst.insert(H1_X_FORWARDED_FOR, ip.clone());
        dst.insert(H1_X_REAL_IP, ip);
    }
    if let Ok(value) = http::HeaderValue::from_str(host) {
        dst.insert(H1_X_FORWARDED_HOST, value);
    }
    dst.insert(
        H1_X_FORWARDED_PROTO,
        http::HeaderValue::from_static("https"),
    );
    if let Ok(value) = http::HeaderValue::from_str(prefix) {
        dst.insert(H1_X_FORWARDED_PREFIX, value);
    }
    if let Ok(value) = http::HeaderValue::from_bytes(request_id.as_bytes()) {
        dst.insert(H1_X_REQUEST_ID, value);
    }
}

/// What Berth tells the container about the original request.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The TCP peer of Berth, appended to `X-Forwarded-For`.
    pub client_ip: Option<std::net::IpAddr>,
    /// The client as far as Berth can tell (`X-Real-IP`): the peer, or what a trusted proxy said.
    pub real_ip: Option<std::net::IpAddr>,
    /// `X-Forwarded-For` as a trusted proxy sent it (Berth appends the peer); None otherwise.
    pub prior_for: Option<&'a HeaderValue>,
    /// The Host (or HTTP/2 authority) the client addressed.
    pub host: Option<&'a str>,
    pub https: bool,
    /// `/service/<segment>` as the client wrote it.
    pub prefix: &'a str,
    pub request_id: &'a HeaderValue,
}

/// Sets the `X-Forwarded-*`, `X-Real-IP` and `X-Request-Id` headers.
pub fn add_forwarded(dst: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    if let Some(ip) = forwarded.client_ip {
        let ip_text = ip.to_string();
        let chain = match forwarded.prior_for.and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip_text}"),
            _ => ip_text.clone(),
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            dst.insert(X_FORWARDED_FOR, value);
        }
    }
    if let Some(ip) = forwarded.real_ip.or(forwarded.client_ip)
        && let Ok(value) = HeaderValue::from_str(&ip.to_string())
    {
        dst.insert(X_REAL_IP, value);
    }
    if let Some(value) = forwarded.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        dst.insert(X_FORWARDED_HOST, value);
    }
    dst.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if forwarded.https { "https" } else { "http" }),
    );
    if let Ok(value) = HeaderValue::from_str(forwarded.prefix) {
        dst.insert(X_FORWARDED_PREFIX, value);
    }
    dst.insert(X_REQUEST_ID, forwarded.request_id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn requests_keep_end_to_end_headers_only() {
        let src = map(&[
            ("authorization", "Basic abc"),
            ("cookie", "authorization=jwt; XSRF-TOKEN=x"),
            ("tfatoken", "123"),
            ("x-xsrf-token", "x"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "drop me"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic zzz"),
            ("proxy-connection", "keep-alive"),
            ("host", "berth.example.com"),
            ("content-length", "10"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-real-ip", "6.6.6.6"),
            ("content-type", "application/json"),
            ("expect", "100-continue"),
        ]);
        let mut dst = HeaderMap::new();
        copy_request(&src, &mut dst);
        let mut kept: Vec<&str> = dst.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        // The cookie held only the platform's session, which is not the credential here.
        assert_eq!(
            kept,
            ["authorization", "content-type", "tfatoken", "x-xsrf-token"]
        );
        // The direct path's copy (hyper's header types) keeps exactly the same.
        let mut src_h1 = http::HeaderMap::new();
        to_upstream(&src, None, &mut src_h1);
        let mut dst_h1 = http::HeaderMap::new();
        copy_request_h1(&src_h1, &mut dst_h1);
        let mut kept_h1: Vec<&str> = dst_h1.keys().map(http::HeaderName::as_str).collect();
        kept_h1.sort_unstable();
        assert_eq!(kept_h1, kept);
    }

    /// (Authorization sent, Cookie sent, Cookie forwarded)
    type CookieCase<'a> = (bool, &'a str, Option<&'a str>);

    #[test]
    fn the_platforms_cookies_reach_a_service_only_as_the_requests_credentials() {
        let cases: &[CookieCase<'_>] = &[
            // The cookie is the credential (no Authorization): forwarded whole.
            (
                false,
                "authorization=jwt; XSRF-TOKEN=x; a=1",
                Some("authorization=jwt; XSRF-TOKEN=x; a=1"),
            ),
            (true, "a=1; b=2", Some("a=1; b=2")),
            (true, "a=1; authorization=jwt; b=2", Some("a=1; b=2")),
            (true, "Authorization=jwt;XSRF-TOKEN=x;a=1", Some("a=1")),
            (true, "authorization=jwt; XSRF-TOKEN=x", None),
            (true, "authorization_hint=1", Some("authorization_hint=1")),
        ];
        for (authorization, cookie, expected) in cases {
            let mut pairs = vec![("cookie", *cookie)];
            if *authorization {
                pairs.push(("authorization", "Basic abc"));
            }
            let src = map(&pairs);
            let mut dst = HeaderMap::new();
            copy_request(&src, &mut dst);
            let got = dst.get(header::COOKIE).map(|v| v.to_str().unwrap());
            assert_eq!(got, *expected, "{authorization} {cookie}");
            let mut src_h1 = http::HeaderMap::new();
            to_upstream(&src, None, &mut src_h1);
            let mut dst_h1 = http::HeaderMap::new();
            copy_request_h1(&src_h1, &mut dst_h1);
            let got = dst_h1
                .get(http::header::COOKIE)
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, *expected, "h1 {authorization} {cookie}");
        }
    }

    #[test]
    fn a_service_cannot_set_the_platforms_cookies() {
        let src = map(&[
            (
                "set-cookie",
                "authorization=attacker.token; Path=/; HttpOnly",
            ),
            ("set-cookie", " XSRF-TOKEN =x; Path=/"),
            ("set-cookie", "Authorization=y"),
            ("set-cookie", "session=kept; Path=/service/mail"),
            ("set-cookie", "authorization_hint=kept"),
        ]);
        let kept = |values: Vec<&[u8]>| -> Vec<String> {
            values
                .into_iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        let expected = [
            "session=kept; Path=/service/mail",
            "authorization_hint=kept",
        ];
        let mut dst = HeaderMap::new();
        copy_response(&src, &mut dst);
        let got = kept(
            dst.get_all(header::SET_COOKIE)
                .map(|v| v.as_bytes())
                .collect(),
        );
        assert_eq!(got, expected);
        let mut upstream = http::HeaderMap::new();
        to_upstream(&src, None, &mut upstream);
        let mut dst = HeaderMap::new();
        copy_upstream_response(&upstream, &mut dst);
        let got = kept(
            dst.get_all(header::SET_COOKIE)
                .map(|v| v.as_bytes())
                .collect(),
        );
        assert_eq!(got, expected);
        strip_response_h1(&mut upstream);
        let got = kept(
            upstream
                .get_all(http::header::SET_COOKIE)
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn responses_drop_hop_by_hop_and_length() {
        let src = map(&[
            ("content-type", "text/event-stream"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("keep-alive", "timeout=5"),
        ]);
        let mut dst = HeaderMap::new();
        copy_response(&src, &mut dst);
        assert_eq!(dst.get_all(header::SET_COOKIE).count(), 2);
        assert_eq!(dst.len(), 3);
        assert!(dst.contains_key(header::CONTENT_TYPE));

        // The same from the upstream client's header types.
        let mut upstream = http::HeaderMap::new();
        to_upstream(&src, None, &mut upstream);
        let mut dst = HeaderMap::new();
        copy_upstream_response(&upstream, &mut dst);
        assert_eq!(dst.get_all(header::SET_COOKIE).count(), 2);
        assert_eq!(dst.len(), 3);
        let mut listed = http::HeaderMap::new();
        listed.insert("connection", http::HeaderValue::from_static("x-hop"));
        listed.insert("x-hop", http::HeaderValue::from_static("1"));
        listed.insert("etag", http::HeaderValue::from_static("\"v1\""));
        let mut dst = HeaderMap::new();
        copy_upstream_response(&listed, &mut dst);
        assert_eq!(dst.len(), 1);
        assert!(dst.contains_key(header::ETAG));
        // In place for the direct path: the same, but Content-Length stays.
        strip_response_h1(&mut listed);
        assert_eq!(listed.len(), 1);
        let mut framed = http::HeaderMap::new();
        to_upstream(&src, None, &mut framed);
        strip_response_h1(&mut framed);
        assert_eq!(framed.get_all("set-cookie").iter().count(), 2);
        assert_eq!(framed.len(), 4, "{framed:?}");
        assert!(framed.contains_key("content-length"));
    }

    #[test]
    fn forwarded_headers_append_the_peer() {
        let cases = [
            (None, "10.0.0.9"),
            (Some("1.2.3.4"), "1.2.3.4, 10.0.0.9"),
            (Some(" "), "10.0.0.9"),
        ];
        let id = HeaderValue::from_static("abc-1");
        for (prior, expected) in cases {
            let prior = prior.map(HeaderValue::from_static);
            let mut dst = HeaderMap::new();
            add_forwarded(
                &mut dst,
                &Forwarded {
                    client_ip: Some("10.0.0.9".parse().unwrap()),
                    real_ip: None,
                    prior_for: prior.as_ref(),
                    host: Some("berth.example.com:8443"),
                    https: true,
                    prefix: "/service/hello",
                    request_id: &id,
                },
            );
            assert_eq!(dst.get(X_FORWARDED_FOR).unwrap(), expected);
            assert_eq!(dst.get(X_REAL_IP).unwrap(), "10.0.0.9");
            assert_eq!(dst.get(X_FORWARDED_HOST).unwrap(), "berth.example.com:8443");
            assert_eq!(dst.get(X_FORWARDED_PROTO).unwrap(), "https");
            assert_eq!(dst.get(X_FORWARDED_PREFIX).unwrap(), "/service/hello");
            assert_eq!(dst.get(X_REQUEST_ID).unwrap(), "abc-1");
        }
    }
}
