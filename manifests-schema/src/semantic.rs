//! Checks a JSON Schema cannot express: API version semantics, role naming, and probe timings
//! Berth runs other than written.

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
    for name in ["livenessProbe", "readinessProbe"] {
        if let Some(Value::Object(probe)) = manifest.get(name) {
            check_probe_timings(name, probe, findings);
        }
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

/// Berth ends a probe attempt after 60 s and runs an exec probe at most every 5 s (each is a
/// process the host starts outside the container's CPU limit); a manifest asking for more is
/// told, not refused, as Kubernetes would run it.
fn check_probe_timings(name: &str, probe: &Map<String, Value>, findings: &mut Findings) {
    let seconds = |key: &str| {
        probe
            .get(key)
            .and_then(Value::as_u64)
            .filter(|_| !findings.has_error_at(&format!("/{name}/{key}")))
    };
    let period = seconds("periodSeconds").filter(|p| *p < 5);
    let timeout = seconds("timeoutSeconds").filter(|t| *t > 60);
    if probe.contains_key("exec")
        && let Some(period) = period
    {
        findings.warning(
            &format!("/{name}/periodSeconds"),
            format!(
                "`{name}.periodSeconds` is {period}: Berth runs exec probes at most every 5 s (each starts a process on the host), so it acts as 5"
            ),
        );
    }
    if let Some(timeout) = timeout {
        findings.warning(
            &format!("/{name}/timeoutSeconds"),
            format!(
                "`{name}.timeoutSeconds` is {timeout}: Berth ends a probe attempt after 60 s, so it acts as 60"
            ),
        );
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
