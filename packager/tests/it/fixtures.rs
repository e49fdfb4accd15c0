//! Builders for synthetic image archives and manifests, and a runner for the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use package_rules::test_support::{archive, config_name, file, sha256_hex, symlink};

pub const MANIFEST: &str = r#"{
  "apiVersion": "2",
  "name": "hello",
  "version": "1.0.0",
  "provider": { "name": "ACME" },
  "requiredRoles": ["ROLE_INVENTORY_READ"]
}
"#;

pub const MANIFEST_WITHOUT_NAME: &str = r#"{
  "apiVersion": "2",
  "version": "2.1.0",
  "provider": { "name": "ACME" }
}
"#;

/// `resources.cpu` has the wrong type: line 5.
pub const INVALID_MANIFEST: &str = r#"{
  "apiVersion": "2",
  "version": "1.0.0",
  "provider": { "name": "ACME" },
  "resources": { "cpu": true }
}
"#;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `berth-pack` in `dir` with `args`.
pub fn berth_pack(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_berth-pack"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("berth-pack runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Files in `dir` whose name ends with one of `suffixes`.
pub fn files_ending(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            suffixes.iter().any(|suffix| name.ends_with(suffix))
        })
        .collect();
    found.sort();
    found
}

/// Deterministic noise (xorshift), incompressible.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn text(len: usize) -> Vec<u8> {
    b"2026-11-22 INFO tenant t123 GET /service/hello/health 200 UP\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

pub struct ImageSpec {
    pub os: &'static str,
    pub architecture: &'static str,
    pub tags: Vec<String>,
    /// Contents of each layer's single file.
    pub layers: Vec<Vec<u8>>,
}

impl ImageSpec {
    pub fn small(tag: &str) -> Self {
        ImageSpec {
            os: "linux",
            architecture: "amd64",
            tags: vec![tag.to_owned()],
            layers: vec![text(5000), noise(3000, 1)],
        }
    }

    fn config(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": { "Cmd": ["/hello"] },
            "rootfs": { "type": "layers", "diff_ids": [] }
        }))
        .unwrap()
    }

    fn layer_tars(&self) -> Vec<Vec<u8>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, data)| archive(&[file(format!("app/file{i}"), data)]))
            .collect()
    }
}

/// A `docker save` archive: layers first, then the config, then manifest.json last.
pub fn docker_save(spec: &ImageSpec) -> Vec<u8> {
    let config = spec.config();
    let config_name = config_name(&config);
    let mut entries = Vec::new();
    let mut layer_paths = Vec::new();
    for layer in spec.layer_tars() {
        let path = format!("{}/layer.tar", sha256_hex(&layer));
        layer_paths.push(path.clone());
        entries.push(file(path, layer));
    }
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": spec.tags, "Layers": layer_paths }]);
    entries.push(file(config_name, config));
    entries.push(file(
        "manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    ));
    archive(&entries)
}

/// The blobs of one OCI image (layers, config, manifest last), its manifest descriptor and its
/// `manifest.json` entry (as Docker 25 and later write it beside the OCI index).
fn oci_image(spec: &ImageSpec) -> (Vec<Vec<u8>>, serde_json::Value, serde_json::Value) {
    let config = spec.config();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut layer_descriptors = Vec::new();
    let mut layer_paths = Vec::new();
    for layer in spec.layer_tars() {
        layer_paths.push(format!("blobs/sha256/{}", sha256_hex(&layer)));
        layer_descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", sha256_hex(&layer)),
            "size": layer.len(),
        }));
        blobs.push(layer);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&config)),
            "size": config.len(),
        },
        "layers": layer_descriptors,
    }))
    .unwrap();
    let descriptor = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", sha256_hex(&manifest)),
        "size": manifest.len(),
        "platform": { "os": spec.os, "architecture": spec.architecture },
    });
    let save_entry = serde_json::json!({
        "Config": format!("blobs/sha256/{}", sha256_hex(&config)),
        "RepoTags": spec.tags,
        "Layers": layer_paths,
    });
    blobs.push(config);
    blobs.push(manifest);
    (blobs, descriptor, save_entry)
}

fn ref_annotations(tag: Option<&String>) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    if let Some(tag) = tag {
        annotations.insert("io.containerd.image.name".into(), tag.clone().into());
        let short = tag.rsplit(':').next().unwrap();
        annotations.insert("org.opencontainers.image.ref.name".into(), short.into());
    }
    annotations.into()
}

/// An OCI layout archive of `blobs` and `index`, with `docker save`'s `manifest.json` when given.
fn oci_archive(
    blobs: Vec<Vec<u8>>,
    index: serde_json::Value,
    save_manifest: Option<serde_json::Value>,
) -> Vec<u8> {
    let mut entries = vec![file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)];
    for blob in blobs {
        entries.push(file(format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
    }
    entries.push(file("index.json", serde_json::to_vec(&index).unwrap()));
    if let Some(save_manifest) = save_manifest {
        entries.push(file(
            "manifest.json",
            serde_json::to_vec(&save_manifest).unwrap(),
        ));
    }
    archive(&entries)
}

/// `docker save` of Docker 25 and later: an OCI image layout (`oci-layout`, `index.json`,
/// `blobs/sha256/...`) with the `manifest.json` Docker's loader reads.
pub fn oci_layout(spec: &ImageSpec) -> Vec<u8> {
    let (blobs, mut descriptor, save_entry) = oci_image(spec);
    descriptor["annotations"] = ref_annotations(spec.tags.first());
    oci_archive(
        blobs,
        serde_json::json!({ "schemaVersion": 2, "manifests": [descriptor] }),
        Some(serde_json::json!([save_entry])),
    )
}

/// An OCI image layout alone, without `manifest.json` (`podman save --format oci-archive`,
/// `buildx --output type=oci`): Docker's loader cannot load it.
pub fn oci_layout_only(spec: &ImageSpec) -> Vec<u8> {
    let (blobs, mut descriptor, _) = oci_image(spec);
    descriptor["annotations"] = ref_annotations(spec.tags.first());
    oci_archive(
        blobs,
        serde_json::json!({ "schemaVersion": 2, "manifests": [descriptor] }),
        None,
    )
}

/// An OCI layout whose index.json points to a nested multi-platform index (as `docker
/// save` of a multi-arch image produces), its `manifest.json` naming the last image (the one the
/// engine held).
pub fn oci_multi_platform(specs: &[ImageSpec]) -> Vec<u8> {
    let mut blobs = Vec::new();
    let mut descriptors = Vec::new();
    let mut save_entries = Vec::new();
    for spec in specs {
        let (image_blobs, descriptor, save_entry) = oci_image(spec);
        blobs.extend(image_blobs);
        descriptors.push(descriptor);
        save_entries.push(save_entry);
    }
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    }))
    .unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&nested)),
            "size": nested.len(),
            "annotations": ref_annotations(specs[0].tags.first()),
        }],
    });
    blobs.push(nested);
    oci_archive(
        blobs,
        top,
        save_entries.pop().map(|entry| serde_json::json!([entry])),
    )
}

/// A `docker save` archive as older engines wrote it: a repeated layer is a symlink
/// (`../<other>/layer.tar`) to the first copy.
pub fn docker_save_with_symlinked_layer(spec: &ImageSpec) -> Vec<u8> {
    let config = spec.config();
    let config_name = config_name(&config);
    let layer = spec.layer_tars().remove(0);
    let first = format!("{}/layer.tar", sha256_hex(&layer));
    let second =
        "0000000000000000000000000000000000000000000000000000000000000000/layer.tar".to_owned();
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": spec.tags, "Layers": [first, second] }]);
    archive(&[
        file(&first, layer),
        symlink(second, format!("../{first}")),
        file(config_name, config),
        file("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ])
}

/// Reads a zip's entries as (name, method, bytes), in order.
pub fn zip_entries(path: &Path) -> Vec<(String, zip::CompressionMethod, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|index| {
            let raw = archive.by_index_raw(index).unwrap();
            let (name, method) = (raw.name().unwrap().into_owned(), raw.compression());
            let mut data = Vec::new();
            // The zip crate is built without zstd: the platform's reader unpacks it.
            if method == zip::CompressionMethod::ZSTD {
                let (size, crc) = (raw.size(), raw.crc32());
                let mut entry = package_rules::zstd_entry::open(raw, size, crc).unwrap();
                entry.read_to_end(&mut data).unwrap();
            } else {
                drop(raw);
                archive
                    .by_index(index)
                    .unwrap()
                    .read_to_end(&mut data)
                    .unwrap();
            }
            (name, method, data)
        })
        .collect()
}

/// `unzip -t` succeeds on the file.
pub fn assert_unzip_ok(path: &Path) {
    let output = Command::new("unzip")
        .arg("-t")
        .arg(path)
        .output()
        .expect("unzip is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("No errors detected"),
        "unzip -t: {stdout}"
    );
}
