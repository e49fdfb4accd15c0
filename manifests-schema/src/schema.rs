//! The shipped JSON Schema, parsed and compiled once, and the schema-driven unknown-key check.

use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::SCHEMA_JSON;
use crate::findings::{Findings, field_label, shorten};
use crate::locate::escape_token;

/// `cumulocity.schema.json` as a value (for looking up bounds, enums and properties).
pub(crate) static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    // The schema is a constant of this crate; `compiled_schema_is_valid` tests it.
    serde_json::from_str(SCHEMA_JSON).expect("cumulocity.schema.json is valid JSON")
});

/// The compiled draft 2020-12 validator.
pub(crate) static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    jsonschema::draft202012::options()
        .build(&SCHEMA)
        .expect("cumulocity.schema.json is a valid draft 2020-12 schema")
});

/// Resolves a local `$ref` (`#/$defs/...`), so callers see the referenced node's keywords.
pub(crate) fn resolve_ref(node: &Value) -> &Value {
    match node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(pointer) => SCHEMA.pointer(pointer).unwrap_or(node),
        None => node,
    }
}

/// Warns about keys the schema does not define, at every level where the schema lists
/// `properties` without saying `additionalProperties` (free-form objects say `true`).
/// Unknown keys never reject a manifest: real manifests carry them.
pub(crate) fn warn_unknown_keys(instance: &Value, findings: &mut Findings) {
    walk(&SCHEMA, instance, &mut String::new(), findings);
}

fn walk(node: &Value, instance: &Value, pointer: &mut String, findings: &mut Findings) {
    let node = resolve_ref(node);
    if let (Some(properties), Some(object)) = (
        node.get("properties").and_then(Value::as_object),
        instance.as_object(),
    ) {
        let free_form = node.get("additionalProperties").is_some();
        for (key, value) in object {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&escape_token(key));
            match properties.get(key) {
                Some(property) => walk(property, value, pointer, findings),
                None if free_form || findings.has_any_at(pointer) => {}
                None if len == 0 => findings.warning(
                    pointer,
                    format!(
                        "unknown key `{}` is not part of the microservice manifest: it is kept as is but Berth ignores it",
                        shorten(key)
                    ),
                ),
                None => findings.warning(
                    pointer,
                    format!(
                        "unknown key `{}` in `{}` is ignored (known keys: {})",
                        shorten(key),
                        field_label(&pointer[..len]),
                        properties.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
            pointer.truncate(len);
        }
    }
    if let (Some(items), Some(array)) = (node.get("items"), instance.as_array()) {
        for (index, value) in array.iter().enumerate() {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&index.to_string());
            walk(items, value, pointer, findings);
            pointer.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_schema_is_valid() {
        assert!(VALIDATOR.is_valid(&serde_json::json!({
            "apiVersion": "2", "version": "1.0.0", "provider": {"name": "me"}
        })));
        assert!(jsonschema::meta::is_valid(&SCHEMA));
    }
}
