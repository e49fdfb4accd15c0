use package_rules::test_support::{gzip, image_with_layer};

use super::*;

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
        (
            "a plain layer",
            image_with_layer(&[7; 1000], None, None),
            None,
        ),
        (
            "a gzip layer",
            image_with_layer(&small_gzip, None, None),
            None,
        ),
        (
            "PAX size over a smaller header",
            image_with_layer(&smuggling, Some(4096), Some(smuggling.len() as u64)),
            Some("PAX size record of 4696 bytes over a header saying 4096"),
        ),
        (
            "PAX size equal to the header's",
            image_with_layer(&smuggling, None, Some(smuggling.len() as u64)),
            None,
        ),
        (
            "a gzip bomb",
            image_with_layer(&gzip(&vec![0; 4 << 20]), None, None),
            Some("more than 1048576 bytes"),
        ),
        (
            "a plain layer over the limit",
            image_with_layer(&vec![7; (1 << 20) + 1], None, None),
            Some("more than 1048576 bytes"),
        ),
        (
            "a zstd layer",
            image_with_layer(&zstd, None, None),
            Some("\"l/layer.tar\": it is zstd-compressed"),
        ),
        (
            "a gzip layer cut short",
            image_with_layer(&small_gzip[..small_gzip.len() - 2], None, None),
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
