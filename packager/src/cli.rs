//! Command-line arguments, parsed into typed options before anything runs.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::package::{Compression, ImageSource, PackOptions};

#[derive(Debug, Parser)]
#[command(
    name = "berth-pack",
    version,
    about = "Build, validate and inspect Cumulocity microservice packages",
    after_help = "Exit codes: 0 success/valid, 1 invalid input (diagnostics printed), 2 usage or IO error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a package zip (cumulocity.json + image.tar) from a manifest and an image.
    Pack(PackArgs),
    /// Check a cumulocity.json or a package zip; exit 0 if valid, 1 if not.
    Validate(CheckArgs),
    /// Describe a package zip: manifest with defaults resolved, image tags, layers, sizes.
    Inspect(CheckArgs),
    // Platform commands (`deploy`, `subscribe`) join here, implemented in `deploy.rs`.
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The microservice manifest.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Output zip [default: <name>-<version>.zip in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Deflate level, 0 (store) to 9.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9), conflicts_with = "store")]
    pub level: u32,
    /// Store without compression (fastest, largest).
    #[arg(long)]
    pub store: bool,
    /// Compression threads [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
    /// No progress bar even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
    /// Result on stdout as text or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ImageArgs {
    /// A `docker save` or OCI image layout tar.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Export this image (REPO:TAG or ID) from the local Docker engine.
    #[arg(long, value_name = "REF")]
    pub docker_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A cumulocity.json or a package zip.
    pub file: PathBuf,
    /// Result on stdout as text or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

impl PackArgs {
    /// The typed pack request; `stderr_is_terminal` decides the progress bar.
    pub fn to_options(&self, stderr_is_terminal: bool) -> PackOptions {
        let image = match (&self.image.image, &self.image.docker_image) {
            (_, Some(reference)) => ImageSource::Docker(reference.clone()),
            (Some(path), None) => ImageSource::Archive(path.clone()),
            // clap's argument group requires exactly one of the two.
            (None, None) => ImageSource::Archive(PathBuf::new()),
        };
        let compression = if self.store || self.level == 0 {
            Compression::Store
        } else {
            Compression::Deflate(self.level)
        };
        let threads = self
            .jobs
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        PackOptions {
            manifest: self.manifest.clone(),
            image,
            output: self.output.clone(),
            compression,
            threads,
            progress: stderr_is_terminal && !self.quiet && self.format == Format::Human,
        }
    }
}
