//! The rules a package must meet before anything unpacks it, in one place for both sides: the
//! packager (offline `validate`/`inspect`) and the platform (upload) call the same functions, so a
//! package that passes offline is accepted online. No file system, network or async runtime: the
//! readers take any `Read + Seek`.

pub mod entry_names;
pub mod tar_budget;
pub mod zip_directory;

/// The manifest's entry in a package zip.
pub const MANIFEST_ENTRY: &str = "cumulocity.json";
/// The image archive's entry in a package zip.
pub const IMAGE_ENTRY: &str = "image.tar";
