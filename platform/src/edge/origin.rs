//! Where a request really comes from: the scheme and host the client used (for links, cookies,
//! HSTS and the tenant a host selects) and the client's address. `Forwarded` and
//! `X-Forwarded-*` are believed only when the TCP peer is a configured trusted proxy
//! (`trusted_proxies`); from anyone else they are ignored and the connection says it all.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::{HttpMessage, HttpRequest, web};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the request came over, as Berth's listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub peer: Option<IpAddr>,
    pub tls: bool,
    pub headers: &'a HeaderMap,
    /// The request target's authority (HTTP/2 `:authority`, absolute-form HTTP/1).
    pub authority: Option<&'a str>,
    /// Used when the request names no host at all.
    pub default_host: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    /// `host[:port]` as the client addressed it.
    pub host: String,
    pub client: Option<IpAddr>,
    /// The peer is a trusted proxy (its forwarding headers were used).
    pub via_trusted_proxy: bool,
}

impl Origin {
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// `scheme://host`, the base of every link.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host)
    }

    /// Whether `sent`, a browser's `Origin` header, names this origin: the page that made the
    /// request is one of the platform's own (the console, a service's page under `/service/`).
    /// Scheme and host compare without case, and a default port (`:443`, `:80`) written on
    /// either side is the same as none: browsers never write it, a `Host` header may.
    pub fn is_sent_by(&self, sent: &[u8]) -> bool {
        let Ok(sent) = std::str::from_utf8(sent) else {
            return false;
        };
        let Some((scheme, host)) = sent.trim().split_once("://") else {
            return false;
        };
        let default_port = if self.https { ":443" } else { ":80" };
        let bare = |host: &str| {
            host.strip_suffix(default_port)
                .unwrap_or(host)
                .to_ascii_lowercase()
        };
        scheme.eq_ignore_ascii_case(self.scheme()) && bare(host) == bare(&self.host)
    }
}

/// The origin of a request on `conn`, believing forwarding headers only from `trusted` peers.
pub fn resolve(conn: &Connection<'_>, trusted: &[Cidr]) -> Origin {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let direct_host = header_text(conn.headers, &header::HOST)
        .or(conn.authority)
        .filter(|h| valid_host(h))
        .unwrap_or(conn.default_host)
        .to_owned();
    let direct = Origin {
        https: conn.tls,
        host: direct_host,
        client: conn.peer,
        via_trusted_proxy: false,
    };
    let Some(peer) = conn.peer.filter(|p| is_trusted(*p)) else {
        return direct;
    };
    let forwarded = forwarded_elements(conn.headers);
    // The nearest proxy's word wins: the last element (or list item) that says it.
    let last = |key: &str| {
        forwarded
            .iter()
            .rev()
            .find_map(|e| e.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    };
    let (proto, host, chain) = if forwarded.is_empty() {
        (
            last_item(conn.headers, &X_FORWARDED_PROTO),
            last_item(conn.headers, &X_FORWARDED_HOST),
            all_items(conn.headers, &X_FORWARDED_FOR),
        )
    } else {
        let chain = forwarded
            .iter()
            .filter_map(|e| e.iter().find(|(k, _)| k == "for").map(|(_, v)| v.clone()))
            .collect();
        (last("proto"), last("host"), chain)
    };
    let https = match proto.map(|p| p.to_ascii_lowercase()).as_deref() {
        Some("https") => true,
        Some("http") => false,
        _ => conn.tls,
    };
    let host = host.filter(|h| valid_host(h)).unwrap_or(direct.host);
    // Right to left through the proxies we trust; the first other address is the client.
    let mut client = peer;
    for hop in chain.iter().rev() {
        match node_ip(hop) {
            Some(ip) if is_trusted(client) => client = ip,
            _ => break,
        }
    }
    Origin {
        https,
        host,
        client: Some(client),
        via_trusted_proxy: true,
    }
}

/// An address block, `10.0.0.0/8` or `::1/128`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose forwarding headers are believed (the configuration's `trusted_proxies`),
/// registered as app data by [`crate::api::configure`] on the public listener; absent (and on
/// the internal API), nobody is trusted.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<Cidr>);

/// The origin of `req`, with the trusted proxies of the server's configuration.
pub fn of(req: &HttpRequest) -> Origin {
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map(|t| t.0.as_slice())
        .unwrap_or(&[]);
    let config = req.app_config();
    resolve(
        &Connection {
            peer: req.peer_addr().map(|a| a.ip()),
            // The front passes HTTPS requests on over a plain socket, marked.
            tls: config.secure() || req.extensions().contains::<ViaFront>(),
            headers: req.headers(),
            authority: req.uri().authority().map(|a| a.as_str()),
            default_host: config.host(),
        },
        trusted,
    )
}

/// A request the HTTPS front passed on to the API over its socket (request extension): it came
/// over TLS, from the peer the front named. Set only by `front::backend::adopt`.
#[derive(Debug, Clone, Copy)]
pub struct ViaFront;

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn all_items(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn last_item(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    all_items(headers, name).pop()
}

/// RFC 7239 elements, each a list of (lower-case key, unquoted value).
fn forwarded_elements(headers: &HeaderMap) -> Vec<Vec<(String, String)>> {
    headers
        .get_all(header::FORWARDED)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .filter(|e| !e.is_empty())
        .collect()
}

/// The address of a `for=`/`X-Forwarded-For` node: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// A host name or address with an optional port: nothing that could break out of a link.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn origin(peer: &str, tls: bool, headers: &[(&str, &str)], trusted: &[&str]) -> Origin {
        let mut map = HeaderMap::new();
        map.insert(
            header::HOST,
            HeaderValue::from_static("berth.example.com:8443"),
        );
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let trusted: Vec<Cidr> = trusted.iter().map(|t| Cidr::parse(t).unwrap()).collect();
        resolve(
            &Connection {
                peer: Some(peer.parse().unwrap()),
                tls,
                headers: &map,
                authority: None,
                default_host: "localhost",
            },
            &trusted,
        )
    }

    /// Peer, TLS, headers, trusted blocks; expected https, host and client.
    type Case<'a> = (
        &'a str,
        bool,
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
        bool,
        &'a str,
        &'a str,
    );

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let spoof: &[(&str, &str)] = &[
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "victim.example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                "for=6.6.6.6;proto=http;host=victim.example.com",
            ),
        ];
        let cases: &[Case<'_>] = &[
            // Nobody trusted (the default): the connection says it all.
            (
                "203.0.113.5",
                true,
                spoof,
                &[],
                true,
                "berth.example.com:8443",
                "203.0.113.5",
            ),
            (
                "203.0.113.5",
                false,
                &[("x-forwarded-proto", "https")],
                &[],
                false,
                "berth.example.com:8443",
                "203.0.113.5",
            ),
            // A peer outside the trusted blocks is not believed either.
            (
                "203.0.113.5",
                true,
                spoof,
                &["10.0.0.0/8"],
                true,
                "berth.example.com:8443",
                "203.0.113.5",
            ),
            // A trusted proxy: X-Forwarded-*, the nearest value winning.
            (
                "10.1.2.3",
                false,
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil.example.com, tenant.example.com"),
                    ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
                ],
                &["10.0.0.0/8"],
                true,
                "tenant.example.com",
                "198.51.100.7",
            ),
            // Forwarded wins over X-Forwarded-*; trusted hops are skipped right to left.
            (
                "10.1.2.3",
                false,
                &[
                    (
                        "forwarded",
                        "for=198.51.100.7, for=\"[fd00::1]:4711\";proto=https;host=\"t.example.com:443\"",
                    ),
                    ("x-forwarded-host", "ignored.example.com"),
                ],
                &["10.0.0.0/8", "fd00::/8"],
                true,
                "t.example.com:443",
                "198.51.100.7",
            ),
            // Values that could not be ours are ignored: bad proto, a host breaking out of links.
            (
                "10.1.2.3",
                true,
                &[
                    ("x-forwarded-proto", "gopher"),
                    ("x-forwarded-host", "a.com/evil?x="),
                ],
                &["10.0.0.0/8"],
                true,
                "berth.example.com:8443",
                "10.1.2.3",
            ),
            // An unparseable hop stops the walk at the last address we could read.
            (
                "10.1.2.3",
                true,
                &[("x-forwarded-for", "198.51.100.7, unknown")],
                &["10.0.0.0/8"],
                true,
                "berth.example.com:8443",
                "10.1.2.3",
            ),
        ];
        for (peer, tls, headers, trusted, https, host, client) in cases {
            let got = origin(peer, *tls, headers, trusted);
            let context = format!("{peer} tls={tls} {headers:?} trusted={trusted:?}: {got:?}");
            assert_eq!(got.https, *https, "{context}");
            assert_eq!(got.host, *host, "{context}");
            assert_eq!(got.client, Some(client.parse().unwrap()), "{context}");
            assert_eq!(
                got.via_trusted_proxy,
                !trusted.is_empty() && *peer == "10.1.2.3",
                "{context}"
            );
        }
    }

    #[test]
    fn an_origin_header_names_the_platform_only_when_scheme_host_and_port_agree() {
        let ours = |https: bool, host: &str| Origin {
            https,
            host: host.to_owned(),
            client: None,
            via_trusted_proxy: false,
        };
        // (ours: https, host), the Origin sent, whether it is ours.
        let cases: &[((bool, &str), &str, bool)] = &[
            (
                (true, "berth.example.com:8443"),
                "https://berth.example.com:8443",
                true,
            ),
            (
                (true, "berth.example.com:8443"),
                "HTTPS://Berth.Example.COM:8443",
                true,
            ),
            (
                (true, "berth.example.com"),
                "https://berth.example.com",
                true,
            ),
            // A default port written by the Host header or the Origin is no other origin.
            (
                (true, "berth.example.com:443"),
                "https://berth.example.com",
                true,
            ),
            (
                (true, "berth.example.com"),
                "https://berth.example.com:443",
                true,
            ),
            (
                (false, "berth.example.com:80"),
                "http://berth.example.com",
                true,
            ),
            ((true, "[::1]:8443"), "https://[::1]:8443", true),
            // Another scheme, host or port is another origin.
            (
                (true, "berth.example.com:8443"),
                "http://berth.example.com:8443",
                false,
            ),
            (
                (true, "berth.example.com"),
                "http://berth.example.com",
                false,
            ),
            (
                (true, "berth.example.com"),
                "https://berth.example.com:80",
                false,
            ),
            (
                (true, "berth.example.com:8443"),
                "https://berth.example.com",
                false,
            ),
            (
                (true, "berth.example.com:8443"),
                "https://evil.example.com:8443",
                false,
            ),
            (
                (true, "berth.example.com"),
                "https://t1.berth.example.com",
                false,
            ),
            (
                (true, "berth.example.com"),
                "https://berth.example.com.evil.com",
                false,
            ),
            // What is no origin at all (sandboxed frames, file pages, redirects) is not ours.
            ((true, "berth.example.com"), "null", false),
            ((true, "berth.example.com"), "", false),
            ((true, "berth.example.com"), "berth.example.com", false),
        ];
        for ((https, host), sent, expected) in cases {
            assert_eq!(
                ours(*https, host).is_sent_by(sent.as_bytes()),
                *expected,
                "ours {https} {host}, sent {sent}"
            );
        }
        assert!(!ours(true, "b").is_sent_by(b"https://\xff"));
    }

    /// actix's `ConnectionInfo` believes forwarding headers from anyone: nothing may use it.
    #[test]
    fn nothing_asks_actix_for_connection_details() {
        let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let needle = ["connection", "_info("].concat();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(!text.contains(&needle), "{} uses {needle}", path.display());
                }
            }
        }
    }
}
