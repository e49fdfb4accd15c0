//! A Basic credential without a tenant prefix reaches a service as `tenant/user`.
//!
//! Berth accepts `user:password` and takes the tenant from the `Host` (or the management
//! tenant), as Cumulocity does, and the `microservice` script and go-c8y-cli send it that way.
//! A service cannot tell the tenant from such a header: c8y-api's
//! `MultiTenantCumulocityApp.get_user_instance`/`get_tenant_instance(headers=…)` raise
//! ("Unable to isolate tenant ID from username"), and a service that forwards the header to
//! `C8Y_BASEURL` is answered for the management tenant's user of that name (the internal
//! listener has no tenant host), i.e. 401. So once the caller authenticated, the proxy puts the
//! tenant it authenticated in before the name; the password is kept, so the header stays a
//! valid credential of the same user, and of no one else. Runs per proxied request: a header
//! that is not Basic is left at its first bytes, one that is decodes on the stack, and only a
//! name without `/` is rewritten.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Decoded Basic credentials up to this many bytes are read without allocating.
const STACK: usize = 384;

/// The `Authorization` value to forward for `value` sent by a caller of `tenant`: Some when
/// it is Basic with a user name lacking the tenant prefix, None to forward it unchanged.
pub fn qualified(value: &[u8], tenant: &str) -> Option<Vec<u8>> {
    let encoded = value
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
        .map(|_| value[6..].trim_ascii())?;
    let mut stack = [0u8; STACK];
    let heap;
    let decoded: &[u8] = match STANDARD.decode_slice(encoded, &mut stack) {
        Ok(n) => &stack[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            heap = STANDARD.decode(encoded).ok()?;
            &heap
        }
        Err(_) => return None,
    };
    let colon = decoded.iter().position(|b| *b == b':')?;
    if decoded[..colon].contains(&b'/') || colon == 0 || tenant.is_empty() {
        return None;
    }
    let mut login = Vec::with_capacity(tenant.len() + 1 + decoded.len());
    login.extend_from_slice(tenant.as_bytes());
    login.push(b'/');
    login.extend_from_slice(decoded);
    let mut out = b"Basic ".to_vec();
    out.extend_from_slice(STANDARD.encode(login).as_bytes());
    Some(out)
}

/// [`qualified`] applied to the first `Authorization` header of a request on its way upstream
/// (actix-web's header types).
pub fn qualify(headers: &mut actix_web::http::header::HeaderMap, tenant: &str) {
    use actix_web::http::header::{AUTHORIZATION, HeaderValue};
    if let Some(value) = headers.get_mut(AUTHORIZATION)
        && let Some(new) = qualified(value.as_bytes(), tenant)
        && let Ok(new) = HeaderValue::from_bytes(&new)
    {
        *value = new;
    }
}

/// [`qualify`] for the direct path (`http` 1.x types).
pub fn qualify_h1(headers: &mut http::HeaderMap, tenant: &str) {
    if let Some(value) = headers.get_mut(http::header::AUTHORIZATION)
        && let Some(new) = qualified(value.as_bytes(), tenant)
        && let Ok(new) = http::HeaderValue::from_bytes(&new)
    {
        *value = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(text)).into_bytes()
    }

    #[test]
    fn only_a_bare_basic_user_gets_the_tenant() {
        let long = format!("jane:{}", "p".repeat(1000));
        let cases: [(Vec<u8>, Option<Vec<u8>>); 10] = [
            (basic("jane:pw"), Some(basic("t1/jane:pw"))),
            // The password is kept as sent, colons included.
            (basic("jane:p:w/x"), Some(basic("t1/jane:p:w/x"))),
            (b"basic amFuZTpwdw==".to_vec(), Some(basic("t1/jane:pw"))),
            (basic(&long), Some(basic(&format!("t1/{long}")))),
            (basic("t1/jane:pw"), None),
            (basic("other/jane:pw"), None),
            (b"Bearer abc.def".to_vec(), None),
            (b"Basic %%%".to_vec(), None),
            (basic("nocolon"), None),
            (basic(":pw"), None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                qualified(&value, "t1"),
                expected,
                "{}",
                String::from_utf8_lossy(&value)
            );
        }
        assert_eq!(qualified(&basic("jane:pw"), ""), None);
    }

    #[test]
    fn both_header_types_rewrite_the_first_authorization_only() {
        let mut h1 = http::HeaderMap::new();
        h1.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(&basic("jane:pw")).unwrap(),
        );
        qualify_h1(&mut h1, "t1");
        assert_eq!(
            h1[http::header::AUTHORIZATION].as_bytes(),
            basic("t1/jane:pw")
        );
        let mut actix = actix_web::http::header::HeaderMap::new();
        actix.insert(
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::HeaderValue::from_bytes(&basic("jane:pw")).unwrap(),
        );
        qualify(&mut actix, "t1");
        assert_eq!(
            actix
                .get(actix_web::http::header::AUTHORIZATION)
                .unwrap()
                .as_bytes(),
            basic("t1/jane:pw")
        );
    }
}
