//! The rules a package must meet before anything unpacks it, in one place for both sides: the
//! packager (offline `validate`/`inspect`) and the platform (upload) call the same functions, so a
//! package that passes offline is accepted online. No file system, network or async runtime: the
//! readers take any `Read + Seek`.

pub mod docker_load;
pub mod entry_names;
pub mod size;
pub mod tar_budget;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod unpacked;
pub mod zip_directory;
pub mod zstd_entry;

/// The manifest's entry in a package zip.
pub const MANIFEST_ENTRY: &str = "cumulocity.json";
/// The image archive's entry in a package zip.
pub const IMAGE_ENTRY: &str = "image.tar";

/// The platform's default image size limit (`image_size_limit`): what an image archive may
/// unpack to, its compressed layers decompressed. `berth-pack` checks packages against it unless
/// given another (`--image-size-limit`, for a platform whose operator raised it).
pub const DEFAULT_IMAGE_SIZE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
