//! Turns JSON Schema errors into messages that say what to fix, in the manifest's own terms.

use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::findings::{Findings, field_label};
use crate::quantity;
use crate::schema::{SCHEMA, resolve_ref};

/// Bounds at or above this are implementation limits, not worth naming in a message.
const UNREMARKABLE_MAXIMUM: f64 = 1_000_000.0;

/// Reports one schema error, unless something more specific was already reported at its place
/// (e.g. a Maven placeholder).
pub(crate) fn report(error: &ValidationError<'_>, findings: &mut Findings) {
    let pointer = error.instance_path().as_str().to_owned();
    // A more specific finding (a Maven placeholder) replaces the schema's complaint about the
    // same value; missing properties are reported on their object and always kept.
    let is_missing_property = matches!(error.kind(), ValidationErrorKind::Required { .. });
    if !is_missing_property && findings.has_error_at(&pointer) {
        return;
    }
    let label = field_label(&pointer);
    let instance = error.instance();
    let node = schema_node(error.schema_path().as_str());
    let message = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            missing_property(&pointer, property)
        }
        ValidationErrorKind::Type { .. } => type_mismatch(&label, node, instance),
        ValidationErrorKind::Enum { options } => {
            format!(
                "`{label}` must be one of {}, got {}",
                list(options),
                show(instance)
            )
        }
        ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => {
            out_of_range(&label, node, instance)
        }
        ValidationErrorKind::Pattern { .. } => pattern_mismatch(&pointer, &label, instance),
        ValidationErrorKind::MinLength { .. } => format!("`{label}` must not be empty"),
        ValidationErrorKind::MaxLength { limit } if pointer == "/version" => format!(
            "`version` may be at most {limit} characters long, it has {}: it becomes the image's Docker tag, which Docker allows no longer; use a shorter version",
            instance.as_str().map_or(0, |text| text.chars().count())
        ),
        ValidationErrorKind::MaxLength { limit } => {
            format!("`{label}` may be at most {limit} characters long")
        }
        ValidationErrorKind::MaxItems { limit } => format!(
            "`{label}` may list at most {limit} entries, it has {}",
            instance.as_array().map_or(0, Vec::len)
        ),
        ValidationErrorKind::MinItems { .. } => {
            format!(
                "`{label}` must not be empty: give the command and its arguments, e.g. [\"/bin/check\", \"--quick\"]"
            )
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => probe_handlers(&label, instance),
        _ => format!("`{label}`: {error}"),
    };
    findings.error(&pointer, message);
}

/// The schema object holding the failed keyword: `/$defs/port/maximum` gives `$defs.port`.
fn schema_node(schema_path: &str) -> &'static Value {
    let parent = schema_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    SCHEMA.pointer(parent).map_or(&Value::Null, resolve_ref)
}

fn missing_property(pointer: &str, property: &str) -> String {
    let owner = if pointer.is_empty() {
        String::new()
    } else {
        format!(" in `{}`", field_label(pointer))
    };
    let example = match property {
        "apiVersion" => ": add \"apiVersion\": \"2\"",
        "version" => ": add the service version, e.g. \"version\": \"1.0.0\"",
        "provider" => ": add \"provider\": {\"name\": \"<your company>\"}",
        "name" if pointer.ends_with("provider") => ": add the provider's \"name\"",
        "path" => ": add the path to probe, e.g. \"path\": \"/health\"",
        "command" => ": add the command to run, e.g. \"command\": [\"/bin/check\"]",
        "key" => ": add the option's \"key\"",
        "defaultValue" => ": add its \"defaultValue\" (a string)",
        "type" => ": add the extension's \"type\", e.g. \"prometheus.io\"",
        _ => "",
    };
    format!("missing required property `{property}`{owner}{example}")
}

fn type_mismatch(label: &str, node: &Value, instance: &Value) -> String {
    let expected = match node.get("type") {
        Some(Value::String(kind)) => with_article(kind),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(with_article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "another type".to_owned(),
    };
    let hint = match (node.get("type").and_then(Value::as_str), instance) {
        (Some("integer" | "number"), Value::String(text)) if text.parse::<f64>().is_ok() => {
            ": remove the quotes"
        }
        (Some("string"), Value::Number(_) | Value::Bool(_)) => ": put the value in quotes",
        (Some("integer"), Value::Number(_)) => ": use a whole number",
        (Some("object"), Value::String(_)) if label == "provider" => {
            ": write it as {\"name\": \"...\"}"
        }
        _ => "",
    };
    format!("`{label}` must be {expected}, got {}{hint}", show(instance))
}

fn out_of_range(label: &str, node: &Value, instance: &Value) -> String {
    let minimum = node.get("minimum").and_then(Value::as_f64);
    let maximum = node.get("maximum").and_then(Value::as_f64);
    let value = instance.as_f64();
    let bound = match (minimum, maximum) {
        (Some(min), Some(max)) if max < UNREMARKABLE_MAXIMUM => format!("between {min} and {max}"),
        (_, Some(max)) if value.is_some_and(|v| v > max) => format!("at most {max}"),
        (Some(min), _) => format!("at least {min}"),
        _ => "within range".to_owned(),
    };
    format!("`{label}` must be {bound}, got {}", show(instance))
}

fn pattern_mismatch(pointer: &str, label: &str, instance: &Value) -> String {
    let text = instance.as_str().unwrap_or_default();
    let field = pointer.rsplit('/').next().unwrap_or_default();
    match field {
        "name" if pointer == "/name" => format!(
            "Microservice application name is incorrect: {text:?} may only contain lowercase letters a-z, digits 0-9 and '-', and have 1 to 23 characters (it has {})",
            text.chars().count()
        ),
        "version" if text.contains('+') => format!(
            "`version` {text:?} carries build metadata (the part after '+'), which the platform does not allow: use e.g. \"1.2.3\" or \"1.2.3-rc.1\""
        ),
        "version" => format!(
            "`version` must be a SemVer version MAJOR.MINOR.PATCH with an optional -prerelease, e.g. \"1.0.0\" or \"1.0.0-SNAPSHOT\", got {text:?}"
        ),
        "cpu" => match quantity::parse_cpu(text) {
            Err(error) => format!("`{label}` {error}"),
            Ok(_) => format!("`{label}` must be decimal CPUs or millicores, got {text:?}"),
        },
        "memory" => match quantity::parse_memory(text) {
            Err(error) => format!("`{label}` {error}"),
            Ok(_) => {
                format!("`{label}` must be a whole number with an optional unit, got {text:?}")
            }
        },
        "contextPath" => format!(
            "`contextPath` may only contain letters, digits, '-', '.', '_' and '~', got {text:?}"
        ),
        "settingsCategory" => {
            format!("`settingsCategory` may only contain letters, digits and '.', got {text:?}")
        }
        "key" if pointer.starts_with("/settings/") => format!(
            "`{label}` {text:?} may not contain '/' or whitespace: it becomes a tenant option key, which /tenant/options/{{category}}/{{key}} must be able to name"
        ),
        _ => format!("`{label}` has an invalid format: {text:?}"),
    }
}

fn probe_handlers(label: &str, instance: &Value) -> String {
    let present: Vec<String> = ["httpGet", "tcpSocket", "exec"]
        .into_iter()
        .filter(|handler| instance.get(handler).is_some())
        .map(|handler| format!("`{handler}`"))
        .collect();
    if present.is_empty() {
        format!(
            "`{label}` has no handler: add exactly one of `httpGet` (e.g. {{\"path\": \"/health\"}}), `tcpSocket` or `exec`"
        )
    } else {
        format!(
            "`{label}` has {} handlers ({}): keep exactly one",
            present.len(),
            present.join(", ")
        )
    }
}

fn with_article(kind: &str) -> String {
    match kind {
        "integer" | "object" | "array" => format!("an {kind}"),
        "number" => "a number".to_owned(),
        _ => format!("a {kind}"),
    }
}

/// A value as it appears in a message: strings quoted, long values cut short.
pub(crate) fn show(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = value.to_string();
    if text.chars().count() > 40 {
        text = text.chars().take(37).collect::<String>() + "...";
    }
    match value {
        Value::String(_) | Value::Number(_) => text,
        _ => format!("{kind} {text}"),
    }
}

fn list(options: &Value) -> String {
    options
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
