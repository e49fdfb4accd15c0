//! Small checks on URL text the user or the platform gave: userinfo (a password must never be
//! printed) and whether credentials would cross the network unencrypted. Plain string work on
//! purpose: the only URLs here are a base URL and a redirect's `Location`.

use std::borrow::Cow;
use std::net::IpAddr;

/// The authority (after any `scheme://`, up to the path, query or fragment) and where it starts.
fn authority(url: &str) -> (usize, &str) {
    let start = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (start, &rest[..end])
}

/// Whether the authority holds an `@`, whatever the scheme, so a malformed URL counts too.
pub fn has_userinfo(url: &str) -> bool {
    authority(url).1.contains('@')
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub fn without_userinfo(url: &str) -> Cow<'_, str> {
    let (start, authority) = authority(url);
    match authority.rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &url[start + at..])),
        None => Cow::Borrowed(url),
    }
}

/// Whether `base_url` is plain `http://` to a host other than this machine, where Basic
/// credentials travel readable by anyone on the path.
pub fn is_cleartext_to_remote(base_url: &str) -> bool {
    if !base_url.to_ascii_lowercase().starts_with("http://") {
        return false;
    }
    let (_, authority) = authority(base_url);
    let host = match authority.strip_prefix('[') {
        // [v6]:port
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_found_in_the_authority_only_and_masked() {
        let cases = [
            ("https://alice:pw@h:1/p", true, "https://***@h:1/p"),
            ("alice:pw@h", true, "***@h"),
            ("ftp://a@b@h", true, "ftp://***@h"),
            ("https://h/path@x", false, "https://h/path@x"),
            ("https://h?q=a@b", false, "https://h?q=a@b"),
            ("http://h:8111", false, "http://h:8111"),
        ];
        for (url, found, masked) in cases {
            assert_eq!(has_userinfo(url), found, "{url}");
            assert_eq!(without_userinfo(url), masked, "{url}");
        }
    }

    #[test]
    fn only_plain_http_to_another_host_is_cleartext() {
        let cases = [
            ("http://berth.example", true),
            ("http://c8y:8111", true),
            ("http://10.0.0.1:8111/x", true),
            ("HTTP://berth.example", true),
            ("https://berth.example", false),
            ("http://localhost:8111", false),
            ("http://app.localhost", false),
            ("http://127.0.0.1:1", false),
            ("http://127.8.0.1", false),
            ("http://[::1]:8111", false),
            ("http://[2001:db8::1]:80", true),
        ];
        for (url, expected) in cases {
            assert_eq!(is_cleartext_to_remote(url), expected, "{url}");
        }
    }
}
