//! Validation: parse, recognise web-app manifests, normalise tolerated spellings, find Maven
//! placeholders, apply the JSON Schema, then the checks a schema cannot express.

use serde_json::Value;

use crate::findings::Findings;
use crate::locate::SourceMap;
use crate::{
    Diagnostic, Manifest, budget, explain, normalize, placeholder, resolve, resources, schema,
    semantic, webapp,
};

/// A manifest that passed: the typed manifest and any warnings (unknown keys, deprecated values).
#[derive(Debug, Clone)]
pub struct Validated {
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

/// A manifest that failed: every finding, errors and warnings, in source order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid manifest: {}", first_error(.diagnostics))]
pub struct Rejected {
    pub diagnostics: Vec<Diagnostic>,
}

fn first_error(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .find(|d| d.severity == crate::Severity::Error)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Parses and validates manifest text.
///
/// Every diagnostic is positioned at the value its pointer names (for a missing property: the
/// enclosing object). Warnings never reject; any error does.
pub fn validate(source: &str) -> Result<Validated, Rejected> {
    // Editors on Windows may save a byte-order mark; positions are counted after it.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    // Bounded before parsing: the parsed value and the schema's errors grow with the count.
    if let Some(excess) = budget::check(source) {
        let map = SourceMap::lines_only(source);
        let (line, column) = map.offset_position(excess.offset());
        let mut findings = Findings::new(map);
        findings.push_at(line, column, excess.message());
        return Err(reject(findings));
    }
    let mut manifest = match serde_json::from_str::<Value>(source) {
        Ok(Value::Object(manifest)) => manifest,
        Ok(other) => {
            let mut findings = Findings::new(SourceMap::new(source));
            findings.error(
                "",
                format!(
                    "the manifest must be a JSON object, got {}",
                    explain::show(&other)
                ),
            );
            return Err(reject(findings));
        }
        Err(error) => return Err(syntax_error(source, &error)),
    };
    let mut findings = Findings::new(SourceMap::new(source));
    if let Some(message) = webapp::web_app_message(&manifest) {
        findings.error("", message);
        return Err(reject(findings));
    }

    normalize::normalize(&mut manifest, &mut findings);
    let instance = Value::Object(manifest);
    placeholder::report_placeholders(&instance, &mut String::new(), &mut findings);
    for error in schema::VALIDATOR.iter_errors(&instance) {
        // Past the cap nothing more is reported: stop rather than explain thousands of errors.
        if findings.errors_full() {
            break;
        }
        explain::report(&error, &mut findings);
    }
    schema::warn_unknown_keys(&instance, &mut findings);
    let resolved_resources = match &instance {
        Value::Object(manifest) => {
            semantic::check(manifest, &mut findings);
            resources::resolve_resources(manifest, &mut findings)
        }
        _ => None,
    };

    if findings.has_errors() {
        return Err(reject(findings));
    }
    let built = resolved_resources
        .ok_or_else(|| "resources could not be resolved".to_owned())
        .and_then(|resources| resolve::resolve(instance, resources));
    match built {
        Ok(manifest) => Ok(Validated {
            manifest,
            warnings: findings.into_sorted(),
        }),
        Err(reason) => {
            findings.error("", format!("internal error: the manifest passed the schema but could not be read ({reason}); please report this"));
            Err(reject(findings))
        }
    }
}

fn reject(findings: Findings) -> Rejected {
    Rejected {
        diagnostics: findings.into_sorted(),
    }
}

/// A JSON syntax error as one diagnostic at serde_json's position.
fn syntax_error(source: &str, error: &serde_json::Error) -> Rejected {
    let map = SourceMap::lines_only(source);
    let (line, column) = map.line_byte_column(error.line(), error.column());
    let text = error.to_string();
    // serde_json appends " at line L column C", which the diagnostic already carries.
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(reason, _)| reason);
    let hint = if error.is_eof() {
        "the file ends too early: close every `{`, `[` and `\"`"
    } else {
        "fix the JSON syntax (a missing comma or quote, a trailing comma, or a comment, which JSON does not allow)"
    };
    let mut findings = Findings::new(map);
    findings.push_at(
        line,
        column,
        format!("the manifest is not valid JSON: {reason}; {hint}"),
    );
    reject(findings)
}
