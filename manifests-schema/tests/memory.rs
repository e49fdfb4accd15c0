//! Validating a hostile manifest of up to the upload limit (1 MiB) costs a small multiple of its
//! size in memory, whatever its shape, and reports a bounded number of diagnostics.
//!
//! Each shape runs in a child process of this binary (under `ulimit -v`, so a regression fails
//! the shape instead of exhausting the machine): the child reads its resident set before
//! validating and its high-water mark after, and prints the difference. Times are printed for
//! scale, never asserted.
//! Linux only (`/proc/self/status`).

use std::process::Command;

use manifests_schema::{Severity, validate};

/// The platform's and the packager's manifest size limit.
const LIMIT: usize = 1 << 20;
/// Memory a validation may add, per byte of manifest. A `serde_json::Value` per JSON value
/// (`[0,0,…]` is one value every two bytes) is most of it.
const BYTES_PER_INPUT_BYTE: usize = 16;
/// Allowance for the compiled schema, the allocator's arenas and the test harness.
const FIXED_ALLOWANCE: usize = 8 << 20;
/// Address space a child may use: a regression allocating gigabytes fails here.
const CHILD_ADDRESS_SPACE_KIB: usize = 4 << 20;
/// Diagnostics per severity the validator reports, plus one note about the rest.
const MAX_DIAGNOSTICS: usize = 2 * (50 + 1);
/// Messages name values and keys cut short: none repeats a hostile megabyte (600 characters
/// of up to 4 bytes).
const MAX_MESSAGE: usize = 2400;

/// Values per shape: just under the validator's bound on values (10 000).
const N: usize = 9_900;

/// `unit` repeated `n` times, comma-separated.
fn repeat(unit: &str, n: usize) -> String {
    let mut text = String::with_capacity((unit.len() + 1) * n);
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str(unit);
    }
    text
}

/// A manifest with `members` (JSON members without braces), padded to just under the limit
/// with one long string so every shape costs the same input size.
fn padded(members: &str) -> String {
    let head = format!(
        r#"{{"apiVersion":"2","version":"1.0.0","provider":{{"name":"Acme"}},{members},"pad":""#
    );
    let room = LIMIT
        .checked_sub(head.len() + 2)
        .expect("shape larger than the limit");
    format!("{head}{}\"}}", "x".repeat(room))
}

/// The room left for one long key in a manifest whose other members take `other` bytes.
fn key_room(other: usize) -> usize {
    LIMIT - other - 200
}

/// The hostile shapes, each at most the limit.
fn shape(name: &str) -> String {
    let zeros = repeat("0", N);
    match name {
        // The pointer of every element repeats the key: key length × array length.
        "long_key_times_long_array" => {
            let key = "k".repeat(key_room(zeros.len()));
            padded(&format!("\"{key}\":[{zeros}]"))
        }
        // `~` and `/` double in a JSON pointer.
        "escaped_key_times_long_array" => {
            let key = "~/".repeat(key_room(zeros.len()) / 2);
            padded(&format!("\"{key}\":[{zeros}]"))
        }
        // `\u` escapes in a key: keys are decoded where they are compared.
        "unicode_escaped_key_times_long_array" => {
            let key = "\\u007e".repeat(key_room(zeros.len()) / 6);
            padded(&format!("\"{key}\":[{zeros}]"))
        }
        // Objects nested to serde_json's limit under long keys, an array at the bottom: the
        // root object + 124 objects + the array + its elements are 127 levels.
        "nesting_at_the_limit" => {
            let depth = 124;
            let inner = repeat("[0]", N / 2 - depth);
            let key = "n".repeat(key_room(inner.len()) / depth - 4);
            let open = format!("\"{key}\":{{").repeat(depth);
            padded(&format!("{open}\"x\":[{inner}]{}", "}".repeat(depth)))
        }
        // Past serde_json's recursion limit: refused, not a stack overflow.
        "nesting_past_the_limit" => "[".repeat(LIMIT),
        // More values than the bound: refused before parsing.
        "too_many_values" => format!("[{}]", repeat("0", LIMIT / 2 - 1)),
        "too_many_members" => format!("{{{}}}", repeat("\"\":0", LIMIT / 5 - 1)),
        // One schema error per element, each with a pointer and a message.
        "many_type_errors" => padded(&format!("\"roles\":[{zeros}]")),
        "many_missing_properties" => padded(&format!("\"settings\":[{}]", repeat("{}", N))),
        "many_bad_probes" => padded(&format!(
            "\"livenessProbe\":{{\"httpGet\":{{\"path\":\"/\",\"headers\":[{}]}}}}",
            repeat("[]", N)
        )),
        // One unknown-key warning per key, each listing the known keys.
        "many_unknown_keys" => {
            let keys: String = (0..N).map(|i| format!("\"u{i}\":0,")).collect();
            padded(&format!(
                "\"extensions\":[],\"resources\":{{{keys}\"cpu\":\"1\"}}"
            ))
        }
        "many_placeholders" => padded(&format!("\"requiredRoles\":[{}]", repeat("\"@p@\"", N))),
        "many_bad_roles" => padded(&format!("\"roles\":[{}]", repeat("\"role\"", N))),
        // Long strings full of escapes, shown (cut short) in messages.
        "long_escaped_strings" => {
            let string = format!("\"{}\"", "\\u0001\\\"".repeat(1000));
            padded(&format!("\"roles\":[{}]", repeat(&string, 80)))
        }
        // Values quoted in messages: cut short, never repeated whole.
        "long_field_values" => {
            let long = "é".repeat(LIMIT / 10);
            padded(&format!(
                "\"name\":\"{long}\",\"contextPath\":\"{long}\",\"roles\":[\"{long}\"],\"requiredRoles\":[\"@{}@\"],\"{long}\":0",
                "p".repeat(LIMIT / 10)
            ))
        }
        "many_duplicate_keys" => padded(&repeat("\"version\":\"x\"", N)),
        other => panic!("unknown shape {other}"),
    }
}

const SHAPES: &[&str] = &[
    "long_key_times_long_array",
    "escaped_key_times_long_array",
    "unicode_escaped_key_times_long_array",
    "nesting_at_the_limit",
    "nesting_past_the_limit",
    "too_many_values",
    "too_many_members",
    "many_type_errors",
    "many_missing_properties",
    "many_bad_probes",
    "many_unknown_keys",
    "many_placeholders",
    "many_bad_roles",
    "long_escaped_strings",
    "long_field_values",
    "many_duplicate_keys",
];

fn status_field(name: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing in /proc/self/status"));
    let kib: usize = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

/// In the child: validates one shape and prints `<input bytes> <added peak bytes> <diagnostics>`.
fn child(name: &str) {
    let text = shape(name);
    // Compile the schema and fault in the code paths first: that cost is paid once per process.
    let _ = validate(r#"{"apiVersion":"2","version":"1.0.0","provider":{"name":"A"}}"#);
    let before = status_field("VmRSS:");
    let started = std::time::Instant::now();
    let result = validate(&text);
    let validating = started.elapsed();
    let peak = status_field("VmHWM:");
    // For scale only (never asserted): how long parsing alone takes.
    let started = std::time::Instant::now();
    let _ = serde_json::from_str::<serde_json::Value>(&text);
    let parsing = started.elapsed();
    let diagnostics = match &result {
        Ok(validated) => validated.warnings.clone(),
        Err(rejected) => rejected.diagnostics.clone(),
    };
    if let Err(rejected) = &result {
        assert!(
            rejected
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error),
            "rejected without an error"
        );
    }
    let longest_message = diagnostics.iter().map(|d| d.message.len()).max();
    println!(
        "{} {} {} {} {} {}",
        text.len(),
        peak.saturating_sub(before),
        diagnostics.len(),
        longest_message.unwrap_or(0),
        validating.as_micros(),
        parsing.as_micros()
    );
    drop(result);
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let (Some(flag), Some(name)) = (args.next(), args.next())
        && flag == "--shape"
    {
        child(&name);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut failures = Vec::new();
    for name in SHAPES {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {CHILD_ADDRESS_SPACE_KIB} && exec \"$0\" --shape {name}"
            ))
            .arg(&exe)
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<usize> = stdout
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let verdict = match (output.status.success(), fields.as_slice()) {
            (true, &[input, added, diagnostics, longest, validating, parsing]) => {
                let bound = BYTES_PER_INPUT_BYTE * input + FIXED_ALLOWANCE;
                println!(
                    "{name}: {input} bytes, peak +{added} bytes ({:.1} per input byte, bound {bound}), {diagnostics} diagnostics (longest message {longest} bytes), {validating} µs (parsing alone {parsing} µs)",
                    added as f64 / input as f64
                );
                if added > bound {
                    Some(format!("added {added} bytes, more than {bound}"))
                } else if diagnostics > MAX_DIAGNOSTICS {
                    Some(format!(
                        "{diagnostics} diagnostics, more than {MAX_DIAGNOSTICS}"
                    ))
                } else if longest > MAX_MESSAGE {
                    Some(format!(
                        "a message of {longest} bytes, more than {MAX_MESSAGE}"
                    ))
                } else {
                    None
                }
            }
            _ => Some(format!(
                "child failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        };
        if let Some(reason) = verdict {
            println!("{name}: FAILED: {reason}");
            failures.push(*name);
        }
    }
    assert!(failures.is_empty(), "shapes over budget: {failures:?}");
    println!("test result: ok. {} shapes within budget", SHAPES.len());
}
