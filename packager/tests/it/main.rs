//! Integration tests: drive the real `berth-pack` binary in temporary directories.

mod bad_input;
mod deploy;
mod deploy_transport;
mod docker;
mod fake_platform;
mod fixtures;
mod pack;
mod pack_signals;
mod platform_agreement;
mod validate;
mod validate_memory;
