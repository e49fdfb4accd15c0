//! The image-archive readers: the packager's `image_archive::scan` (reads any tar as a stream)
//! and the platform's `image.tar` check, reached through `inspect` on a zip holding a valid
//! manifest and the fuzzed bytes as `image.tar`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

const MANIFEST: &str = r#"{"apiVersion":"2","name":"fuzz","version":"1.0.0","provider":{"name":"fuzz"},"isolation":"MULTI_TENANT"}"#;

fn scratch() -> &'static tempfile::TempPath {
    static FILE: OnceLock<tempfile::TempPath> = OnceLock::new();
    FILE.get_or_init(|| {
        tempfile::NamedTempFile::new()
            .expect("temp file")
            .into_temp_path()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = berth_pack::image_archive::scan(data);

    let path = scratch();
    let file = std::fs::File::create(path).expect("open scratch file");
    let mut zip = zip::ZipWriter::new(file);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("cumulocity.json", stored)
        .expect("zip entry");
    std::io::Write::write_all(&mut zip, MANIFEST.as_bytes()).expect("zip write");
    zip.start_file("image.tar", stored).expect("zip entry");
    std::io::Write::write_all(&mut zip, data).expect("zip write");
    zip.finish().expect("zip finish");
    let _ = berth::package::inspect(path, berth::config::DEFAULT_IMAGE_SIZE_LIMIT);
});
