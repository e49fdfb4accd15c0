//! Collects diagnostics while validating, placing each at its value's line/column.

use crate::locate::SourceMap;
use crate::{Diagnostic, Severity};

/// The key the OAS uses for `requestedResources`; read as an alias (see `normalize`).
pub(crate) const OAS_REQUESTED_RESOURCES: &str = "requestResources";

/// At most this many errors, and as many warnings, are reported: a hostile manifest can make
/// thousands, each with a pointer and a message, and nobody reads past the first screen.
pub(crate) const MAX_REPORTED: usize = 50;

/// Diagnostics found so far, with the source map that positions them.
#[derive(Debug)]
pub(crate) struct Findings<'a> {
    map: SourceMap<'a>,
    diagnostics: Vec<Diagnostic>,
    /// Errors and warnings found beyond `MAX_REPORTED` (not kept, not located).
    omitted_errors: bool,
    omitted_warnings: bool,
    /// Set when `requestResources` was read as `requestedResources`: pointers into the
    /// renamed value are reported with the spelling the source text uses.
    pub(crate) requested_resources_alias: bool,
}

impl<'a> Findings<'a> {
    pub(crate) fn new(map: SourceMap<'a>) -> Self {
        Findings {
            map,
            diagnostics: Vec::new(),
            omitted_errors: false,
            omitted_warnings: false,
            requested_resources_alias: false,
        }
    }

    pub(crate) fn error(&mut self, pointer: &str, message: impl Into<String>) {
        self.push(pointer, Severity::Error, message.into());
    }

    pub(crate) fn warning(&mut self, pointer: &str, message: impl Into<String>) {
        self.push(pointer, Severity::Warning, message.into());
    }

    /// Adds a diagnostic whose position is already known (JSON syntax errors).
    pub(crate) fn push_at(&mut self, line: usize, column: usize, message: String) {
        self.diagnostics.push(Diagnostic {
            pointer: String::new(),
            line,
            column,
            severity: Severity::Error,
            message,
        });
    }

    fn push(&mut self, pointer: &str, severity: Severity, message: String) {
        let pointer = self.source_pointer(pointer);
        let message = cut_middle(message);
        let mut kept = 0;
        for d in &self.diagnostics {
            if d.severity == severity {
                if d.pointer == pointer && d.message == message {
                    return;
                }
                kept += 1;
            }
        }
        if kept >= MAX_REPORTED {
            match severity {
                Severity::Error => self.omitted_errors = true,
                Severity::Warning => self.omitted_warnings = true,
            }
            return;
        }
        // Located in `into_sorted`, all in one walk of the text.
        self.diagnostics.push(Diagnostic {
            pointer,
            line: 0,
            column: 0,
            severity,
            message,
        });
    }

    /// Whether no further error would be reported (callers may stop looking for more).
    pub(crate) fn errors_full(&self) -> bool {
        self.omitted_errors
    }

    /// Whether an error was already reported at exactly `pointer`.
    pub(crate) fn has_error_at(&self, pointer: &str) -> bool {
        let pointer = self.source_pointer(pointer);
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && d.pointer == pointer)
    }

    /// Whether anything (error or warning) was already reported at exactly `pointer`.
    pub(crate) fn has_any_at(&self, pointer: &str) -> bool {
        let pointer = self.source_pointer(pointer);
        self.diagnostics.iter().any(|d| d.pointer == pointer)
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.omitted_errors
            || self
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics in source order (then errors before warnings at the same place), then
    /// one note per severity that had more than `MAX_REPORTED`.
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        let unplaced: Vec<usize> = (0..self.diagnostics.len())
            .filter(|&i| self.diagnostics[i].line == 0)
            .collect();
        let pointers: Vec<&str> = unplaced
            .iter()
            .map(|&i| self.diagnostics[i].pointer.as_str())
            .collect();
        let positions = self.map.positions(&pointers);
        for (i, (line, column)) in unplaced.into_iter().zip(positions) {
            self.diagnostics[i].line = line;
            self.diagnostics[i].column = column;
        }
        self.diagnostics.sort_by(|a, b| {
            (a.line, a.column, b.severity, &a.pointer)
                .cmp(&(b.line, b.column, a.severity, &b.pointer))
        });
        for (omitted, severity, kind) in [
            (self.omitted_errors, Severity::Error, "errors"),
            (self.omitted_warnings, Severity::Warning, "warnings"),
        ] {
            if omitted {
                self.diagnostics.push(Diagnostic {
                    pointer: String::new(),
                    line: 1,
                    column: 1,
                    severity,
                    message: format!(
                        "more {kind} were found than are listed: only the first {MAX_REPORTED} are shown; fix them and validate again to see the rest"
                    ),
                });
            }
        }
        self.diagnostics
    }

    fn source_pointer(&self, pointer: &str) -> String {
        match pointer.strip_prefix("/requestedResources") {
            Some(rest)
                if self.requested_resources_alias && (rest.is_empty() || rest.starts_with('/')) =>
            {
                format!("/{OAS_REQUESTED_RESOURCES}{rest}")
            }
            _ => pointer.to_owned(),
        }
    }
}

/// How a pointer is named in messages: `/resources/cpu` is `resources.cpu`,
/// `/settings/0/key` is `settings[0].key`.
pub(crate) fn field_label(pointer: &str) -> String {
    let mut label = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            label.push_str(&format!("[{token}]"));
        } else {
            if !label.is_empty() {
                label.push('.');
            }
            label.push_str(&token);
        }
    }
    if label.is_empty() {
        "the manifest".to_owned()
    } else {
        shorten(&label)
    }
}

/// Messages longer than this (in characters) lose their middle: a value quoted in full can be
/// a megabyte, and the hint on what to fix comes at the end.
const MAX_MESSAGE_CHARS: usize = 600;

fn cut_middle(message: String) -> String {
    if message.chars().nth(MAX_MESSAGE_CHARS).is_none() {
        return message;
    }
    let head: String = message.chars().take(MAX_MESSAGE_CHARS / 2).collect();
    let tail_start = message
        .char_indices()
        .rev()
        .nth(MAX_MESSAGE_CHARS / 3 - 1)
        .map_or(0, |(i, _)| i);
    format!("{head} [...] {}", &message[tail_start..])
}

/// Names longer than this are cut short in messages (the pointer still has them whole).
const MAX_NAME_CHARS: usize = 80;

/// `text`, or its first characters and `...` if it is longer than `MAX_NAME_CHARS`: a hostile
/// key can be a megabyte long, and each message naming it would repeat it.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_NAME_CHARS) {
        None => text.to_owned(),
        Some(_) => {
            let cut = text
                .char_indices()
                .nth(MAX_NAME_CHARS - 3)
                .map_or(text.len(), |(i, _)| i);
            format!("{}...", &text[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_at_most_max_per_severity_then_a_note() {
        // (errors pushed, warnings pushed) → (errors kept, warnings kept, notes)
        let cases = [
            (0, 0, 0, 0, 0),
            (MAX_REPORTED, MAX_REPORTED, MAX_REPORTED, MAX_REPORTED, 0),
            (MAX_REPORTED + 1, 0, MAX_REPORTED, 0, 1),
            (0, 10_000, 0, MAX_REPORTED, 1),
            (10_000, 10_000, MAX_REPORTED, MAX_REPORTED, 2),
        ];
        for (errors, warnings, kept_errors, kept_warnings, notes) in cases {
            let text = "{\"a\": [0]}";
            let mut findings = Findings::new(SourceMap::new(text));
            for i in 0..errors {
                findings.error("/a/0", format!("e{i}"));
                findings.error("/a/0", format!("e{i}")); // duplicates count once
            }
            for i in 0..warnings {
                findings.warning("/a", format!("w{i}"));
            }
            assert_eq!(findings.has_errors(), errors > 0);
            assert_eq!(findings.errors_full(), errors > MAX_REPORTED);
            let all = findings.into_sorted();
            let count = |severity, note: bool| {
                all.iter()
                    .filter(|d| d.severity == severity && d.message.starts_with("more ") == note)
                    .count()
            };
            let case = format!("{errors} errors, {warnings} warnings");
            assert_eq!(count(Severity::Error, false), kept_errors, "{case}");
            assert_eq!(count(Severity::Warning, false), kept_warnings, "{case}");
            assert_eq!(
                count(Severity::Error, true) + count(Severity::Warning, true),
                notes,
                "{case}"
            );
            // Notes come last, after the positioned diagnostics.
            assert!(
                all.iter()
                    .skip(all.len() - notes)
                    .all(|d| d.message.starts_with("more "))
            );
        }
    }

    #[test]
    fn long_messages_keep_their_start_and_their_hint() {
        let long = format!("`roles[0]` {:?} is wrong: fix it", "é".repeat(5000));
        let cases = [
            ("short: fix it".to_owned(), "short: fix it".to_owned()),
            ("x".repeat(MAX_MESSAGE_CHARS), "x".repeat(MAX_MESSAGE_CHARS)),
            (
                "x".repeat(MAX_MESSAGE_CHARS + 1),
                format!("{} [...] {}", "x".repeat(300), "x".repeat(200)),
            ),
            (
                long.clone(),
                format!(
                    "{} [...] {}\" is wrong: fix it",
                    long.chars().take(300).collect::<String>(),
                    "é".repeat(200 - 18)
                ),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(cut_middle(message.clone()), expected, "{message:.40}");
        }
    }

    #[test]
    fn labels() {
        let long_pointer = format!("/{}/0", "ä".repeat(100));
        let long_label = format!("{}...", "ä".repeat(77));
        let cases: [(&str, &str); 7] = [
            ("", "the manifest"),
            ("/version", "version"),
            ("/resources/cpu", "resources.cpu"),
            ("/settings/0/key", "settings[0].key"),
            (
                "/livenessProbe/httpGet/headers/1/name",
                "livenessProbe.httpGet.headers[1].name",
            ),
            ("/a~1b", "a/b"),
            (&long_pointer, &long_label),
        ];
        for (pointer, expected) in cases {
            assert_eq!(field_label(pointer), expected);
        }
    }
}
