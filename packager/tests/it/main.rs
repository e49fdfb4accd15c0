//! Integration tests: drive the real `berth-pack` binary in temporary directories.

mod bad_input;
mod docker;
mod fixtures;
mod pack;
mod validate;
