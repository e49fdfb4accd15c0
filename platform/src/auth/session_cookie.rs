//! The session token a request's `Cookie` headers carry: the one pair named exactly
//! `authorization`, its name read as sent.
//!
//! actix-web's `HttpRequest::cookie` percent-decodes names, so a cookie a browser keeps as
//! `authorizatio%6E` (a name Berth never sets) would be taken for the session. And a nameless
//! cookie (`Set-Cookie: =authorization=…`) comes back as a bare `authorization=…` pair that
//! cannot be told from the real one: when two arrive, one was planted (Berth sets one per host,
//! at `/`), and Berth cannot know which is the user's, so it takes neither.

/// The session cookie's name (`principal::TOKEN_COOKIE`, which the rest of Berth names).
pub const NAME: &str = "authorization";

/// What a request's cookies say about its session.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCookie<'h> {
    None,
    /// The token, trimmed and unquoted as actix-web's cookie parser does.
    One(&'h [u8]),
    /// `authorization` pairs of different values.
    Several,
}

/// The session cookie among the pairs of `headers` (the values of every `Cookie` header).
pub fn session_cookie<'h>(headers: impl Iterator<Item = &'h [u8]>) -> SessionCookie<'h> {
    let mut found = SessionCookie::None;
    for pair in headers.flat_map(|value| value.split(|b| *b == b';')) {
        let Some(eq) = pair.iter().position(|b| *b == b'=') else {
            continue;
        };
        if pair[..eq].trim_ascii() != NAME.as_bytes() {
            continue;
        }
        let value = pair[eq + 1..].trim_ascii();
        let value = match value {
            [b'"', inner @ .., b'"'] => inner.trim_ascii(),
            _ => value,
        };
        found = match found {
            SessionCookie::One(first) if first != value => return SessionCookie::Several,
            SessionCookie::One(_) => found,
            _ => SessionCookie::One(value),
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (`Cookie` header values, what they carry)
    type Case<'a> = (&'a [&'a str], SessionCookie<'a>);

    #[test]
    fn the_session_is_the_one_pair_named_authorization_as_sent() {
        let cases: &[Case<'_>] = &[
            (&[], SessionCookie::None),
            (&["a=1; b=2"], SessionCookie::None),
            (&["authorization=jwt"], SessionCookie::One(b"jwt")),
            (
                &["XSRF-TOKEN=x; authorization = jwt ;a=1"],
                SessionCookie::One(b"jwt"),
            ),
            (&["authorization=\"jwt\""], SessionCookie::One(b"jwt")),
            (&["a=1", "authorization=jwt"], SessionCookie::One(b"jwt")),
            // Names are not percent-decoded, nor case-folded: these are other cookies.
            (&["authorizatio%6E=planted"], SessionCookie::None),
            (&["%61uthorization=planted"], SessionCookie::None),
            (&["Authorization=planted"], SessionCookie::None),
            (
                &["authorization_hint=1; authorization"],
                SessionCookie::None,
            ),
            // A nameless cookie comes back as a bare pair: two mean one was planted.
            (
                &["authorization=planted; authorization=jwt"],
                SessionCookie::Several,
            ),
            // The same token twice is no doubt about whose session it is.
            (
                &["authorization=jwt", "authorization=jwt"],
                SessionCookie::One(b"jwt"),
            ),
        ];
        for (headers, expected) in cases {
            let got = session_cookie(headers.iter().map(|h| h.as_bytes()));
            assert_eq!(&got, expected, "{headers:?}");
        }
    }
}
