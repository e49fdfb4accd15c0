//! The shipped JSON Schema and the Rust types agree: same property names at every level, and
//! every schema `default` is the value the validator fills in.
//!
//! Documented exception: `requestResources` (the OAS spelling) is read by the validator as an
//! alias of `requestedResources` but is not a schema property, so editors suggest only the
//! documented name.

use std::collections::BTreeSet;

use manifests_schema::{SCHEMA_JSON, validate};
use serde_json::Value;

fn schema() -> Value {
    serde_json::from_str(SCHEMA_JSON).unwrap()
}

fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => schema.pointer(reference.trim_start_matches('#')).unwrap(),
        None => node,
    }
}

/// Property names of the schema node at `pointer` (following a `$ref`).
fn schema_keys(schema: &Value, pointer: &str) -> BTreeSet<String> {
    let node = resolve(
        schema,
        schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer}")),
    );
    node["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// A manifest setting every optional field, with each probe handler used once.
fn everything_set(liveness: &str, readiness: &str) -> Value {
    let text = format!(
        r#"{{
  "apiVersion": "2", "name": "svc", "contextPath": "svc", "version": "1.0.0",
  "provider": {{"name": "Acme", "domain": "acme.example", "support": "help@acme.example"}},
  "billingMode": "RESOURCES", "isolation": "PER_TENANT", "scale": "AUTO", "replicas": 2,
  "resources": {{"cpu": "1", "memory": "1G"}}, "requestedResources": {{"cpu": "0.5", "memory": "512M"}},
  "settings": [{{"key": "k", "defaultValue": "v", "editable": true, "overwriteOnUpdate": false, "inheritFromOwner": false, "valueSchema": {{"type": "string"}}}}],
  "settingsCategory": "cat", "requiredRoles": ["ROLE_INVENTORY_READ"], "roles": ["ROLE_SVC_READ"],
  "livenessProbe": {liveness}, "readinessProbe": {readiness},
  "extensions": [{{"type": "prometheus.io"}}]
}}"#
    );
    let validated = validate(&text).unwrap_or_else(|r| panic!("{:#?}", r.diagnostics));
    assert!(validated.warnings.is_empty(), "{:#?}", validated.warnings);
    validated.manifest.to_json()
}

const TIMINGS: &str = r#""initialDelaySeconds": 1, "periodSeconds": 6, "successThreshold": 3, "timeoutSeconds": 4, "failureThreshold": 5"#;

#[test]
fn schema_properties_equal_serialized_manifest_keys() {
    let schema = schema();
    let http = format!(
        r#"{{"httpGet": {{"host": "h", "path": "/p", "port": 81, "scheme": "HTTPS", "headers": [{{"name": "n", "value": "v"}}]}}, {TIMINGS}}}"#
    );
    let tcp = format!(r#"{{"tcpSocket": {{"host": "h", "port": 82}}, {TIMINGS}}}"#);
    let exec = format!(r#"{{"exec": {{"command": ["c"]}}, {TIMINGS}}}"#);
    let first = everything_set(&http, &tcp);
    let second = everything_set(&exec, &tcp);

    assert_eq!(keys(&first), schema_keys(&schema, ""), "top level");
    assert_eq!(
        keys(&first["provider"]),
        schema_keys(&schema, "/$defs/provider"),
        "provider"
    );
    assert_eq!(
        keys(&first["resources"]),
        schema_keys(&schema, "/properties/resources"),
        "resources"
    );
    assert_eq!(
        keys(&first["requestedResources"]),
        schema_keys(&schema, "/properties/requestedResources"),
        "requestedResources"
    );
    assert_eq!(
        keys(&first["settings"][0]),
        schema_keys(&schema, "/$defs/setting"),
        "settings item"
    );
    assert_eq!(
        keys(&first["extensions"][0]),
        schema_keys(&schema, "/$defs/extension"),
        "extension"
    );

    let probe_keys: BTreeSet<String> = [
        &first["livenessProbe"],
        &first["readinessProbe"],
        &second["livenessProbe"],
    ]
    .into_iter()
    .flat_map(keys)
    .collect();
    assert_eq!(probe_keys, schema_keys(&schema, "/$defs/probe"), "probe");
    let probe = "/$defs/probe/properties";
    assert_eq!(
        keys(&first["livenessProbe"]["httpGet"]),
        schema_keys(&schema, &format!("{probe}/httpGet")),
        "httpGet"
    );
    assert_eq!(
        keys(&first["livenessProbe"]["httpGet"]["headers"][0]),
        schema_keys(
            &schema,
            &format!("{probe}/httpGet/properties/headers/items")
        ),
        "header"
    );
    assert_eq!(
        keys(&first["readinessProbe"]["tcpSocket"]),
        schema_keys(&schema, &format!("{probe}/tcpSocket")),
        "tcpSocket"
    );
    assert_eq!(
        keys(&second["livenessProbe"]["exec"]),
        schema_keys(&schema, &format!("{probe}/exec")),
        "exec"
    );
}

/// Compares every `default` under `node` with `resolved`, recursing where `resolved` has values.
fn check_defaults(
    schema: &Value,
    source: &Value,
    node: &Value,
    resolved: &Value,
    path: &str,
    checked: &mut usize,
) {
    let node = resolve(schema, node);
    if let (Some(properties), Some(object)) = (
        node.get("properties").and_then(Value::as_object),
        resolved.as_object(),
    ) {
        for (key, property) in properties {
            let property_path = format!("{path}/{key}");
            let property_node = resolve(schema, property);
            let default = property
                .get("default")
                .or_else(|| property_node.get("default"));
            // Values the source sets are not defaults.
            if let Some(default) = default.filter(|_| source.pointer(&property_path).is_none()) {
                assert_eq!(object.get(key), Some(default), "default of {property_path}");
                *checked += 1;
            }
            if let Some(value) = object.get(key) {
                check_defaults(schema, source, property, value, &property_path, checked);
            }
        }
    }
    if let (Some(items), Some(array)) = (node.get("items"), resolved.as_array()) {
        for (index, item) in array.iter().enumerate() {
            check_defaults(
                schema,
                source,
                items,
                item,
                &format!("{path}/{index}"),
                checked,
            );
        }
    }
}

#[test]
fn schema_defaults_are_the_defaults_applied() {
    let schema = schema();
    let minimal = r#"{
  "apiVersion": "2", "version": "1.0.0", "provider": {"name": "Acme"},
  "settings": [{"key": "k", "defaultValue": "v"}],
  "livenessProbe": {"httpGet": {"path": "/health"}},
  "readinessProbe": {"tcpSocket": {}}
}"#;
    let resolved = validate(minimal).unwrap().manifest.to_json();
    let source: Value = serde_json::from_str(minimal).unwrap();
    let mut checked = 0;
    check_defaults(&schema, &source, &schema, &resolved, "", &mut checked);
    // billingMode isolation scale replicas resources(+cpu, memory) requestedResources(+2)
    // requiredRoles roles extensions; setting x3; probe timings x5 x2; httpGet port scheme
    // headers; tcpSocket port.
    assert_eq!(checked, 13 + 3 + 10 + 3 + 1, "every default was compared");
}

#[test]
fn schema_uses_only_local_references() {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    if key == "$ref" {
                        found.push(child.as_str().unwrap().to_owned());
                    }
                    walk(child, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut references = Vec::new();
    walk(&schema(), &mut references);
    assert!(!references.is_empty());
    assert!(
        references.iter().all(|r| r.starts_with("#/$defs/")),
        "{references:?}"
    );
}

#[test]
fn every_schema_property_is_described() {
    fn walk(schema: &Value, node: &Value, path: &str) {
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, property) in properties {
            let resolved = resolve(schema, property);
            assert!(
                property
                    .get("description")
                    .or_else(|| resolved.get("description"))
                    .is_some(),
                "{path}/{key} has no description"
            );
            walk(schema, resolved, &format!("{path}/{key}"));
            if let Some(items) = resolved.get("items") {
                walk(
                    schema,
                    resolve(schema, items),
                    &format!("{path}/{key}/items"),
                );
            }
        }
    }
    let schema = schema();
    walk(&schema, &schema, "");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// The version's bound the schema states is the one the crate exports (the platform's tag rule).
#[test]
fn the_schema_bounds_versions_as_exported() {
    let schema = schema();
    assert_eq!(
        schema["properties"]["version"]["maxLength"].as_u64(),
        Some(manifests_schema::MAX_VERSION_LENGTH as u64)
    );
}
