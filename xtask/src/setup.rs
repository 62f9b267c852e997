//! `setup`: installs what is missing, and nothing that is present (a second run costs about a
//! second). Pinned: the Rust toolchain (with rust-src, for `-Z build-std=core` on the bpf
//! target) and bpf-linker, built against Debian's LLVM 22, the LLVM of that toolchain.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context as _;

use crate::{TOOLCHAIN, status};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
#[allow(dead_code)] pub const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.34.1"; // PyPI, for tests/tests/deploy_manifests.rs (it pip-installs this when missing)

/// Debian packages the build needs: LLVM 22 for bpf-linker, protoc for the CRI protos.
const BUILD_PACKAGES: &[&str] =
    &["llvm-22-dev", "libpolly-22-dev", "libclang-22-dev", "zlib1g-dev", "libzstd-dev", "protobuf-compiler"];

/// Debian packages the tests and benchmarks run for real.
const TEST_PACKAGES: &[&str] =
    &["containerd", "runc", "prometheus", "bpftrace", "bpftool", "busybox-static", "stress-ng", "util-linux", "curl", "python3", "qemu-system-x86"];

/// Rust targets of the release image (`cargo xtask image`): static musl binaries for amd64 and
/// arm64. Both link with the toolchain's own rust-lld and musl (self-contained); the C and
/// assembly of `ring` (rustls' cryptography) are compiled by clang, which targets both.
pub const IMAGE_TARGETS: &[&str] = &["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

/// Debian packages the image build needs: qemu-user-static runs the arm64 binary on this host;
/// clang (of the LLVM the eBPF build uses) compiles `ring` for each target, llvm-ar archives it.
const IMAGE_PACKAGES: &[&str] = &["qemu-user-static", "clang-22"];

/// The C compiler and archiver of the image's targets (from [`IMAGE_PACKAGES`]).
pub const IMAGE_CC: &str = "/usr/lib/llvm-22/bin/clang";
pub const IMAGE_AR: &str = "/usr/lib/llvm-22/bin/llvm-ar";

/// Where the stock Debian kernel's `vmlinuz` for the VM tests (`tests/src/vm.rs`) is kept,
/// under the target dir so that a cache of it carries it over.
const STOCK_KERNEL_DIR: &str = "target/vm";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Build,
    Tests,
}

pub fn run(scope: Scope) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut packages: Vec<&str> = BUILD_PACKAGES.to_vec();
    if scope == Scope::Tests {
        packages.extend_from_slice(TEST_PACKAGES);
    }
    debian_packages(&packages)?;
    toolchain()?;
    bpf_linker()?;
    if scope == Scope::Tests {
        crate::fuzz::cargo_fuzz()?;
        stock_kernel()?;
    }
    eprintln!("xtask: set-up complete in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What `cargo xtask image` needs besides the build set-up: the Rust targets of `targets` (a
/// subset of [`IMAGE_TARGETS`]) and qemu-user-static. Installs only what is missing.
pub fn image(targets: &[&str]) -> anyhow::Result<()> {
    debian_packages(IMAGE_PACKAGES)?;
    let installed =
        quiet(Command::new("rustup").args(["target", "list", "--installed", "--toolchain", TOOLCHAIN])).unwrap_or_default();
    let missing: Vec<&str> = targets.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: adding Rust targets {} to {TOOLCHAIN}", missing.join(" "));
    status(Command::new("rustup").args(["target", "add", "--toolchain", TOOLCHAIN]).args(&missing))
}

fn quiet(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            quiet(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    status(Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()))
        .context("apt-get update (are we root?)")?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null()),
    )
    .context("apt-get install")
}

fn toolchain() -> anyhow::Result<()> {
    let sysroot = quiet(Command::new("rustup").args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"]));
    let has_src = sysroot
        .as_deref()
        .map(|s| PathBuf::from(s.trim()).join("lib/rustlib/src/rust/library/core").is_dir())
        .unwrap_or(false);
    if has_src {
        return Ok(());
    }
    eprintln!("xtask: installing Rust {TOOLCHAIN} with rust-src");
    status(Command::new("rustup").args([
        "toolchain",
        "install",
        TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy,rustfmt",
    ]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = quiet(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about two minutes)");
    status(
        Command::new("cargo")
            .arg(format!("+{TOOLCHAIN}"))
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--force"])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

/// Debian's current stock kernel (the package `linux-image-amd64` depends on), for the VM tests:
/// the probes under a kernel that allows fexit, and a pure cgroup v2 node with the memory
/// controller. Only its `vmlinuz` is kept.
fn stock_kernel() -> anyhow::Result<()> {
    let dir = crate::workspace_root().join(STOCK_KERNEL_DIR);
    if dir.join("vmlinuz").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let depends = quiet(Command::new("apt-cache").args(["depends", "linux-image-amd64"])).unwrap_or_default();
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").filter(|p| p.starts_with("linux-image-")))
        .context("apt-cache depends linux-image-amd64: no linux-image-* dependency")?
        .to_string();
    eprintln!("xtask: downloading the stock kernel {package} (for the fexit VM test)");
    status(Command::new("apt-get").args(["download", "-q", &package]).current_dir(&dir).stdout(Stdio::null()))
        .context("apt-get download of the stock kernel")?;
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("the downloaded kernel package")?;
    let version = package.trim_start_matches("linux-image-");
    let member = format!("./boot/vmlinuz-{version}");
    // Only the kernel image: the package's modules are not needed (the VM boots an initramfs).
    status(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -O '{member}' > vmlinuz.part && mv vmlinuz.part vmlinuz",
        deb.display()
    )).current_dir(&dir))
    .context("extract vmlinuz from the kernel package")?;
    std::fs::remove_file(&deb)?;
    Ok(())
}

