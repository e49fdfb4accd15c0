//! The `cumulocity.json` microservice manifest: its JSON Schema, typed model and validator.
//!
//! This crate does no IO and knows no async runtime, web framework or Docker client: it turns
//! manifest text into either a typed, defaults-resolved [`Manifest`] or a list of
//! [`Diagnostic`]s, so the packager (offline) and the platform (on upload) give the same verdict.

mod diagnostic;
mod model;
mod validate;

pub use diagnostic::{Diagnostic, Severity};
pub use model::{
    BillingMode, Cpu, Extension, Isolation, Manifest, Memory, Probe, ProbeHandler, Provider,
    Resources, Scale, SettingOption,
};
pub use validate::{Rejected, Validated, validate};

/// The JSON Schema (draft 2020-12) of `cumulocity.json`, as shipped in `cumulocity.schema.json`.
pub const SCHEMA_JSON: &str = include_str!("../cumulocity.schema.json");
