//! Validation: JSON Schema first, then the checks a schema cannot express.
//! (Skeleton: the validator work fills this in.)

use crate::{Diagnostic, Manifest};

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
pub fn validate(_source: &str) -> Result<Validated, Rejected> {
    unimplemented!("filled in by the manifests-schema work")
}
