//! Checks a JSON Schema cannot express: API version semantics and role naming.

use serde_json::{Map, Value};

use crate::findings::{Findings, shorten};

/// Warns about a deprecated (`1`) or unrecognised `apiVersion` and about provided roles the UI
/// will not show.
pub(crate) fn check(manifest: &Map<String, Value>, findings: &mut Findings) {
    if let Some(Value::String(api_version)) = manifest.get("apiVersion")
        && !findings.has_error_at("/apiVersion")
    {
        check_api_version(api_version, findings);
    }
    if let Some(Value::Array(roles)) = manifest.get("roles") {
        for (index, role) in roles.iter().enumerate() {
            if let Some(role) = role.as_str()
                && !role.is_empty()
                && !is_displayable_role(role)
            {
                findings.warning(
                    &format!("/roles/{index}"),
                    format!(
                        "role {:?} does not follow ROLE_<NAME>_READ, _ADMIN or _CREATE, so the UI will not show it for assignment",
                        shorten(role)
                    ),
                );
            }
        }
    }
}

fn check_api_version(api_version: &str, findings: &mut Findings) {
    let digits = api_version.strip_prefix('v').unwrap_or(api_version);
    let well_formed = digits
        .bytes()
        .next()
        .is_some_and(|b| (b'1'..=b'9').contains(&b))
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        findings.warning(
            "/apiVersion",
            format!(
                "`apiVersion` {api_version:?} is not a positive integer optionally prefixed by 'v', so it is treated as \"2\": write \"2\""
            ),
        );
    } else if digits == "1" {
        findings.warning(
            "/apiVersion",
            "`apiVersion` 1 is deprecated: Cumulocity gives its containers all default Linux capabilities, Berth only NET_BIND_SERVICE, as for \"2\"; a service that needs more (chown, setuid) fails on Berth: move to \"2\"",
        );
    }
}

/// `ROLE_<NAME>_(READ|ADMIN|CREATE)` with `<NAME>` of upper-case letters, digits and `_`.
fn is_displayable_role(role: &str) -> bool {
    let Some(rest) = role.strip_prefix("ROLE_") else {
        return false;
    };
    let name = ["_READ", "_ADMIN", "_CREATE"]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix));
    name.is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}
