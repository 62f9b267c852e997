//! Offline image bundles: the directories where a distribution imports image archives into its
//! runtime's store at start. A bundle there is the operator's statement that the node gets its
//! images from it, not from a registry (an air-gapped node); the audit then expects every image
//! the node must run to be in the store, whatever the pull policy.
//!
//! It only reads; the audit judges.

use std::path::{Path, PathBuf};

use super::host_root::HostRoot;

/// A distribution's bundle directory and which files in it it imports.
struct BundleDir {
    dir: &'static str,
    distribution: &'static str,
    /// File name endings it imports; empty: every file (k0s' release bundles have none).
    suffixes: &'static [&'static str],
}

const BUNDLE_DIRS: [BundleDir; 3] = [
    // k0s watches "<data-dir>/images" and imports the OCI archives there (docs/airgap-install.md);
    // its release bundles are named `k0s-airgap-bundle-<version>-<arch>`, without a suffix.
    BundleDir { dir: "/var/lib/k0s/images", distribution: "k0s", suffixes: &[] },
    // k3s and RKE2 import the tarballs under "agent/images" of their data dir (their air-gap docs).
    BundleDir { dir: "/var/lib/rancher/k3s/agent/images", distribution: "k3s", suffixes: TARBALLS },
    BundleDir { dir: "/var/lib/rancher/rke2/agent/images", distribution: "RKE2", suffixes: TARBALLS },
];

const TARBALLS: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.lz4", ".tar.bz2"];

/// Bundles listed per directory, at most: the evidence needs a few names, not all.
const MAX_LISTED: usize = 16;

/// One distribution's bundle directory and the archives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineBundles {
    pub distribution: &'static str,
    pub dir: PathBuf,
    pub archives: Vec<PathBuf>,
}

/// Bundle directories holding at least one archive.
pub fn find(root: &HostRoot) -> Vec<OfflineBundles> {
    BUNDLE_DIRS
        .iter()
        .filter_map(|b| {
            let imported = |name: &str| !name.starts_with('.') && (b.suffixes.is_empty() || b.suffixes.iter().any(|s| name.ends_with(s)));
            let archives: Vec<PathBuf> = root
                .list_dir(Path::new(b.dir))
                .into_iter()
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(imported))
                .filter(|p| root.is_regular_file(p))
                .take(MAX_LISTED)
                .collect();
            (!archives.is_empty()).then(|| OfflineBundles { distribution: b.distribution, dir: PathBuf::from(b.dir), archives })
        })
        .collect()
}

/// containerd's per-registry host files (`certs.d/<registry>/hosts.toml`, the `config_path`
/// layout): a mirror there may serve pulls on an otherwise air-gapped node.
pub fn registry_host_files(root: &HostRoot) -> Vec<PathBuf> {
    ["/etc/containerd/certs.d", "/etc/docker/certs.d"]
        .iter()
        .flat_map(|dir| root.list_dir(Path::new(dir)).into_iter().take(MAX_LISTED))
        .map(|registry| registry.join("hosts.toml"))
        .filter(|hosts| root.is_regular_file(hosts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_in_a_bundle_directory_are_found_other_files_are_not() {
        let dir = std::env::temp_dir().join(format!("nrm-offline-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k0s = dir.join("var/lib/k0s/images");
        let k3s = dir.join("var/lib/rancher/k3s/agent/images");
        std::fs::create_dir_all(k0s.join("subdir")).expect("mkdir");
        std::fs::create_dir_all(&k3s).expect("mkdir");
        let root = HostRoot::new(&dir);
        assert!(find(&root).is_empty(), "empty directories (and a subdirectory) are no bundle");
        std::fs::write(k3s.join("README.md"), "").expect("write");
        assert!(find(&root).is_empty(), "nor a file k3s does not import");
        std::fs::write(k0s.join("k0s-airgap-bundle-v1.30.2+k0s.0-amd64"), "").expect("write");
        std::fs::write(k3s.join("k3s-airgap-images-amd64.tar.zst"), "").expect("write");
        let found = find(&root);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].distribution, found[1].distribution), ("k0s", "k3s"));
        assert_eq!(found[0].archives, vec![PathBuf::from("/var/lib/k0s/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64")]);
        assert_eq!(found[1].archives, vec![PathBuf::from("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst")]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
