//! Requests a browser made for a page of another site (cross-site request forgery). A browser
//! attaches ambient credentials to them: Basic credentials it keeps after its login dialog
//! answered one of the API's challenges, sent again to the same origin whoever's page asks. A
//! form any site may auto-submit (`enctype="text/plain"` writes a body that parses as JSON, and
//! the API reads JSON whatever its `Content-Type`) would then create users, tenants or options
//! as that user. The `authorization` cookie is no such credential: it needs the `X-XSRF-TOKEN`
//! header, which no other site's page can read or send.
//!
//! So a request that may change something (any method but the safe `GET`, `HEAD`, `OPTIONS` and
//! `TRACE`, and any `Upgrade`, since a WebSocket is read and written by the page that opened it)
//! is refused when the browser says another page made it: an `Origin` header naming anything
//! but the platform's own origin (as [`super::origin`] computes it, behind trusted proxies
//! too), or `Sec-Fetch-Site: cross-site` or `same-site` (the platform's pages, the console and
//! the services' pages under `/service/`, are all same-origin; a sibling host is another
//! tenant's domain or another application of the operator's). Browsers send `Origin` with every
//! such request; SDKs, scripts, webhooks and services send neither header and pass.

use super::origin::Origin;

/// Set by browsers only: whose page made the request (`same-origin`, `same-site`,
/// `cross-site`, or `none` for one the user typed or bookmarked).
pub const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// What of a request says whether a browser made it for another site's page.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub method: &'a str,
    /// The request asks for an `Upgrade` (a WebSocket).
    pub upgrade: bool,
    /// The first `Origin` header (browsers send one at most).
    pub origin: Option<&'a [u8]>,
    pub fetch_site: Option<&'a [u8]>,
}

/// A request refused as made for another site's page (403, [`super::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error(
        "This request came from a page of another site (Origin {sent}), which cannot act here with the credentials your browser keeps; use the console at {ours}, or an API client that sends no Origin (behind a reverse proxy, list it in trusted_proxies so Berth knows the address users see)"
    )]
    Origin { sent: String, ours: String },
    #[error(
        "This request came from a page of another site (Sec-Fetch-Site: {site}), which cannot act here with the credentials your browser keeps; use the console at {ours}, or an API client"
    )]
    FetchSite { site: String, ours: String },
}

/// Methods that change nothing (RFC 9110 §9.2.1); a page of another site may send them.
fn safe(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Whether `site`, a `Sec-Fetch-Site` value, names a page that is not the platform's.
pub fn another_site(site: &[u8]) -> bool {
    site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site")
}

/// Err when `sent` may change something and a browser made it for a page that is not `ours`.
pub fn check(sent: &Sent<'_>, ours: &Origin) -> Result<(), CrossSite> {
    if safe(sent.method) && !sent.upgrade {
        return Ok(());
    }
    if let Some(origin) = sent.origin.filter(|o| !ours.is_sent_by(o)) {
        return Err(CrossSite::Origin {
            sent: crate::truncate::prefix(&String::from_utf8_lossy(origin), 100).to_owned(),
            ours: ours.base_url(),
        });
    }
    if let Some(site) = sent.fetch_site.filter(|s| another_site(s)) {
        return Err(CrossSite::FetchSite {
            site: crate::truncate::prefix(&String::from_utf8_lossy(site), 20).to_owned(),
            ours: ours.base_url(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Method, upgrade, Origin, Sec-Fetch-Site; refused by (`o`rigin, `s`ite) or allowed (`-`).
    type Case<'a> = (&'a str, bool, Option<&'a str>, Option<&'a str>, char);

    #[test]
    fn only_a_browser_page_of_another_site_is_refused_a_change() {
        const OURS: &str = "https://berth.example.com:8443";
        const EVIL: &str = "https://evil.example.com";
        let cases: &[Case<'_>] = &[
            // SDKs, scripts, webhooks: no Origin, no Sec-Fetch-Site.
            ("POST", false, None, None, '-'),
            ("DELETE", false, None, None, '-'),
            ("GET", true, None, None, '-'),
            // The platform's own pages.
            ("POST", false, Some(OURS), Some("same-origin"), '-'),
            (
                "PUT",
                false,
                Some("HTTPS://BERTH.EXAMPLE.COM:8443"),
                None,
                '-',
            ),
            ("GET", true, Some(OURS), Some("same-origin"), '-'),
            // Typed, bookmarked: no page at all.
            ("POST", false, None, Some("none"), '-'),
            // Another site's page: every method that may change something, and upgrades.
            ("POST", false, Some(EVIL), Some("cross-site"), 'o'),
            ("PUT", false, Some(EVIL), None, 'o'),
            ("PATCH", false, Some(EVIL), None, 'o'),
            ("DELETE", false, Some(EVIL), None, 'o'),
            ("PROPFIND", false, Some(EVIL), None, 'o'),
            ("GET", true, Some(EVIL), Some("cross-site"), 'o'),
            ("POST", false, Some("null"), Some("cross-site"), 'o'),
            (
                "POST",
                false,
                Some("http://berth.example.com:8443"),
                None,
                'o',
            ),
            (
                "POST",
                false,
                Some("https://t1.berth.example.com"),
                Some("same-site"),
                'o',
            ),
            ("POST", false, None, Some("cross-site"), 's'),
            ("POST", false, None, Some("Same-Site"), 's'),
            // Reading is left to the same-origin policy: another site cannot read the answer.
            ("GET", false, Some(EVIL), Some("cross-site"), '-'),
            ("HEAD", false, Some(EVIL), Some("cross-site"), '-'),
            ("OPTIONS", false, Some(EVIL), Some("cross-site"), '-'),
            ("TRACE", false, Some(EVIL), Some("cross-site"), '-'),
            // A value no browser sends says nothing.
            ("POST", false, None, Some("elsewhere"), '-'),
        ];
        let ours = Origin {
            https: true,
            host: "berth.example.com:8443".into(),
            client: None,
            via_trusted_proxy: false,
        };
        for (method, upgrade, origin, site, expected) in cases {
            let sent = Sent {
                method,
                upgrade: *upgrade,
                origin: origin.map(str::as_bytes),
                fetch_site: site.map(str::as_bytes),
            };
            let got = match check(&sent, &ours) {
                Ok(()) => '-',
                Err(CrossSite::Origin { .. }) => 'o',
                Err(CrossSite::FetchSite { .. }) => 's',
            };
            assert_eq!(
                got, *expected,
                "{method} upgrade={upgrade} {origin:?} {site:?}"
            );
        }
    }

    #[test]
    fn the_refusal_names_the_other_site_and_where_to_go_instead() {
        let ours = Origin {
            https: true,
            host: "berth.example.com".into(),
            client: None,
            via_trusted_proxy: false,
        };
        let long = format!("https://{}.example.com", "a".repeat(500));
        let refused = check(
            &Sent {
                method: "POST",
                upgrade: false,
                origin: Some(long.as_bytes()),
                fetch_site: None,
            },
            &ours,
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("another site"), "{refused}");
        assert!(refused.contains("https://berth.example.com"), "{refused}");
        assert!(refused.len() < 400, "{refused}");
    }
}
