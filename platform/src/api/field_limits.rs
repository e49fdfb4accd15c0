//! Bounds on the free text a client stores with users, groups, tenants and applications:
//! names have their own rules, but descriptions, e-mail addresses, phone numbers and
//! `customProperties` were bounded only by the 1 MiB body, and listings of up to 2000 items
//! load them all at once.

use serde_json::{Map, Value};

use super::error::ApiError;

/// Longest free-text field, in characters.
pub const MAX_TEXT: usize = 2048;
/// Largest `customProperties`, as JSON text.
pub const MAX_CUSTOM_PROPERTIES: usize = 16 * 1024;

/// A request body whose stored fields are bounded.
pub trait Bounded {
    /// 422 naming the first field over its bound.
    fn check_sizes(&self) -> Result<(), ApiError>;
}

/// Checks `texts` (field name, value) and `custom` for `resource`.
pub fn check(
    resource: &str,
    texts: &[(&str, Option<&str>)],
    custom: Option<&Map<String, Value>>,
) -> Result<(), ApiError> {
    for (field, value) in texts {
        if value.is_some_and(|v| v.chars().count() > MAX_TEXT) {
            return Err(ApiError::invalid(
                resource,
                &format!("{field} may be at most {MAX_TEXT} characters long"),
            ));
        }
    }
    if let Some(custom) = custom
        && serde_json::to_string(custom).map_or(usize::MAX, |json| json.len())
            > MAX_CUSTOM_PROPERTIES
    {
        return Err(ApiError::invalid(
            resource,
            &format!("customProperties may be at most {MAX_CUSTOM_PROPERTIES} bytes of JSON"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_within_their_bounds_pass_and_the_first_beyond_is_named() {
        let long = "é".repeat(MAX_TEXT + 1);
        let full = "é".repeat(MAX_TEXT);
        let mut custom = Map::new();
        custom.insert("k".into(), Value::String("v".repeat(MAX_CUSTOM_PROPERTIES)));
        type Case<'a> = (
            &'a [(&'a str, Option<&'a str>)],
            Option<&'a Map<String, Value>>,
            Option<&'a str>,
        );
        let cases: [Case<'_>; 4] = [
            (&[("email", Some(&full)), ("phone", None)], None, None),
            (
                &[("email", Some("a")), ("phone", Some(&long))],
                None,
                Some("phone"),
            ),
            (&[], Some(&custom), Some("customProperties")),
            (&[], Some(&Map::new()), None),
        ];
        for (texts, custom, refused) in cases {
            let got = check("users", texts, custom).err().map(|e| e.to_string());
            match refused {
                None => assert_eq!(got, None),
                Some(field) => assert!(got.is_some_and(|m| m.contains(field))),
            }
        }
    }
}
