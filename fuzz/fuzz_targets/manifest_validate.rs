//! `cumulocity.json` validation (the packager's `validate` and the platform's upload check):
//! any text gives a verdict, never a panic, with a bounded list of diagnostics, and a rejected
//! manifest always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests_schema::Severity;

/// 50 errors, 50 warnings and one note per severity with more.
const MAX_DIAGNOSTICS: usize = 102;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let diagnostics = match manifests_schema::validate(text) {
        Ok(validated) => validated.warnings,
        Err(rejected) => {
            assert!(
                rejected
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error),
                "rejected without an error: {:?}",
                rejected.diagnostics
            );
            rejected.diagnostics
        }
    };
    assert!(
        diagnostics.len() <= MAX_DIAGNOSTICS,
        "{} diagnostics",
        diagnostics.len()
    );
    for d in &diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "unpositioned: {d}");
    }
});
