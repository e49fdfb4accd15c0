//! Header rules of the proxy: hop-by-hop headers are dropped in both directions (RFC 9110
//! §7.6.1: Connection and the headers it names, Keep-Alive, TE, Trailer, Transfer-Encoding,
//! Upgrade, Proxy-*), the `X-Forwarded-*` family and every other header a proxy tells an
//! application about its client with ([`is_forwarding`]) are set by Berth or dropped, never taken
//! from the client (a trusted proxy's word reaches the container through what `edge::origin`
//! made of it), and a service's `Set-Cookie` of the platform's session cookies is dropped.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::principal::{TOKEN_COOKIE, XSRF_COOKIE};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
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

/// Headers Berth sets itself on forwarded requests, or that only a proxy may set; a client's
/// values are dropped, so a container can trust them. `Host` names the container (set by the
/// client library), `Content-Length` comes from the forwarded body, and `Expect: 100-continue`
/// was answered by Berth's server already (the body follows at once, so the container must not
/// wait for it). The rest is [`is_forwarding`]. `name` is lower case, as both header map types
/// keep it.
fn set_by_proxy(name: &str) -> bool {
    matches!(name, "host" | "content-length" | "expect") || is_forwarding(name.as_bytes())
}

/// What a proxy in front of an application tells it about the client: its address, the
/// scheme, host, port, path or TLS certificate it used. Application servers believe these when
/// set up behind a proxy (Spring's `ForwardedHeaderFilter` and Tomcat's `RemoteIpValve` the
/// `X-Forwarded-*` family, IIS-era frameworks `X-Original-URL`/`X-Rewrite-URL`, realip modules
/// and CDN integrations `True-Client-IP`, `CF-Connecting-IP` and the like, ASP.NET's certificate
/// forwarding `X-Client-Cert`/`X-ARR-ClientCert`). Berth is that proxy, so none of them may come
/// from the client: the whole `X-Forwarded*` and `X-Original-*` families and the names below
/// are dropped, and Berth sets its own `X-Forwarded-*`, `X-Real-IP` and `X-Request-Id`.
/// `_` counts as `-`: CGI-style servers (Rack, WSGI, PHP) read `X_Forwarded_For` as
/// `X-Forwarded-For`. Runs for every header of every proxied request: one branch on the first
/// byte, then length-checked byte comparisons, no allocation.
fn is_forwarding(name: &[u8]) -> bool {
    // `pattern` is lower case with `-`; `name` matches it with `-` or `_`.
    let same = |a: &[u8], pattern: &[u8]| {
        a.len() == pattern.len()
            && a.iter()
                .zip(pattern)
                .all(|(a, p)| a == p || (*a == b'_' && *p == b'-'))
    };
    let is = |pattern: &[u8]| same(name, pattern);
    let starts = |prefix: &[u8]| name.len() >= prefix.len() && same(&name[..prefix.len()], prefix);
    match name.first() {
        Some(b'x') => {
            starts(b"x-forwarded")
                || starts(b"x-original-")
                || FORWARDING_X.iter().any(|pattern| is(pattern))
        }
        Some(b'f') => {
            is(b"forwarded")
                || is(b"forwarded-for")
                || is(b"front-end-https")
                || is(b"fastly-client-ip")
        }
        Some(b'c') => {
            is(b"client-ip")
                || is(b"cf-connecting-ip")
                || is(b"cf-pseudo-ipv4")
                || is(b"cf-visitor")
        }
        Some(b't') => is(b"true-client-ip"),
        _ => false,
    }
}

/// [`is_forwarding`]'s names beginning with `x-` beyond its two families.
const FORWARDING_X: [&[u8]; 15] = [
    b"x-real-ip",
    b"x-appengine-user-ip",
    b"x-request-id",
    b"x-client-ip",
    b"x-cluster-client-ip",
    b"x-proxyuser-ip",
    b"x-host",
    b"x-rewrite-url",
    b"x-scheme",
    b"x-url-scheme",
    b"x-proxied-https",
    b"x-arr-ssl",
    b"x-arr-clientcert",
    b"x-client-cert",
    b"x-ssl-client-cert",
];

/// Copies the end-to-end headers of a client request (Authorization, cookies, `tfatoken`,
/// content type… unchanged) into the upstream request; the platform's session cookies only
/// when they are the request's credentials ([`cookie_to_forward`]).
pub fn copy_request(src: &HeaderMap, dst: &mut HeaderMap) {
    let has_connection = src.contains_key(header::CONNECTION);
    let has_authorization = src.contains_key(header::AUTHORIZATION);
    for (name, value) in src {
        if is_hop_by_hop(name)
            || set_by_proxy(name.as_str())
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
    let is_ours = |pair: &[u8]| is_platform_pair(pair.trim_ascii());
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

/// Whether a `Cookie` pair (`name=value`) is one of the platform's own cookies.
fn is_platform_pair(pair: &[u8]) -> bool {
    pair.iter()
        .position(|b| *b == b'=')
        .is_some_and(|eq| names_platform_cookie(&pair[..eq]))
}

/// Whether a service's `Set-Cookie` value could plant one of the platform's own cookies: the
/// session token or its XSRF pair. A service answers on the platform's origin, so such a cookie
/// would replace the caller's session with one the service chose (signing the visitor in as
/// someone else) or break it; it is dropped, whatever else the service sets stays.
///
/// The name is read as each of the cookie's readers reads it. Browsers (RFC 6265bis §5.6) take
/// the text before the first `=` of the first `;`-part, trimmed; without a name (`=a=b`, or no
/// `=` at all) they keep a cookie named "" and send back its bare value, so `=authorization=jwt`
/// comes back as `Cookie: authorization=jwt`: every nameless cookie is dropped (nothing on the
/// platform's origin has a use for one). Berth's server used to percent-decode names
/// (actix-web's `HttpRequest::cookie`), so `authorizatio%6E` is compared decoded as well.
fn sets_platform_cookie(value: &[u8]) -> bool {
    let pair = value.split(|b| *b == b';').next().unwrap_or_default();
    match pair.iter().position(|b| *b == b'=') {
        Some(eq) if !pair[..eq].trim_ascii().is_empty() => names_platform_cookie(&pair[..eq]),
        _ => true,
    }
}

/// Whether a cookie name is the session token's or the XSRF cookie's, for any of their
/// readers: compared trimmed, without surrounding quotes, case-insensitively, and once
/// percent-decoded. No allocation: this runs for every `Set-Cookie` a service sends.
fn names_platform_cookie(name: &[u8]) -> bool {
    let name = name.trim_ascii();
    let name = match name {
        [b'"', inner @ .., b'"'] => inner.trim_ascii(),
        _ => name,
    };
    // Decoding a name without `%` leaves it as it is: one comparison covers both readings.
    [TOKEN_COOKIE, XSRF_COOKIE].iter().any(|ours| {
        percent_decoded(name)
            .map(|b| b.to_ascii_lowercase())
            .eq(ours.bytes().map(|b| b.to_ascii_lowercase()))
    })
}

/// The bytes of `text` with each `%XX` escape decoded once (an invalid escape stays as it is).
fn percent_decoded(text: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut rest = text;
    std::iter::from_fn(move || {
        let (&first, tail) = rest.split_first()?;
        if first == b'%'
            && let (Some(high), Some(low)) = (hex(tail.first()), hex(tail.get(1)))
        {
            rest = &tail[2..];
            // Two hex digits are at most 0xff.
            return u8::try_from(high * 16 + low).ok();
        }
        rest = tail;
        Some(first)
    })
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
            || set_by_proxy(text)
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
const H1_X_FORWARDED_PORT: http::HeaderName = http::HeaderName::from_static("x-forwarded-port");
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
    if let Some((host, port)) = host_and_port(host, true) {
        if let Ok(value) = http::HeaderValue::from_maybe_shared(host) {
            dst.insert(H1_X_FORWARDED_HOST, value);
        }
        if let Ok(value) = http::HeaderValue::from_maybe_shared(port) {
            dst.insert(H1_X_FORWARDED_PORT, value);
        }
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

/// The values of `X-Forwarded-Host` (`host[:port]` as the client addressed it) and
/// `X-Forwarded-Port` (the port it names, else the scheme's), sharing one copy of `host`.
///
/// Berth sets `X-Forwarded-Port` because the client's is dropped and some servers need it:
/// Tomcat's `RemoteIpValve` (Spring Boot's default behind a proxy) cuts the port off
/// `X-Forwarded-Host` and, without `X-Forwarded-Port`, takes the scheme's default, so a
/// service's links and redirects would name port 443 on a Berth listening on 8443.
/// ingress-nginx, Traefik and cloud load balancers set it for that reason. It costs no
/// allocation: a slice of the host's bytes or a static value.
fn host_and_port(host: &str, https: bool) -> Option<(bytes::Bytes, bytes::Bytes)> {
    if host.is_empty() {
        return None;
    }
    let host = bytes::Bytes::copy_from_slice(host.as_bytes());
    let port = match explicit_port(&host) {
        Some(start) => host.slice(start..),
        None if https => bytes::Bytes::from_static(b"443"),
        None => bytes::Bytes::from_static(b"80"),
    };
    Some((host, port))
}

/// Where the port of `host[:port]` starts, if it names one (`[::1]:8443` does, `[::1]` not).
fn explicit_port(host: &[u8]) -> Option<usize> {
    let colon = host.iter().rposition(|b| *b == b':')?;
    let port = &host[colon + 1..];
    let bracketed = host.first() == Some(&b'[');
    let ends_address = !bracketed || host[..colon].ends_with(b"]");
    let single_colon = bracketed || !host[..colon].contains(&b':');
    (ends_address
        && single_colon
        && (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit))
    .then_some(colon + 1)
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
    /// The tenant the caller authenticated in, which a bare Basic user name gets
    /// ([`super::basic_tenant`]).
    pub tenant: &'a str,
}

/// Sets the `X-Forwarded-*` (`For`, `Host`, `Port`, `Proto`, `Prefix`), `X-Real-IP` and
/// `X-Request-Id` headers.
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
    if let Some((host, port)) = forwarded
        .host
        .and_then(|h| host_and_port(h, forwarded.https))
    {
        if let Ok(value) = HeaderValue::from_maybe_shared(host) {
            dst.insert(X_FORWARDED_HOST, value);
        }
        if let Ok(value) = HeaderValue::from_maybe_shared(port) {
            dst.insert(X_FORWARDED_PORT, value);
        }
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
            // Forwarding headers Berth does not set are dropped too.
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-ssl", "on"),
            ("x-original-url", "/admin"),
            ("true-client-ip", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
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

    #[test]
    fn only_the_proxy_tells_a_service_about_the_client() {
        let dropped = [
            "forwarded",
            "forwarded-for",
            "x-forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-prefix",
            "x-forwarded-port",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-server",
            "x-forwarded-by",
            "x-forwarded-uri",
            "x-forwarded-client-cert",
            "x_forwarded_for",
            "x-forwarded_proto",
            "x-original-url",
            "x-original-uri",
            "x-original-host",
            "x-original-forwarded-for",
            "x-rewrite-url",
            "x_rewrite_url",
            "x-real-ip",
            "x_real_ip",
            "x-request-id",
            "x-client-ip",
            "x-cluster-client-ip",
            "x-proxyuser-ip",
            "x-appengine-user-ip",
            "x-host",
            "x-scheme",
            "x-url-scheme",
            "x-proxied-https",
            "x-arr-ssl",
            "x-arr-clientcert",
            "x-client-cert",
            "x-ssl-client-cert",
            "client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "cf-pseudo-ipv4",
            "cf-visitor",
            "fastly-client-ip",
            "front-end-https",
            "host",
            "content-length",
            "expect",
        ];
        let kept = [
            "accept",
            "authorization",
            "cookie",
            "content-type",
            "tfatoken",
            "x-xsrf-token",
            "x-cumulocity-application-key",
            "x-original",
            "x-forward",
            "x-realip",
            "x-hostname",
            "forwarded-host-x",
            "client-ipv6",
            "cf-ray",
            "true-client",
            "fastly",
            "x-request-ids",
        ];
        for name in dropped {
            assert!(set_by_proxy(name), "{name} must be dropped");
        }
        for name in kept {
            assert!(!set_by_proxy(name), "{name} must be kept");
        }
    }

    /// (host as addressed, HTTPS, X-Forwarded-Port)
    type PortCase<'a> = (&'a str, bool, &'a str);

    #[test]
    fn the_forwarded_port_is_the_one_the_client_addressed() {
        let cases: &[PortCase<'_>] = &[
            ("berth.example.com:8443", true, "8443"),
            ("berth.example.com", true, "443"),
            ("berth.example.com", false, "80"),
            ("berth.example.com:8080", false, "8080"),
            ("127.0.0.1:8443", true, "8443"),
            ("[::1]:8443", true, "8443"),
            ("[::1]", true, "443"),
            ("[::1]", false, "80"),
            // Not a port: the scheme's.
            ("berth.example.com:", true, "443"),
            ("berth.example.com:https", true, "443"),
            ("berth.example.com:123456", true, "443"),
            ("::1", true, "443"),
        ];
        for (host, https, port) in cases {
            let (got_host, got_port) = host_and_port(host, *https).unwrap();
            assert_eq!(got_host, host.as_bytes(), "{host}");
            assert_eq!(got_port, port.as_bytes(), "{host} {https}");
        }
        assert_eq!(host_and_port("", true), None);
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
            // Any name Berth's server or the console could take for its own.
            (
                true,
                "a=1; authorizatio%6E=jwt; XSRF%2DTOKEN=x",
                Some("a=1"),
            ),
            (true, "flag; a=1", Some("flag; a=1")),
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
            // Nameless: browsers send the bare value back, `authorization=attacker.token`.
            ("set-cookie", "=authorization=attacker.token; Path=/user"),
            ("set-cookie", " = XSRF-TOKEN=x; Path=/user"),
            ("set-cookie", "=kept.value.but.nameless"),
            ("set-cookie", "no-equals-sign"),
            ("set-cookie", "; authorization=x"),
            // Percent-encoded: actix-web's `HttpRequest::cookie` decoded names.
            ("set-cookie", "authorizatio%6E=attacker.token; Path=/user"),
            ("set-cookie", "%61uthorization=attacker.token"),
            ("set-cookie", "XSRF%2dTOKEN=x"),
            ("set-cookie", "xsrf-toke%4e=x"),
            // Quoted or padded names.
            ("set-cookie", "\"authorization\"=x"),
            ("set-cookie", "\t authorization\t=x"),
            // Not ours: only the name counts, and an invalid escape is no escape.
            ("set-cookie", "kept=authorization=x"),
            ("set-cookie", "authorizatio%6=kept"),
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
            "kept=authorization=x",
            "authorizatio%6=kept",
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
                    tenant: "t1",
                },
            );
            assert_eq!(dst.get(X_FORWARDED_FOR).unwrap(), expected);
            assert_eq!(dst.get(X_REAL_IP).unwrap(), "10.0.0.9");
            assert_eq!(dst.get(X_FORWARDED_HOST).unwrap(), "berth.example.com:8443");
            assert_eq!(dst.get(X_FORWARDED_PORT).unwrap(), "8443");
            assert_eq!(dst.get(X_FORWARDED_PROTO).unwrap(), "https");
            assert_eq!(dst.get(X_FORWARDED_PREFIX).unwrap(), "/service/hello");
            assert_eq!(dst.get(X_REQUEST_ID).unwrap(), "abc-1");
        }
        // The direct path's: the same headers, its client always the peer.
        let mut dst = http::HeaderMap::new();
        let client = "10.0.0.9".parse().unwrap();
        add_forwarded_h1(&mut dst, client, "berth.example.com", "/service/hello", &id);
        let got: Vec<(&str, &str)> = dst
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-forwarded-for", "10.0.0.9"),
                ("x-real-ip", "10.0.0.9"),
                ("x-forwarded-host", "berth.example.com"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-prefix", "/service/hello"),
                ("x-request-id", "abc-1"),
            ]
        );
    }
}
