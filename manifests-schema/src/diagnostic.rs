//! Diagnostics: one finding about a manifest, located in the source text.

use std::fmt;

/// How serious a finding is: errors reject the manifest, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// JSON Pointer (RFC 6901) of the offending value, `""` for the whole document.
    pub pointer: String,
    /// 1-based line of the offending VALUE (not its key) in the source text. A missing
    /// property is placed at its enclosing object; a JSON syntax error where the parser stopped.
    pub line: usize,
    /// 1-based column (in characters, a tab counts as one) of the offending value.
    pub column: usize,
    pub severity: Severity,
    /// What is wrong and how to fix it, in one sentence.
    pub message: String,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

impl fmt::Display for Diagnostic {
    /// `error at 3:14 /resources/cpu: <message>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(document)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "{} at {}:{} {}: {}",
            self.severity, self.line, self.column, pointer, self.message
        )
    }
}
