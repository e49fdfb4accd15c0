//! The `cumulocity.json` microservice manifest: its JSON Schema, typed model and validator.
//!
//! This crate does no IO and knows no async runtime, web framework or Docker client: it turns
//! manifest text into either a typed, defaults-resolved [`Manifest`] or a list of
//! [`Diagnostic`]s, so the packager (offline) and the platform (on upload) give the same verdict.

mod budget;
mod diagnostic;
mod explain;
mod findings;
mod locate;
mod model;
mod normalize;
mod placeholder;
mod quantity;
mod resolve;
mod resources;
mod schema;
mod semantic;
mod validate;
mod webapp;

pub use diagnostic::{Diagnostic, Severity};
pub use model::{
    BillingMode, Cpu, Extension, Isolation, Manifest, Memory, Probe, ProbeHandler, Provider,
    Resources, Scale, SettingOption,
};
pub use quantity::{QuantityError, parse_cpu, parse_memory};
pub use resources::{MIN_CPU_LIMIT_MILLICORES, MIN_MEMORY_LIMIT_BYTES};
pub use validate::{Rejected, Validated, validate};

/// Longest `version` (the schema's `maxLength`): it becomes the image's Docker tag as it is (its
/// pattern admits only tag characters), and Docker tags are at most 128 characters.
pub const MAX_VERSION_LENGTH: usize = 128;

/// The JSON Schema (draft 2020-12) of `cumulocity.json`, as shipped in `cumulocity.schema.json`.
pub const SCHEMA_JSON: &str = include_str!("../cumulocity.schema.json");
