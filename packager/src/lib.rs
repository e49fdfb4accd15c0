//! `berth-pack`: builds, validates and inspects Cumulocity microservice packages
//! (a zip holding `cumulocity.json` and a linux/amd64 `image.tar`).

pub mod cli;
pub mod deflate;
pub mod docker_export;
pub mod entry_sink;
pub mod image_archive;
pub mod package;
pub mod report;
pub mod zip_writer;
