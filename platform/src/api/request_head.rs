//! Limits on the request head that Berth enforces itself, below those of the HTTP framework, so
//! a client sending too long a URL, too many header bytes or too many header fields gets a
//! Cumulocity error body saying what to fix. The frameworks' own rejections (actix-http: heads
//! over 128 KiB, more than 96 header fields; hyper, the HTTPS front: more than 100 header
//! fields over HTTP/1.1; both: malformed framing such as Content-Length with
//! Transfer-Encoding) are written by their connection code with an empty body and no hook.

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;

use super::error::ApiError;

/// Longest request target accepted (path and query), as common proxies allow.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) accepted in one request.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted in one request: below actix-http's 96 with room for the two
/// the front adds when it passes a request on (the client's address, and `Host` for HTTP/2).
pub const MAX_HEADERS: usize = 90;

/// Err when the head is over one of the limits.
pub fn check(uri_len: usize, headers: &HeaderMap) -> Result<(), ApiError> {
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "general/URI Too Long",
            &format!(
                "the request URL has {uri_len} bytes; at most {MAX_URI_BYTES} are accepted (send long filters in a body)"
            ),
        ));
    }
    if headers.len() > MAX_HEADERS {
        return Err(too_many_headers(headers.len()));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "general/Request Header Fields Too Large",
            &format!(
                "the request headers have {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        ));
    }
    Ok(())
}

/// The refusal of a request with `count` header fields.
pub fn too_many_headers(count: usize) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "general/Request Header Fields Too Large",
        &format!("the request has {count} header fields; at most {MAX_HEADERS} are accepted"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn heads_over_a_limit_are_refused_with_the_status_for_it() {
        let headers_of = |bytes: usize| {
            let mut map = HeaderMap::new();
            let value = "v".repeat(bytes - "x-big".len());
            map.insert(
                HeaderName::from_static("x-big"),
                HeaderValue::from_str(&value).unwrap(),
            );
            map
        };
        let cases = [
            (MAX_URI_BYTES, 10, None),
            (MAX_URI_BYTES + 1, 10, Some(414)),
            (10, MAX_HEADER_BYTES, None),
            (10, MAX_HEADER_BYTES + 1, Some(431)),
            (MAX_URI_BYTES + 1, MAX_HEADER_BYTES + 1, Some(414)),
        ];
        for (uri, header_bytes, expected) in cases {
            let got = check(uri, &headers_of(header_bytes))
                .err()
                .map(|e| e.status().as_u16());
            assert_eq!(got, expected, "uri {uri}, headers {header_bytes}");
        }
        for (fields, expected) in [(MAX_HEADERS, None), (MAX_HEADERS + 1, Some(431))] {
            let mut map = HeaderMap::new();
            for i in 0..fields {
                map.insert(
                    HeaderName::try_from(format!("x-h{i}")).unwrap(),
                    HeaderValue::from_static("v"),
                );
            }
            let got = check(10, &map).err().map(|e| e.status().as_u16());
            assert_eq!(got, expected, "{fields} fields");
        }
    }
}
