//! End-to-end suite: drives the real binaries, the real example build and the real Docker engine.
//!
//! Helpers (`workspace`, `command`, `docker`, `http`, `hello`) are shared by every scenario module. Docker must be
//! reachable: a missing engine fails the suite instead of skipping it.

// Tests block on purpose (polling the server from plain threads), never on a runtime worker.
#![allow(clippy::disallowed_methods)]

mod command;
mod docker;
mod hello;
mod http;
mod workspace;

mod deploy;
mod hello_package;
