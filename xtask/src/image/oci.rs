//! The OCI image layout archive of the daemon: an empty base and one layer holding the static
//! binary at `/node-runtime-monitor` (mode 0755, owned by 0:0, mtime 0). Everything in it is a
//! function of the binary and the constants below, so the same binary always gives the same
//! archive, byte for byte, and the same digests.
//!
//! Layout (image-spec v1.1, `image-layout.md`): `oci-layout`, `index.json` (one manifest, with
//! its platform and the annotations `ctr images import` names the image by) and
//! `blobs/sha256/<digest>` (manifest, config, gzip-compressed layer), in an uncompressed tar.

use std::io::Write as _;

use anyhow::Context as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The binary's name, in the image at `/NAME`, and the image's repository name.
pub const NAME: &str = "node-runtime-monitor";
/// The daemon's metrics port (`deploy/daemonset.yaml` `containerPort`).
pub const PORT: u16 = 9750;
/// The process of a container (Kubernetes' `command` replaces it, `args` replace [`CMD`]).
pub const ENTRYPOINT: &str = "/node-runtime-monitor";
pub const CMD: &str = "run";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Creation time of the image and of its one history entry: the epoch, like the layer's mtime
/// (what BuildKit writes with `SOURCE_DATE_EPOCH=0`), so that it does not change the digest.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// What the image is made of.
pub struct Image<'a> {
    /// OCI architecture: `amd64` or `arm64`.
    pub architecture: &'a str,
    /// The static binary.
    pub binary: &'a [u8],
    /// The version: the image's tag and its `org.opencontainers.image.version` label.
    pub version: &'a str,
    /// `org.opencontainers.image.source`: the repository.
    pub source: &'a str,
}

/// The archive and what the summary reports of it.
pub struct Archive {
    pub bytes: Vec<u8>,
    /// `sha256:...` of the manifest: the image's digest (`ctr images ls`, `crictl images --digests`).
    pub manifest_digest: String,
    /// The gzip-compressed layer: what a node downloads.
    pub layer_size: u64,
    /// `sha256:...` of the uncompressed layer (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

impl Image<'_> {
    /// The name containerd registers on import: what the DaemonSet's
    /// `image: node-runtime-monitor:<version>` normalises to.
    pub fn reference(&self) -> String {
        format!("docker.io/library/{NAME}:{}", self.version)
    }

    pub fn archive(&self) -> anyhow::Result<Archive> {
        // The layer: one regular file, relative path (as `docker build` writes it), then the
        // two zero blocks that end a tar.
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, NAME, 0o755, Some(self.binary))?;
        let layer = layer.into_inner().context("layer tar")?;
        let diff_id = digest(&layer);
        let mut gzip = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), flate2::Compression::best());
        gzip.write_all(&layer).context("gzip")?;
        let layer_gz = gzip.finish().context("gzip")?;

        let config = json!({
            "created": CREATED,
            "architecture": self.architecture,
            "os": "linux",
            "config": {
                "Entrypoint": [ENTRYPOINT],
                "Cmd": [CMD],
                "ExposedPorts": { format!("{PORT}/tcp"): {} },
                "Labels": {
                    "org.opencontainers.image.title": NAME,
                    "org.opencontainers.image.version": self.version,
                    "org.opencontainers.image.source": self.source,
                },
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": CREATED, "created_by": format!("cargo xtask image: COPY {NAME} {ENTRYPOINT}") }],
        });
        let config = to_json(&config)?;
        let manifest = to_json(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, &config),
            "layers": [descriptor(LAYER_TYPE, &layer_gz)],
        }))?;
        let mut manifest_descriptor = descriptor(MANIFEST_TYPE, &manifest);
        manifest_descriptor["platform"] = json!({ "architecture": self.architecture, "os": "linux" });
        manifest_descriptor["annotations"] = json!({
            "io.containerd.image.name": self.reference(),
            "org.opencontainers.image.ref.name": self.version,
        });
        let index = to_json(&json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest_descriptor] }))?;

        let mut blobs: Vec<&[u8]> = vec![&manifest, &config, &layer_gz];
        blobs.sort_by_key(|b| digest(b));
        let mut archive = tar::Builder::new(Vec::new());
        append(&mut archive, "oci-layout", 0o644, Some(br#"{"imageLayoutVersion":"1.0.0"}"#))?;
        append(&mut archive, "index.json", 0o644, Some(&index))?;
        append(&mut archive, "blobs/", 0o755, None)?;
        append(&mut archive, "blobs/sha256/", 0o755, None)?;
        for blob in blobs {
            let name = format!("blobs/sha256/{}", digest(blob).trim_start_matches("sha256:"));
            append(&mut archive, &name, 0o644, Some(blob))?;
        }
        Ok(Archive {
            bytes: archive.into_inner().context("archive tar")?,
            manifest_digest: digest(&manifest),
            layer_size: layer_gz.len() as u64,
            diff_id,
        })
    }
}

/// A tar entry owned by 0:0 with mtime 0: a regular file with `data`, or a directory.
fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: Option<&[u8]>) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).with_context(|| format!("tar path {path}"))?;
    header.set_entry_type(if data.is_some() { tar::EntryType::Regular } else { tar::EntryType::Directory });
    header.set_size(data.map_or(0, |d| d.len() as u64));
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append(&header, data.unwrap_or_default()).with_context(|| format!("tar entry {path}"))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": digest(blob), "size": blob.len() })
}

/// Compact JSON; map keys in serde_json's order (sorted, or as written here): the same bytes
/// on every run.
fn to_json(value: &Value) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(value).context("json")
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn image(binary: &[u8]) -> Image<'_> {
        Image { architecture: "arm64", binary, version: "9.8.7", source: "https://example.org/r" }
    }

    /// A tar entry: (path, mode, uid, gid, mtime, contents).
    type Entry = (String, u32, u64, u64, u64, Vec<u8>);

    fn entries(tar: &[u8]) -> Vec<Entry> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap(), data)
            })
            .collect()
    }

    fn blob<'a>(files: &'a [Entry], digest: &str) -> &'a [u8] {
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        &files.iter().find(|f| f.0 == name).unwrap_or_else(|| panic!("{name} missing")).5
    }

    #[test]
    fn the_same_binary_gives_the_same_archive_and_another_binary_another_digest() {
        let a = image(b"\x7fELF one").archive().unwrap();
        let b = image(b"\x7fELF one").archive().unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let c = image(b"\x7fELF two").archive().unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }

    #[test]
    fn the_layout_holds_one_manifest_whose_blobs_are_there_with_their_digests() {
        let binary = b"\x7fELF binary".repeat(1000);
        let archive = image(&binary).archive().unwrap();
        let files = entries(&archive.bytes);
        for f in &files {
            assert_eq!((f.2, f.3, f.4), (0, 0, 0), "{}: owner 0:0, mtime 0", f.0);
            if let Some(hex) = f.0.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(digest(&f.5), format!("sha256:{hex}"), "blob named by its digest");
            }
        }
        let layout: Value = serde_json::from_slice(&files.iter().find(|f| f.0 == "oci-layout").unwrap().5).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: Value = serde_json::from_slice(&files.iter().find(|f| f.0 == "index.json").unwrap().5).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        let m = &manifests[0];
        assert_eq!(m["digest"], archive.manifest_digest.as_str());
        assert_eq!(m["platform"], json!({ "architecture": "arm64", "os": "linux" }));
        assert_eq!(m["annotations"]["io.containerd.image.name"], "docker.io/library/node-runtime-monitor:9.8.7");
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "9.8.7");
        let manifest_bytes = blob(&files, &archive.manifest_digest);
        assert_eq!(m["size"], manifest_bytes.len());
        let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
        let config_bytes = blob(&files, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let config: Value = serde_json::from_slice(config_bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/node-runtime-monitor"]));
        assert_eq!(config["config"]["Cmd"], json!(["run"]));
        assert_eq!(config["config"]["ExposedPorts"], json!({ "9750/tcp": {} }));
        assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], "9.8.7");
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("arm64"), Some("linux")));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_TYPE);
        let layer_gz = blob(&files, layers[0]["digest"].as_str().unwrap());
        assert_eq!(layers[0]["size"], layer_gz.len());
        assert_eq!(archive.layer_size, layer_gz.len() as u64);
        let mut layer = Vec::new();
        flate2::read::GzDecoder::new(layer_gz).read_to_end(&mut layer).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!([digest(&layer)]));
        assert_eq!(archive.diff_id, digest(&layer));
        let in_layer = entries(&layer);
        assert_eq!(in_layer.len(), 1, "the binary and nothing else");
        assert_eq!((in_layer[0].0.as_str(), in_layer[0].1), ("node-runtime-monitor", 0o755));
        assert_eq!(in_layer[0].5, binary);
    }
}
