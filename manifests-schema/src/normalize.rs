//! Tolerated spellings, rewritten (with a warning) before the schema sees the manifest.

use serde_json::{Map, Value};

use crate::findings::{Findings, OAS_REQUESTED_RESOURCES};

/// Rewrites `requestResources` (the OAS spelling) to `requestedResources`, and lowercase
/// `scale` values (old documentation used `"auto"`) to upper case, warning about each.
pub(crate) fn normalize(manifest: &mut Map<String, Value>, findings: &mut Findings) {
    alias_requested_resources(manifest, findings);
    upper_case_scale(manifest, findings);
}

fn alias_requested_resources(manifest: &mut Map<String, Value>, findings: &mut Findings) {
    if !manifest.contains_key(OAS_REQUESTED_RESOURCES) {
        return;
    }
    let pointer = format!("/{OAS_REQUESTED_RESOURCES}");
    if manifest.contains_key("requestedResources") {
        findings.warning(
            &pointer,
            "`requestResources` (the OAS spelling) is ignored because `requestedResources` is also given: remove it",
        );
        return;
    }
    // Rebuild the map to keep the key's position (source order is preserved everywhere).
    let entries = std::mem::take(manifest);
    for (key, value) in entries {
        let key = if key == OAS_REQUESTED_RESOURCES {
            "requestedResources".to_owned()
        } else {
            key
        };
        manifest.insert(key, value);
    }
    findings.requested_resources_alias = true;
    findings.warning(
        &pointer,
        "`requestResources` is the OAS spelling: read as `requestedResources`, which is the documented name; rename it",
    );
}

fn upper_case_scale(manifest: &mut Map<String, Value>, findings: &mut Findings) {
    let Some(Value::String(scale)) = manifest.get_mut("scale") else {
        return;
    };
    let upper = scale.to_ascii_uppercase();
    if upper != *scale && (upper == "AUTO" || upper == "NONE") {
        findings.warning(
            "/scale",
            format!("`scale` {scale:?} read as \"{upper}\": write it in upper case"),
        );
        *scale = upper;
    }
}
