//! Integration tests of `manifests_schema`: real manifests, a table of rules, resolved
//! defaults, positions, and agreement between the JSON Schema and the Rust types.

mod defaults;
mod positions;
mod real_manifests;
mod robustness;
mod rules;
mod schema_agreement;

use manifests_schema::{Diagnostic, Severity};

/// A minimal valid manifest with `extra` members (JSON text without braces) appended.
pub fn manifest_with(extra: &str) -> String {
    let mut text = String::from(
        "{\n  \"apiVersion\": \"2\",\n  \"version\": \"1.0.0\",\n  \"provider\": {\"name\": \"Acme\"}",
    );
    if !extra.is_empty() {
        text.push_str(",\n  ");
        text.push_str(extra);
    }
    text.push_str("\n}\n");
    text
}

/// `(pointer, severity, message fragment)` of an expected diagnostic.
pub type Expected<'a> = (&'a str, Severity, &'a str);

/// Asserts that `actual` holds exactly the expected diagnostics, in that order.
pub fn assert_diagnostics(case: &str, actual: &[Diagnostic], expected: &[Expected<'_>]) {
    let shown: Vec<String> = actual.iter().map(ToString::to_string).collect();
    assert_eq!(actual.len(), expected.len(), "{case}: got {shown:#?}");
    for (diagnostic, (pointer, severity, fragment)) in actual.iter().zip(expected) {
        assert_eq!(&diagnostic.pointer, pointer, "{case}: got {shown:#?}");
        assert_eq!(&diagnostic.severity, severity, "{case}: got {shown:#?}");
        assert!(
            diagnostic.message.contains(fragment),
            "{case}: {:?} lacks {fragment:?}",
            diagnostic.message
        );
    }
}
