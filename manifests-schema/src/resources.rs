//! `resources` (limits) and `requestedResources` (requests): defaults, minimums, and requests
//! capped at limits.

use serde_json::{Map, Value};

use crate::findings::Findings;
use crate::model::{Cpu, Memory, Resources};
use crate::quantity::{parse_cpu, parse_memory};

/// The smallest CPU limit the platform accepts, in millicores.
pub const MIN_CPU_LIMIT_MILLICORES: u64 = 100;
/// The smallest memory limit the platform accepts, in bytes (10M).
pub const MIN_MEMORY_LIMIT_BYTES: u64 = 10_000_000;

/// A quantity after defaults: `None` when it is invalid (and already reported).
struct Quantity<T> {
    value: Option<T>,
    explicit: bool,
}

/// Resolves limits and requests with defaults applied, or `None` if any quantity is invalid.
/// Reports errors for limits below the minimums, and a warning for an explicit request above
/// its limit; requests above limits (explicit or default) are lowered to the limit, as a
/// container cannot reserve more than it may use.
pub(crate) fn resolve_resources(
    manifest: &Map<String, Value>,
    findings: &mut Findings,
) -> Option<(Resources, Resources)> {
    let limits_default = Resources::default_limits();
    let requests_default = Resources::default_requests();
    let limit_cpu = cpu_at(manifest, "resources", &limits_default.cpu, findings);
    let limit_memory = memory_at(manifest, "resources", &limits_default.memory, findings);
    let request_cpu = cpu_at(
        manifest,
        "requestedResources",
        &requests_default.cpu,
        findings,
    );
    let request_memory = memory_at(
        manifest,
        "requestedResources",
        &requests_default.memory,
        findings,
    );

    if let Some(cpu) = &limit_cpu.value
        && cpu.millicores < MIN_CPU_LIMIT_MILLICORES
    {
        findings.error(
            "/resources/cpu",
            format!(
                "`resources.cpu` must be at least 100m (0.1 CPU), got {:?}",
                cpu.text
            ),
        );
    }
    if let Some(memory) = &limit_memory.value
        && memory.bytes < MIN_MEMORY_LIMIT_BYTES
    {
        findings.error(
            "/resources/memory",
            format!(
                "`resources.memory` must be at least 10M (10000000 bytes), got {:?} ({} bytes)",
                memory.text, memory.bytes
            ),
        );
    }

    let cpu = limit_cpu.value.and_then(|limit| cap(limit, request_cpu, |c| c.millicores, findings, |request, limit| {
        (
            "/requestedResources/cpu",
            format!(
                "`requestedResources.cpu` {:?} ({}m) is more than the limit `resources.cpu` {:?} ({}m): the request is lowered to the limit",
                request.text, request.millicores, limit.text, limit.millicores
            ),
        )
    }));
    let memory = limit_memory.value.and_then(|limit| cap(limit, request_memory, |m| m.bytes, findings, |request, limit| {
        (
            "/requestedResources/memory",
            format!(
                "`requestedResources.memory` {:?} ({} bytes) is more than the limit `resources.memory` {:?} ({} bytes): the request is lowered to the limit",
                request.text, request.bytes, limit.text, limit.bytes
            ),
        )
    }));
    let (cpu, memory) = (cpu?, memory?);
    Some((
        Resources {
            cpu: cpu.0,
            memory: memory.0,
        },
        Resources {
            cpu: cpu.1,
            memory: memory.1,
        },
    ))
}

/// Returns `(limit, request)` with the request lowered to the limit if it exceeds it.
fn cap<T: Clone>(
    limit: T,
    request: Quantity<T>,
    amount: impl Fn(&T) -> u64,
    findings: &mut Findings,
    explain: impl Fn(&T, &T) -> (&'static str, String),
) -> Option<(T, T)> {
    let value = request.value?;
    if amount(&value) <= amount(&limit) {
        return Some((limit, value));
    }
    if request.explicit {
        let (pointer, message) = explain(&value, &limit);
        findings.warning(pointer, message);
    }
    Some((limit.clone(), limit))
}

fn cpu_at(
    manifest: &Map<String, Value>,
    section: &str,
    default: &Cpu,
    findings: &mut Findings,
) -> Quantity<Cpu> {
    quantity_at(
        manifest,
        section,
        "cpu",
        findings,
        default.clone(),
        |text| {
            parse_cpu(text).map(|millicores| Cpu {
                text: text.to_owned(),
                millicores,
            })
        },
    )
}

fn memory_at(
    manifest: &Map<String, Value>,
    section: &str,
    default: &Memory,
    findings: &mut Findings,
) -> Quantity<Memory> {
    quantity_at(
        manifest,
        section,
        "memory",
        findings,
        default.clone(),
        |text| {
            parse_memory(text).map(|bytes| Memory {
                text: text.to_owned(),
                bytes,
            })
        },
    )
}

fn quantity_at<T>(
    manifest: &Map<String, Value>,
    section: &str,
    field: &str,
    findings: &mut Findings,
    default: T,
    parse: impl Fn(&str) -> Result<T, crate::quantity::QuantityError>,
) -> Quantity<T> {
    let pointer = format!("/{section}/{field}");
    let value = match manifest.get(section) {
        None => {
            return Quantity {
                value: Some(default),
                explicit: false,
            };
        }
        Some(Value::Object(object)) => object.get(field),
        Some(_) => {
            return Quantity {
                value: None,
                explicit: true,
            };
        }
    };
    let Some(value) = value else {
        return Quantity {
            value: Some(default),
            explicit: false,
        };
    };
    if findings.has_error_at(&pointer) {
        return Quantity {
            value: None,
            explicit: true,
        };
    }
    let Some(text) = value.as_str() else {
        return Quantity {
            value: None,
            explicit: true,
        };
    };
    match parse(text) {
        Ok(parsed) => Quantity {
            value: Some(parsed),
            explicit: true,
        },
        Err(error) => {
            findings.error(&pointer, format!("`{section}.{field}` {error}"));
            Quantity {
                value: None,
                explicit: true,
            }
        }
    }
}
