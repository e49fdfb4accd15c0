use sha2::{Digest, Sha256};

use super::*;

/// A docker-save archive of one linux/amd64 image whose one layer is `layer`, its entry
/// written after a PAX record `size=<pax_size>` when given, its header saying `header_size`
/// (else the layer's length).
fn archive(layer: &[u8], header_size: Option<u64>, pax_size: Option<u64>) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let hex = hex::encode(Sha256::digest(config));
    let manifest = format!(r#"[{{"Config":"{hex}.json","Layers":["l/layer.tar"]}}]"#);
    let mut builder = tar::Builder::new(Vec::new());
    if let Some(pax_size) = pax_size {
        builder
            .append_pax_extensions([("size", pax_size.to_string().as_bytes())])
            .unwrap();
    }
    for (name, data, size) in [
        (
            "l/layer.tar",
            layer,
            header_size.unwrap_or(layer.len() as u64),
        ),
        (&format!("{hex}.json"), config, config.len() as u64),
        (MANIFEST_JSON, manifest.as_bytes(), manifest.len() as u64),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(size);
        header.set_path(name).unwrap();
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

const MANIFEST_JSON: &str = "manifest.json";

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn archives_are_refused_as_the_platform_refuses_them() {
    let limit = 1 << 20;
    let mut smuggling = vec![0u8; 4096];
    smuggling.extend_from_slice(&[b'x'; 600]);
    let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd.extend_from_slice(&[0; 64]);
    let small_gzip = gzip(&[7; 100_000]);
    // (case, archive, None if valid or what the error says)
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("a plain layer", archive(&[7; 1000], None, None), None),
        ("a gzip layer", archive(&small_gzip, None, None), None),
        (
            "PAX size over a smaller header",
            archive(&smuggling, Some(4096), Some(smuggling.len() as u64)),
            Some("PAX size record of 4696 bytes over a header saying 4096"),
        ),
        (
            "PAX size equal to the header's",
            archive(&smuggling, None, Some(smuggling.len() as u64)),
            None,
        ),
        (
            "a gzip bomb",
            archive(&gzip(&vec![0; 4 << 20]), None, None),
            Some("more than 1048576 bytes"),
        ),
        (
            "a plain layer over the limit",
            archive(&vec![7; (1 << 20) + 1], None, None),
            Some("more than 1048576 bytes"),
        ),
        (
            "a zstd layer",
            archive(&zstd, None, None),
            Some("\"l/layer.tar\": it is zstd-compressed"),
        ),
        (
            "a gzip layer cut short",
            archive(&small_gzip[..small_gzip.len() - 2], None, None),
            Some("not a whole gzip stream"),
        ),
    ];
    for (case, tar, expected) in cases {
        let scanned = scan_within(tar.as_slice(), limit);
        match (scanned, expected) {
            (Ok(summary), None) => assert_eq!(summary.layer_count, 1, "{case}"),
            (Err(error), Some(says)) => {
                assert!(error.to_string().contains(says), "{case}: {error}")
            }
            (scanned, _) => panic!("{case}: {scanned:?}"),
        }
    }
}
