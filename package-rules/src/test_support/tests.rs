use super::*;

/// Each entry of `archive` as its header has it: type, raw name, raw link target, size.
fn headers(archive: &[u8]) -> Vec<(tar::EntryType, String, String, u64)> {
    let mut headers = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let entry = entry.unwrap();
        let text = |bytes: Option<std::borrow::Cow<[u8]>>| {
            String::from_utf8(bytes.map(|b| b.into_owned()).unwrap_or_default()).unwrap()
        };
        headers.push((
            entry.header().entry_type(),
            text(Some(entry.path_bytes())),
            text(entry.link_name_bytes()),
            entry.header().entry_size().unwrap(),
        ));
    }
    headers
}

#[test]
fn names_and_links_reach_the_reader_as_written() {
    let long = format!("{}/layer.tar", "d".repeat(300));
    let built = archive(&[
        dir("blobs/"),
        file("x/../manifest.json", b"[]"),
        file("/abs", b"a"),
        symlink("d", "."),
        hard_link("c.json", "../../etc/passwd"),
        file(&long, b"layer"),
        symlink("l", &long),
    ]);
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let s = |text: &str| text.to_owned();
    assert_eq!(
        headers(&built),
        [
            (Directory, s("blobs/"), s(""), 0),
            (Regular, s("x/../manifest.json"), s(""), 2),
            (Regular, s("/abs"), s(""), 1),
            (Symlink, s("d"), s("."), 0),
            (Link, s("c.json"), s("../../etc/passwd"), 0),
            (Regular, long.clone(), s(""), 5),
            (Symlink, s("l"), long.clone(), 0),
        ]
    );
    // Ended by two zero blocks.
    assert!(built[built.len() - 1024..].iter().all(|b| *b == 0));
    let raw = raw_entry(&file("a", b"x"));
    assert_eq!(raw.len(), 1024, "a header and one data block");
}

#[test]
fn sizes_can_lie() {
    let lying = archive(&[file("big", [1u8; 600]).header_size(10)]);
    let header = tar::Header::from_byte_slice(&lying[..512]);
    assert_eq!(header.entry_size().unwrap(), 10);
    assert_eq!(
        lying.len(),
        512 + 1024 + 1024,
        "the data written whole, padded"
    );
    // The reader goes by the PAX record before the file.
    let read_back = read(&archive(&[file("pax", [2u8; 600]).pax_size(700)]));
    let [(name, header_size, data)] = read_back.as_slice() else {
        panic!("{read_back:?}")
    };
    assert_eq!((name.as_str(), *header_size, data.len()), ("pax", 600, 700));
}

#[test]
fn a_one_layer_image_names_its_config_and_layer() {
    let config = config(0);
    assert_eq!(
        std::str::from_utf8(&config).unwrap(),
        r#"{"architecture":"amd64","os":"linux","config":{"Labels":{"notes":""}},"rootfs":{"type":"layers","diff_ids":[]}}"#
    );
    assert_eq!(
        manifest("c.json", &["a:1", "b:2"], &["l1", "l2"]),
        r#"[{"Config":"c.json","RepoTags":["a:1","b:2"],"Layers":["l1","l2"]}]"#
    );
    assert_eq!(
        manifest("c.json", &[], &[]),
        r#"[{"Config":"c.json","Layers":[]}]"#
    );
    let image = image_with_layer(b"layer", None, None);
    let names: Vec<(String, Vec<u8>)> = read(&image)
        .into_iter()
        .map(|(name, _, data)| (name, data))
        .collect();
    let name = config_name(&config);
    assert_eq!(
        names,
        [
            (name.clone(), config.clone()),
            (
                "manifest.json".to_owned(),
                manifest(&name, &[], &[LAYER]).into_bytes()
            ),
            (LAYER.to_owned(), b"layer".to_vec()),
        ]
    );
    assert_eq!(name.len(), 64 + 5);
    assert_eq!(image_id(&config), format!("sha256:{}", &name[..64]));
    assert_eq!(blob_name(&config), format!("blobs/sha256/{}", &name[..64]));
}

#[test]
fn a_rewrite_keeps_each_header_but_for_what_the_edit_changes() {
    let original = archive(&[
        dir("blobs/"),
        file("a", b"one"),
        symlink("d", "."),
        file("drop", b"gone"),
        file("old.json", b"{}"),
    ]);
    let rewritten = rewrite(&original, |name, data| match name.as_str() {
        "a" => Some(b"longer".to_vec()),
        "drop" => None,
        "old.json" => {
            *name = "new.json".to_owned();
            Some(data)
        }
        _ => Some(data),
    });
    use tar::EntryType::{Directory, Regular, Symlink};
    let s = |text: &str| text.to_owned();
    assert_eq!(
        headers(&rewritten),
        [
            (Directory, s("blobs/"), s(""), 0),
            (Regular, s("a"), s(""), 6),
            (Symlink, s("d"), s("."), 0),
            (Regular, s("new.json"), s(""), 2),
        ]
    );
    let data: Vec<Vec<u8>> = read(&rewritten).into_iter().map(|e| e.2).collect();
    assert_eq!(data[1], b"longer");
    assert_eq!(data[3], b"{}");
}

#[test]
fn a_long_name_header_claims_its_size() {
    let bytes = long_name_header(1 << 30);
    assert_eq!(bytes.len(), 512);
    let header = tar::Header::from_byte_slice(&bytes);
    assert_eq!(header.entry_type(), tar::EntryType::GNULongName);
    assert_eq!(header.entry_size().unwrap(), 1 << 30);
    assert_eq!(header.path_bytes().as_ref(), b"././@LongLink");
}
