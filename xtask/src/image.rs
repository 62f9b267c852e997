//! `image`: the daemon's OCI image, built offline. No base image is pulled: the release binary
//! is built static (musl) for each architecture and is the image's only file,
//! `/node-runtime-monitor`, on an empty base (the layout `deploy/Dockerfile`'s `FROM scratch`
//! stage gives). Each architecture's image is written as an OCI image layout archive,
//! `<target>/image/node-runtime-monitor-<version>-<amd64|arm64>.oci.tar`, which
//! `ctr -n k8s.io images import` registers as `docker.io/library/node-runtime-monitor:<version>`
//! (what the DaemonSet's `image: node-runtime-monitor:<version>` names).
//!
//! arm64 is cross-built on this host: rustc's own rust-lld links it against the toolchain's
//! self-contained musl, so no C cross toolchain is involved (the crate graph has no C code).
//! `monitor/build.rs` still builds the eBPF object on this host (bpfel), for the target's
//! architecture (aya-build passes `bpf_target_arch`), even when `AYA_BUILD_SKIP` is set in the
//! environment. Before packing, each binary is checked to be a static ELF of its architecture
//! that embeds the eBPF object, and run (`--version`; arm64 under qemu-aarch64-static).

mod oci;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{cargo, setup, status};

#[derive(clap::Args)]
#[command(
    about = "Build the OCI image archive(s) offline (static binary on an empty base)",
    long_about = "Build the OCI image of the daemon offline, from the release build: the binary is \
built static (musl) for each architecture (arm64 cross-built, linked with rust-lld) and is the \
image's only file, /node-runtime-monitor (entrypoint /node-runtime-monitor, cmd run, port 9750/tcp). \
No base image is pulled. Writes target/image/node-runtime-monitor-<version>-<amd64|arm64>.oci.tar, \
an OCI image layout archive (deterministic: the same binary gives the same digest), and prints \
its digest and sizes. Load it on a node with \
`ctr -n k8s.io images import <file>` (name docker.io/library/node-runtime-monitor:<version>)."
)]
pub struct Args {
    /// Architecture(s) to build.
    #[arg(long, value_enum, default_value_t = ArchChoice::All)]
    pub arch: ArchChoice,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchChoice {
    /// x86_64-unknown-linux-musl, image platform linux/amd64.
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    /// aarch64-unknown-linux-musl (cross-built), image platform linux/arm64.
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
    /// Both.
    All,
}

/// One architecture of the image.
struct Arch {
    /// OCI `architecture` (and the archive's suffix).
    oci: &'static str,
    /// Rust target triple.
    target: &'static str,
    /// ELF `e_machine`.
    elf_machine: u16,
    /// What runs its binaries on this host (nothing: natively).
    runner: Option<&'static str>,
}

const ARCHES: [Arch; 2] = [
    Arch { oci: "amd64", target: setup::IMAGE_TARGETS[0], elf_machine: 62, runner: None },
    Arch { oci: "arm64", target: setup::IMAGE_TARGETS[1], elf_machine: 183, runner: Some("qemu-aarch64-static") },
];

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The archive of architecture `oci` (`amd64`, `arm64`) under the target dir `target`.
pub fn archive_path(target: &Path, oci: &str) -> PathBuf {
    target.join("image").join(format!("{}-{VERSION}-{oci}.oci.tar", oci::NAME))
}

/// Cargo's target dir for commands run by [`cargo`]: `CARGO_TARGET_DIR` (relative to the
/// workspace root) or `<root>/target`.
fn target_dir() -> PathBuf {
    let root = crate::workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let arches: Vec<&Arch> = ARCHES
        .iter()
        .filter(|a| match args.arch {
            ArchChoice::All => true,
            ArchChoice::X86_64 => a.oci == "amd64",
            ArchChoice::Arm64 => a.oci == "arm64",
        })
        .collect();
    setup::run(setup::Scope::Build)?;
    setup::image(&arches.iter().map(|a| a.target).collect::<Vec<_>>())?;
    let target = target_dir();
    let mut done = Vec::new();
    for arch in arches {
        done.push(build(arch, &target)?);
    }
    println!();
    for line in done {
        println!("{line}");
    }
    Ok(())
}

/// Builds, checks and packs one architecture; returns its summary.
fn build(arch: &Arch, target: &Path) -> anyhow::Result<String> {
    eprintln!("xtask: building {} {VERSION} for {} (release, static)", oci::NAME, arch.target);
    let started = Instant::now();
    let linker = format!("CARGO_TARGET_{}_LINKER", arch.target.to_uppercase().replace('-', "_"));
    let target_env = arch.target.replace('-', "_");
    status(
        cargo()
            .args(["build", "--release", "--locked", "--package", "monitor", "--bin", oci::NAME])
            .args(["--target", arch.target])
            // rustc finds its rust-lld in the toolchain; the linker flavour follows the name.
            .env(linker, "rust-lld")
            // ring's C and assembly: clang cross-compiles (cc-rs passes --target) for both.
            .env(format!("CC_{target_env}"), setup::IMAGE_CC)
            .env(format!("AR_{target_env}"), setup::IMAGE_AR)
            // The image's daemon must embed the kernel programs, whatever this shell says.
            .env_remove("AYA_BUILD_SKIP"),
    )?;
    let built = started.elapsed();
    let binary_path = target.join(arch.target).join("release").join(oci::NAME);
    let binary = std::fs::read(&binary_path).with_context(|| format!("reading {}", binary_path.display()))?;
    check_static_elf(&binary, arch.elf_machine).with_context(|| binary_path.display().to_string())?;
    if embedded_bpf_objects(&binary) != 1 {
        bail!("{}: no embedded eBPF object (the kernel programs) found", binary_path.display());
    }
    let version = run_version(&binary_path, arch.runner)?;

    eprintln!("xtask: packing the {} image", arch.oci);
    let image = oci::Image { architecture: arch.oci, binary: &binary, version: VERSION, source: env!("CARGO_PKG_REPOSITORY") };
    let archive = image.archive()?;
    let path = archive_path(target, arch.oci);
    std::fs::create_dir_all(path.parent().unwrap_or(target))?;
    let part = path.with_extension("tar.part");
    std::fs::write(&part, &archive.bytes).with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, &path).with_context(|| format!("writing {}", path.display()))?;
    let shown = path.strip_prefix(crate::workspace_root()).unwrap_or(&path);
    Ok(format!(
        "{oci}: {path}\n  image {name} ({platform}), digest {digest}\n  \
         binary {binary} (static, eBPF object embedded, runs: {version}), layer {layer} compressed, archive {archive_size}; \
         built in {secs:.0}s\n  diff_id {diff_id}",
        oci = arch.oci,
        path = shown.display(),
        name = image.reference(),
        platform = format_args!("linux/{}", arch.oci),
        digest = archive.manifest_digest,
        binary = size(binary.len() as u64),
        layer = size(archive.layer_size),
        archive_size = size(archive.bytes.len() as u64),
        secs = built.as_secs_f64(),
        diff_id = archive.diff_id,
    ))
}

fn size(bytes: u64) -> String {
    format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0))
}

/// A 64-bit little-endian ELF executable for `machine` with no program interpreter: nothing
/// for the kernel to load besides the file itself (an empty base has no libc).
fn check_static_elf(elf: &[u8], machine: u16) -> anyhow::Result<()> {
    let u16_at = |at: usize| elf.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |at: usize| elf.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        bail!("not a 64-bit little-endian ELF file");
    }
    let found = u16_at(18).context("truncated ELF header")?;
    if found != machine {
        bail!("ELF machine {found}, expected {machine}");
    }
    let (phoff, phentsize, phnum) = (
        u64_at(32).context("truncated ELF header")? as usize,
        u16_at(54).context("truncated ELF header")? as usize,
        u16_at(56).context("truncated ELF header")? as usize,
    );
    for i in 0..phnum {
        let p_type = elf.get(phoff + i * phentsize..phoff + i * phentsize + 4).context("truncated program headers")?;
        // PT_INTERP: a dynamically linked executable.
        if p_type == 3u32.to_le_bytes() {
            bail!("has a program interpreter: dynamically linked, it cannot run on an empty base");
        }
    }
    Ok(())
}

/// How many ELF objects for the BPF machine (EM_BPF, 247) `binary` embeds: the kernel programs
/// `monitor/build.rs` builds (none when it was built with `AYA_BUILD_SKIP`).
fn embedded_bpf_objects(binary: &[u8]) -> usize {
    binary
        .windows(20)
        .skip(1)
        .filter(|w| w.starts_with(b"\x7fELF\x02\x01") && u16::from_le_bytes([w[18], w[19]]) == 247)
        .count()
}

/// `binary --version`, through `runner` if the host cannot run it natively.
fn run_version(binary: &Path, runner: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = match runner {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    cmd.arg("--version");
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot start {shown}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text != format!("{} {VERSION}", oci::NAME) {
        bail!("{shown}: {} {text:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(match runner {
        Some(runner) => format!("`{text}` under {runner}"),
        None => format!("`{text}`"),
    })
}
