//! Human and JSON renderings of what the commands found. The JSON field names are a stable
//! interface for scripts (see the field list in `json_inspection`).

use std::fmt::Write as _;
use std::path::Path;

use manifests_schema::{Diagnostic, Manifest, Probe, ProbeHandler, Severity};
use serde_json::{Value, json};

use crate::image_archive::ImageSummary;
use crate::package::{Inspection, PackageError, Packed};
use crate::temp_cleanup::PartialOutput;

fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    json!({
        "severity": diagnostic.severity.to_string(),
        "line": diagnostic.line,
        "column": diagnostic.column,
        "pointer": diagnostic.pointer,
        "message": diagnostic.message,
    })
}

fn diagnostics_of(inspection: &Inspection) -> &[Diagnostic] {
    match &inspection.manifest {
        Ok(validated) => &validated.warnings,
        Err(rejected) => &rejected.diagnostics,
    }
}

/// The one-line reason an inspection is invalid, if it is.
fn invalid_reason(inspection: &Inspection) -> Option<String> {
    if let Some(Err(error)) = &inspection.image {
        return Some(format!("image.tar: {error}"));
    }
    if let Err(rejected) = &inspection.manifest {
        let errors = rejected
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        return Some(format!(
            "invalid manifest ({errors} error{})",
            if errors == 1 { "" } else { "s" }
        ));
    }
    None
}

/// JSON for `validate` and `inspect`. Fields: `file`, `kind` (`manifest`|`package`),
/// `valid`, `error` (one-line reason or null), `diagnostics` (`severity`, `line`, `column`,
/// `pointer`, `message`), `manifest` (resolved manifest or null), `image` (`format`, `tags`,
/// `os`, `architecture`, `config_digest`, `layer_count`, `layer_bytes`, `tar_bytes`, or
/// null), `package` (`zip_bytes`, `entries` [`name`, `method`, `compressed_bytes`,
/// `uncompressed_bytes`, `crc32`], `notes`, or null).
pub fn json_inspection(inspection: &Inspection) -> Value {
    let manifest = inspection
        .manifest
        .as_ref()
        .ok()
        .map(|validated| validated.manifest.to_json());
    let image = match &inspection.image {
        Some(Ok(summary)) => serde_json::to_value(summary).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({
        "file": inspection.file.display().to_string(),
        "kind": if inspection.package.is_some() { "package" } else { "manifest" },
        "valid": inspection.is_valid(),
        "error": invalid_reason(inspection),
        "diagnostics": diagnostics_of(inspection).iter().map(diagnostic_json).collect::<Vec<_>>(),
        "manifest": manifest,
        "image": image,
        "package": inspection.package.as_ref().map(|listing| serde_json::to_value(listing).unwrap_or(Value::Null)),
    })
}

/// JSON for an input that could not be examined at all (same top-level fields).
pub fn json_failure(file: &Path, error: &PackageError) -> Value {
    failure_document(
        Some(file),
        &error.to_string(),
        error.diagnostics().iter().map(diagnostic_json).collect(),
    )
}

/// The failure shape of `pack`, `validate` and `inspect`: [`json_inspection`]'s fields, with
/// `valid` false and nothing examined.
fn failure_document(file: Option<&Path>, error: &str, diagnostics: Vec<Value>) -> Value {
    json!({
        "file": file.map(|file| file.display().to_string()),
        "kind": Value::Null,
        "valid": false,
        "error": error,
        "diagnostics": diagnostics,
        "manifest": Value::Null,
        "image": Value::Null,
        "package": Value::Null,
    })
}

/// JSON for a `pack` of `manifest` that `signal` (`SIGINT`, `SIGTERM`) interrupted, in the
/// failure shape of [`json_failure`]: `error` names the signal and what became of the partial
/// output.
pub fn json_interrupted(manifest: &Path, signal: &str, partial: &PartialOutput) -> Value {
    let error = match partial {
        PartialOutput::NoneWritten => format!("interrupted by {signal}; no output was written"),
        PartialOutput::Removed(path) => format!(
            "interrupted by {signal}; the partial output {} was removed",
            path.display()
        ),
        PartialOutput::NotRemoved { path, error } => format!(
            "interrupted by {signal}; the partial output {} could not be removed: {error}",
            path.display()
        ),
    };
    failure_document(Some(manifest), &error, Vec::new())
}

/// JSON for a successful `pack`: `output`, `zip_bytes`, `name`, `version`, `image`
/// (as above), `image_tar` (`uncompressed_bytes`, `compressed_bytes`, `crc32`), `warnings`.
pub fn json_packed(packed: &Packed) -> Value {
    json!({
        "output": packed.path.display().to_string(),
        "zip_bytes": packed.zip_bytes,
        "name": packed.manifest.name,
        "version": packed.manifest.version,
        "image": serde_json::to_value(&packed.image).unwrap_or(Value::Null),
        "image_tar": {
            "uncompressed_bytes": packed.image_entry.uncompressed,
            "compressed_bytes": packed.image_entry.compressed,
            "crc32": format!("{:08x}", packed.image_entry.crc32),
        },
        "warnings": packed.warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
    })
}

/// Diagnostics as `<origin>: error at 3:14 /resources/cpu: message`, one per line.
pub fn human_diagnostics(origin: &str, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|diagnostic| format!("{origin}: {diagnostic}\n"))
        .collect()
}

/// `validate`: a verdict line plus the diagnostics.
pub fn human_validation(inspection: &Inspection) -> String {
    let mut out = String::new();
    let file = inspection.file.display();
    match invalid_reason(inspection) {
        Some(reason) => {
            let _ = writeln!(out, "{file}: invalid: {reason}");
        }
        None => {
            let what = match (&inspection.manifest, &inspection.image) {
                (Ok(validated), Some(Ok(image))) => {
                    format!(
                        "package {}, image {}",
                        manifest_title(&validated.manifest),
                        image_title(image)
                    )
                }
                (Ok(validated), _) => format!("manifest {}", manifest_title(&validated.manifest)),
                _ => String::new(),
            };
            let _ = writeln!(out, "{file}: valid ({what})");
        }
    }
    out.push_str(&human_diagnostics(
        &inspection.manifest_origin,
        diagnostics_of(inspection),
    ));
    if let Some(listing) = &inspection.package {
        for note in &listing.notes {
            let _ = writeln!(out, "{file}: note: {note}");
        }
    }
    out
}

fn manifest_title(manifest: &Manifest) -> String {
    format!(
        "{} {}",
        manifest.name.as_deref().unwrap_or("(unnamed)"),
        manifest.version
    )
}

fn image_title(image: &ImageSummary) -> String {
    let tags = if image.tags.is_empty() {
        "untagged".to_owned()
    } else {
        image.tags.join(", ")
    };
    format!(
        "{}/{}, {} layers, {tags}",
        image.os, image.architecture, image.layer_count
    )
}

/// Bytes with a binary unit, e.g. `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn probe_text(probe: &Probe) -> String {
    let handler = match &probe.handler {
        ProbeHandler::HttpGet {
            path, port, scheme, ..
        } => format!("{scheme} GET :{port}{path}"),
        ProbeHandler::TcpSocket { port, .. } => format!("tcp :{port}"),
        ProbeHandler::Exec { command } => format!("exec {}", command.join(" ")),
    };
    format!(
        "{handler} (delay {}s, period {}s, timeout {}s, failures {})",
        probe.initial_delay_seconds,
        probe.period_seconds,
        probe.timeout_seconds,
        probe.failure_threshold
    )
}

/// The spelling a value has in JSON (`MULTI_TENANT`, `docker-save`).
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        _ => String::new(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// `inspect`: everything known about the package, defaults resolved.
pub fn human_inspection(inspection: &Inspection) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key:<20}{value}");
    };
    line("file", inspection.file.display().to_string());
    line(
        "valid",
        if inspection.is_valid() {
            "yes".to_owned()
        } else {
            "no".to_owned()
        },
    );
    if let Some(listing) = &inspection.package {
        line("zip size", human_bytes(listing.zip_bytes));
        for entry in &listing.entries {
            line(
                "entry",
                format!(
                    "{} {} {} -> {} (crc32 {})",
                    entry.name,
                    entry.method,
                    human_bytes(entry.uncompressed_bytes),
                    human_bytes(entry.compressed_bytes),
                    entry.crc32
                ),
            );
        }
    }
    if let Ok(validated) = &inspection.manifest {
        let m = &validated.manifest;
        line(
            "name",
            m.name
                .clone()
                .unwrap_or_else(|| "(from the zip file name)".to_owned()),
        );
        line(
            "version",
            format!(
                "{}{}",
                m.version,
                if m.is_snapshot() { " (snapshot)" } else { "" }
            ),
        );
        line(
            "apiVersion",
            format!("{} (v{})", m.api_version, m.api_version_number()),
        );
        line("provider", m.provider.name.clone());
        line(
            "contextPath",
            m.context_path
                .clone()
                .unwrap_or_else(|| "(the name)".to_owned()),
        );
        line("isolation", wire_name(&m.isolation));
        line("scale", wire_name(&m.scale));
        line("replicas", m.replicas.to_string());
        line("billingMode", wire_name(&m.billing_mode));
        line(
            "resources",
            format!(
                "cpu {} memory {}",
                m.resources.cpu.text, m.resources.memory.text
            ),
        );
        line(
            "requestedResources",
            format!(
                "cpu {} memory {}",
                m.requested_resources.cpu.text, m.requested_resources.memory.text
            ),
        );
        line("requiredRoles", list_or_none(&m.required_roles));
        line("roles", list_or_none(&m.roles));
        line(
            "settings",
            list_or_none(&m.settings.iter().map(|s| s.key.clone()).collect::<Vec<_>>()),
        );
        line(
            "livenessProbe",
            m.liveness_probe
                .as_ref()
                .map_or("(none)".to_owned(), probe_text),
        );
        line(
            "readinessProbe",
            m.readiness_probe
                .as_ref()
                .map_or("(none)".to_owned(), probe_text),
        );
    }
    match &inspection.image {
        Some(Ok(image)) => {
            line("image format", wire_name(&image.format));
            line("image tags", list_or_none(&image.tags));
            line("platform", format!("{}/{}", image.os, image.architecture));
            line(
                "layers",
                format!("{} ({})", image.layer_count, human_bytes(image.layer_bytes)),
            );
            line("image.tar size", human_bytes(image.tar_bytes));
            line("image id", image.config_digest.clone());
        }
        Some(Err(error)) => line("image", format!("invalid: {error}")),
        None => {}
    }
    out.push_str(&human_diagnostics(
        &inspection.manifest_origin,
        diagnostics_of(inspection),
    ));
    if let Some(listing) = &inspection.package {
        for note in &listing.notes {
            let _ = writeln!(out, "note: {note}");
        }
    }
    out
}

/// `pack`: what was written.
pub fn human_packed(packed: &Packed) -> String {
    let ratio = if packed.image_entry.uncompressed == 0 {
        100.0
    } else {
        packed.image_entry.compressed as f64 * 100.0 / packed.image_entry.uncompressed as f64
    };
    format!(
        "wrote {} ({}): {} with image {} (image.tar {} -> {}, {ratio:.0}%)\n",
        packed.path.display(),
        human_bytes(packed.zip_bytes),
        manifest_title(&packed.manifest),
        image_title(&packed.image),
        human_bytes(packed.image_entry.uncompressed),
        human_bytes(packed.image_entry.compressed),
    )
}

/// JSON for `deploy`. Fields: `id`, `name`, `version`, `created`, `activeVersionId`, `subscribed`.
pub fn json_deployed(deployed: &crate::deploy::Deployed) -> Value {
    json!({
        "id": deployed.id,
        "name": deployed.name,
        "version": deployed.version,
        "created": deployed.created,
        "activeVersionId": deployed.active_version_id,
        "subscribed": deployed.subscribed,
    })
}

/// JSON for `subscribe`. Fields: `id`, `tenant`, `alreadySubscribed`.
pub fn json_subscribed(subscribed: &crate::deploy::Subscribed) -> Value {
    json!({
        "id": subscribed.id,
        "tenant": subscribed.tenant,
        "alreadySubscribed": subscribed.already,
    })
}

/// JSON for a failed `deploy`/`subscribe`, settings errors included: `error` (one line), `status`
/// (the platform's HTTP status or null), `validation` (the `validate` JSON when the package was
/// invalid, or null), `id` and `subscribed` (the application and the tenants subscribed when the
/// upload worked but a subscription failed, else null).
pub fn json_deploy_failure(error: &crate::deploy::DeployError) -> Value {
    let validation = match error {
        crate::deploy::DeployError::Invalid(inspection) => json_inspection(inspection),
        _ => Value::Null,
    };
    let deployed = error.deployed();
    json!({
        "error": error.to_string(),
        "status": error.status(),
        "validation": validation,
        "id": deployed.map(|(id, _)| id),
        "subscribed": deployed.map(|(_, tenants)| tenants),
    })
}

/// JSON for a command line clap refused, in the failure shape of `command` (`pack`, `validate`
/// and `inspect` as [`json_failure`], `deploy` and `subscribe` as [`json_deploy_failure`]),
/// else just `error`.
pub fn json_usage_failure(command: Option<&str>, message: &str) -> Value {
    match command {
        Some("pack" | "validate" | "inspect") => failure_document(None, message, Vec::new()),
        Some("deploy" | "subscribe") => json!({
            "error": message,
            "status": Value::Null,
            "validation": Value::Null,
            "id": Value::Null,
            "subscribed": Value::Null,
        }),
        _ => json!({ "error": message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_rendered_with_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (5 << 30, "5.0 GiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(human_bytes(bytes), expected);
        }
    }

    #[test]
    fn an_interruption_has_the_failure_shape() {
        let manifest = Path::new("cumulocity.json");
        let removed = PartialOutput::Removed(".berth-pack-1.zip.tmp".into());
        let document = json_interrupted(manifest, "SIGTERM", &removed);
        let usage = json_usage_failure(Some("pack"), "x");
        let keys = |value: &Value| {
            value
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&document), keys(&usage));
        assert_eq!(document["file"], "cumulocity.json");
        assert_eq!(document["valid"], false);
        assert_eq!(
            document["error"],
            "interrupted by SIGTERM; the partial output .berth-pack-1.zip.tmp was removed"
        );
        let none = json_interrupted(manifest, "SIGINT", &PartialOutput::NoneWritten);
        assert_eq!(
            none["error"],
            "interrupted by SIGINT; no output was written"
        );
    }
}
