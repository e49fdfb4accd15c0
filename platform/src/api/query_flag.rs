//! Boolean query parameters (`hasVersions`, `onlyDevices`, `withSubusersCount`), read as
//! Cumulocity's Spring handlers read them: `true`/`false`, `on`/`off`, `yes`/`no`, `1`/`0`,
//! any case; empty or absent is unset; anything else is a 422 naming the parameter.

use std::collections::HashMap;

use super::error::ApiError;

pub fn flag(
    query: &HashMap<String, String>,
    name: &str,
    resource: &str,
) -> Result<Option<bool>, ApiError> {
    let Some(text) = query.get(name).map(|t| t.trim()) else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "on" | "yes" | "1" => Ok(Some(true)),
        "false" | "off" | "no" | "0" => Ok(Some(false)),
        _ => Err(ApiError::invalid(
            resource,
            &format!("{name} must be true or false, got {text:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spellings_spring_accepts() {
        let cases = [
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (Some("true"), Ok(Some(true))),
            (Some("TRUE"), Ok(Some(true))),
            (Some("yes"), Ok(Some(true))),
            (Some("1"), Ok(Some(true))),
            (Some("off"), Ok(Some(false))),
            (Some("False"), Ok(Some(false))),
            (Some("0"), Ok(Some(false))),
            (Some("maybe"), Err(())),
            (Some("2"), Err(())),
        ];
        for (value, want) in cases {
            let query = value
                .map(|v| [("onlyDevices".to_owned(), v.to_owned())].into())
                .unwrap_or_default();
            let got = super::flag(&query, "onlyDevices", "users").map_err(|_| ());
            assert_eq!(got, want, "{value:?}");
        }
    }
}
