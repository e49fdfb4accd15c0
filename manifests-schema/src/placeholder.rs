//! Finds unfiltered Maven resource placeholders such as `@project.version@`.
//!
//! Java projects keep `cumulocity.json` as a template that Maven resource filtering completes;
//! an unfiltered copy is not a valid upload, and saying so beats a pattern error.

use serde_json::Value;

use crate::findings::{Findings, field_label};
use crate::locate::escape_token;

/// Reports every string value that is a whole `@name@` placeholder.
pub(crate) fn report_placeholders(value: &Value, pointer: &mut String, findings: &mut Findings) {
    match value {
        Value::String(text) if is_placeholder(text) => {
            let label = field_label(pointer);
            let replacement = if pointer == "/version" {
                "a real version"
            } else {
                "a real value"
            };
            findings.error(
                pointer,
                format!(
                    "`{label}` is the unfiltered Maven placeholder {text}: run Maven resource filtering (or replace it with {replacement}) before packaging"
                ),
            );
        }
        Value::Object(object) => {
            for (key, child) in object {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(key));
                report_placeholders(child, pointer, findings);
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                report_placeholders(child, pointer, findings);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// `^@[A-Za-z0-9_.-]+@$`
fn is_placeholder(text: &str) -> bool {
    text.strip_prefix('@')
        .and_then(|rest| rest.strip_suffix('@'))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::is_placeholder;

    #[test]
    fn placeholders() {
        for text in ["@project.version@", "@resources.cpu@", "@a@", "@x_y-z.1@"] {
            assert!(is_placeholder(text), "{text}");
        }
        for text in [
            "@@",
            "@",
            "project.version",
            "@a b@",
            "1.0.0@x@",
            "@a@b",
            "me@example.com",
        ] {
            assert!(!is_placeholder(text), "{text}");
        }
    }
}
