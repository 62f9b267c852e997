//! Builds the kernel programs (`monitor-ebpf`) with aya-build so the daemon embeds them.
//! `AYA_BUILD_SKIP=1` skips that (for `cargo check`/`clippy` without bpf-linker); the daemon
//! then reports at start that it has no kernel programs.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// The toolchain that compiles the eBPF crate: it must be the one whose LLVM bpf-linker was
/// built for (see TOOLCHAIN.md); xtask installs it.
const EBPF_TOOLCHAIN: &str = "1.98.0";

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(ebpf_object_missing)");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:rustc-cfg=ebpf_object_missing");
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "monitor-ebpf")
        .ok_or_else(|| anyhow!("monitor-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // build-std=core on a stable toolchain: aya-build adds it when RUSTC_BOOTSTRAP is set.
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package { name: "monitor-ebpf", root_dir: root_dir.as_str(), ..Default::default() }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
