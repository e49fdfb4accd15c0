//! Odd values in every field give diagnostics, never a panic or an internal error.

use manifests_schema::{Severity, validate};

use crate::manifest_with;

const FIELDS: &[&str] = &[
    "apiVersion",
    "name",
    "contextPath",
    "version",
    "provider",
    "billingMode",
    "isolation",
    "scale",
    "replicas",
    "resources",
    "requestedResources",
    "requestResources",
    "settings",
    "settingsCategory",
    "requiredRoles",
    "roles",
    "livenessProbe",
    "readinessProbe",
    "extensions",
];

const ODD_VALUES: &[&str] = &[
    "null",
    "true",
    "1.5",
    "-1",
    "0",
    "1e400",
    "18446744073709551616",
    "\"\"",
    "\"@x@\"",
    "[]",
    "[null]",
    "{}",
    "{\"cpu\": null}",
    "{\"httpGet\": null}",
    "[{}]",
];

#[test]
fn odd_values_in_every_field_are_diagnosed() {
    for field in FIELDS {
        for value in ODD_VALUES {
            let text = manifest_with(&format!("\"{field}\": {value}"));
            let diagnostics = match validate(&text) {
                Ok(validated) => validated.warnings,
                Err(rejected) => {
                    assert!(
                        rejected
                            .diagnostics
                            .iter()
                            .any(|d| d.severity == Severity::Error),
                        "{field}: {value}: rejected without an error"
                    );
                    rejected.diagnostics
                }
            };
            for diagnostic in diagnostics {
                assert!(
                    !diagnostic.message.contains("internal error"),
                    "{field}: {value}: {diagnostic}"
                );
                assert!(
                    diagnostic.line >= 1 && diagnostic.column >= 1,
                    "{field}: {value}: {diagnostic}"
                );
            }
        }
    }
}

#[test]
fn integral_floats_are_integers() {
    let text = manifest_with(
        r#""replicas": 2.0, "livenessProbe": {"httpGet": {"path": "/", "port": 8080.0}, "periodSeconds": 5.0}"#,
    );
    let manifest = validate(&text).unwrap().manifest;
    assert_eq!(manifest.replicas, 2);
    assert_eq!(manifest.liveness_probe.unwrap().period_seconds, 5);
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_crash() {
    let text = format!("{{\"x\": {}{}}}", "[".repeat(500), "]".repeat(500));
    let rejected = validate(&text).unwrap_err();
    assert!(
        rejected.diagnostics[0].message.contains("recursion limit"),
        "{}",
        rejected.diagnostics[0]
    );
}
