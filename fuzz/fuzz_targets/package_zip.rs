//! The platform's package reader (`berth::package::inspect`): any bytes uploaded as a
//! microservice zip must give `Ok` or a `PackageError`, never a panic or an unbounded allocation.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One scratch file per fuzzing process: `inspect` takes a path (the upload is spooled to disk).
fn scratch() -> &'static tempfile::TempPath {
    static FILE: OnceLock<tempfile::TempPath> = OnceLock::new();
    FILE.get_or_init(|| {
        tempfile::NamedTempFile::new()
            .expect("temp file")
            .into_temp_path()
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let mut file = std::fs::File::create(path).expect("open scratch file");
    file.write_all(data).expect("write scratch file");
    drop(file);
    let _ = berth::package::inspect(path, berth::config::DEFAULT_IMAGE_SIZE_LIMIT);
});
