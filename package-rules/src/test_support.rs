//! Image archives built by hand for the tests of both sides, so the cases `berth-pack` and the
//! platform judge are built one way: entries (files, directories, symlinks, hard links, lying
//! sizes), the config and `manifest.json` naming it. Behind the `test-support` feature, which only
//! dev-dependencies enable, so release builds carry neither this nor the `tar` crate.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// The layer [`image_with_layer`] names.
pub const LAYER: &str = "l/layer.tar";

/// One entry of an archive [`archive`] builds.
#[derive(Clone, Debug)]
pub struct Entry {
    name: String,
    kind: Kind,
    header_size: Option<u64>,
    pax_size: Option<u64>,
}

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    HardLink(String),
}

fn entry(name: impl Into<String>, kind: Kind) -> Entry {
    Entry {
        name: name.into(),
        kind,
        header_size: None,
        pax_size: None,
    }
}

/// A regular file.
pub fn file(name: impl Into<String>, data: impl AsRef<[u8]>) -> Entry {
    entry(name, Kind::File(data.as_ref().to_vec()))
}

/// A directory; its name as given (`docker save` writes `blobs/`).
pub fn dir(name: impl Into<String>) -> Entry {
    entry(name, Kind::Dir)
}

/// A symbolic link to `target`.
pub fn symlink(name: impl Into<String>, target: impl Into<String>) -> Entry {
    entry(name, Kind::Symlink(target.into()))
}

/// A hard link to `target`.
pub fn hard_link(name: impl Into<String>, target: impl Into<String>) -> Entry {
    entry(name, Kind::HardLink(target.into()))
}

impl Entry {
    /// The header says `size` whatever the data's length; the data is written whole, padded to
    /// a block, as a reader that trusts the header would not expect.
    pub fn header_size(mut self, size: u64) -> Self {
        self.header_size = Some(size);
        self
    }

    /// A PAX record `size=<size>` goes before the entry.
    pub fn pax_size(mut self, size: u64) -> Self {
        self.pax_size = Some(size);
        self
    }
}

/// A GNU tar of `entries` in order, ended by its two zero blocks. Names and link targets that fit
/// the header's 100 bytes go into it raw, so `..`, absolute names and trailing slashes reach the
/// reader as written (the tar crate would refuse or clean them); longer ones as GNU long names.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        append(&mut builder, entry);
    }
    builder.into_inner().unwrap()
}

/// One entry's blocks, header and padded data, without the archive's end: to splice into
/// another entry's data.
pub fn raw_entry(entry: &Entry) -> Vec<u8> {
    let mut bytes = archive(std::slice::from_ref(entry));
    bytes.truncate(bytes.len() - 1024);
    bytes
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) {
    if let Some(size) = entry.pax_size {
        builder
            .append_pax_extensions([("size", size.to_string().as_bytes())])
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_mtime(0);
    let (data, target): (&[u8], &str) = match &entry.kind {
        // A file keeps the old-style type `\0`, as the tar crate writes it.
        Kind::File(data) => (data, ""),
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            (&[], "")
        }
        Kind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            (&[], target)
        }
        Kind::HardLink(target) => {
            header.set_entry_type(tar::EntryType::Link);
            (&[], target)
        }
    };
    header.set_size(entry.header_size.unwrap_or(data.len() as u64));
    let name = entry.name.as_str();
    if name.len() <= 100 && target.len() <= 100 {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    } else if target.is_empty() {
        builder.append_data(&mut header, name, data).unwrap();
    } else {
        builder.append_link(&mut header, name, target).unwrap();
    }
}

/// A GNU long-name header claiming `size` bytes of name, without the name: followed by that
/// many bytes, what a reader that holds the whole name before the entry it names would hold.
pub fn long_name_header(size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// The lowercase hex SHA-256 of `data`, as image ids and blob names spell it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The image id Docker gives the image of `config`: its digest.
pub fn image_id(config: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(config))
}

/// `config`'s name in a classic `docker save` archive: `<digest>.json`.
pub fn config_name(config: &[u8]) -> String {
    format!("{}.json", sha256_hex(config))
}

/// `config`'s name in an OCI layout: `blobs/sha256/<digest>`.
pub fn blob_name(config: &[u8]) -> String {
    format!("blobs/sha256/{}", sha256_hex(config))
}

/// A linux/amd64 image config with a label `notes` of `label_bytes` bytes (the size a test
/// wants it to have) and no layers' diff ids.
pub fn config(label_bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"notes":"{}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
        "x".repeat(label_bytes)
    )
    .into_bytes()
}

/// `manifest.json` of one image: its config's name, its tags (no `RepoTags` when none) and its
/// layers. Names are written unescaped: tests' names need none.
pub fn manifest(config: &str, tags: &[&str], layers: &[&str]) -> String {
    let quoted = |names: &[&str]| {
        let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
        quoted.join(",")
    };
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!(r#""RepoTags":[{}],"#, quoted(tags))
    };
    format!(
        r#"[{{"Config":"{config}",{tags}"Layers":[{}]}}]"#,
        quoted(layers)
    )
}

/// A `docker save` archive of one image of `config(0)` whose one layer, [`LAYER`], is `layer`:
/// the config, `manifest.json`, then the layer, after a PAX record `size=<pax_size>` when given,
/// its header saying `header_size` (else the layer's length).
pub fn image_with_layer(layer: &[u8], header_size: Option<u64>, pax_size: Option<u64>) -> Vec<u8> {
    let config = config(0);
    let name = config_name(&config);
    let mut layer = file(LAYER, layer);
    layer.header_size = header_size;
    layer.pax_size = pax_size;
    archive(&[
        file(&name, &config),
        file("manifest.json", manifest(&name, &[], &[LAYER])),
        layer,
    ])
}

/// `data` gzip-compressed, as a compressed layer.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The entries of `archive` as the tar crate reads them: name, header size and data.
pub fn read(archive: &[u8]) -> Vec<(String, u64, Vec<u8>)> {
    let mut entries = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let header_size = entry.header().entry_size().unwrap();
        let mut data = Vec::new();
        io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.push((name, header_size, data));
    }
    entries
}

/// `archive` (a real `docker save`, whose entries these builders do not all express) written
/// again entry by entry, each keeping its header but for its size: `edit` gets the entry's name
/// and data and gives the data to write, or None to leave the entry out. A name it changes must
/// be one the tar crate writes itself (relative, without `..`).
pub fn rewrite(
    archive: &[u8],
    mut edit: impl FnMut(&mut String, Vec<u8>) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let mut output = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let read = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let mut name = read.clone();
        let Some(data) = edit(&mut name, data) else {
            continue;
        };
        let mut header = entry.header().clone();
        if name != read {
            header.set_path(&name).unwrap();
        }
        header.set_size(data.len() as u64);
        header.set_cksum();
        output.append(&header, data.as_slice()).unwrap();
    }
    output.into_inner().unwrap()
}

#[cfg(test)]
mod tests;

/// `image.tar` as Zstandard, with the sizes and CRC-32 its zip headers will name (true ones
/// from [`ZstdImage::of`]; change them to make liars).
#[derive(Clone, Debug)]
pub struct ZstdImage {
    pub frame: Vec<u8>,
    pub size: u32,
    pub crc32: u32,
}

impl ZstdImage {
    /// `image` compressed at level 3 with a window of 2^`window_log` bytes (declared in the
    /// frame's header whatever the data needs).
    pub fn of(image: &[u8], window_log: u32) -> ZstdImage {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd encoder");
        encoder.window_log(window_log).expect("zstd window");
        encoder
            .long_distance_matching(window_log > 23)
            .expect("zstd long matching");
        encoder.write_all(image).expect("zstd in memory");
        ZstdImage {
            frame: encoder.finish().expect("zstd in memory"),
            size: image.len() as u32,
            crc32: crc32fast::hash(image),
        }
    }
}

/// A package zip whose `image.tar` is Zstandard (method 93), as `berth-pack pack --zstd`
/// writes one, with the manifest stored: the zip crate the tests use writes no zstd entry.
pub fn zstd_package(manifest: &[u8], image: &ZstdImage) -> Vec<u8> {
    fn put16(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn put32(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let entries: [(&str, u16, &[u8], u32, u32); 2] = [
        (
            "cumulocity.json",
            0,
            manifest,
            crc32fast::hash(manifest),
            manifest.len() as u32,
        ),
        (
            "image.tar",
            crate::zstd_entry::METHOD,
            &image.frame,
            image.crc32,
            image.size,
        ),
    ];
    let header = |out: &mut Vec<u8>,
                  (name, method, data, crc, size): (&str, u16, &[u8], u32, u32)| {
        put16(out, 63);
        put16(out, 0);
        put16(out, method);
        put32(out, 0x0021_0000);
        put32(out, crc);
        put32(out, data.len() as u32);
        put32(out, size);
        put16(out, name.len() as u16);
        put16(out, 0);
    };
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(out.len() as u32);
        put32(&mut out, 0x0403_4b50);
        header(&mut out, entry);
        out.extend_from_slice(entry.0.as_bytes());
        out.extend_from_slice(entry.2);
    }
    let directory = out.len() as u32;
    for (entry, offset) in entries.into_iter().zip(offsets) {
        put32(&mut out, 0x0201_4b50);
        put16(&mut out, 63);
        header(&mut out, entry);
        put16(&mut out, 0); // comment length
        put16(&mut out, 0); // disk
        put16(&mut out, 0); // internal attributes
        put32(&mut out, 0); // external attributes
        put32(&mut out, offset);
        out.extend_from_slice(entry.0.as_bytes());
    }
    let directory_size = out.len() as u32 - directory;
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, 2);
    put16(&mut out, 2);
    put32(&mut out, directory_size);
    put32(&mut out, directory);
    put16(&mut out, 0);
    out
}
