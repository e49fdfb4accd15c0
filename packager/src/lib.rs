//! `berth-pack`: builds, validates, inspects and deploys Cumulocity microservice packages
//! (a zip holding `cumulocity.json` and a linux/amd64 `image.tar`).

pub mod cli;
mod client_error;
pub mod deflate;
pub mod deploy;
pub mod docker_export;
pub mod entry_sink;
pub mod image_archive;
pub mod multipart_body;
pub mod output_path;
pub mod package;
pub mod platform_client;
pub mod report;
pub mod temp_cleanup;
pub mod tls_trust;
pub mod url_text;
pub mod zip_writer;
