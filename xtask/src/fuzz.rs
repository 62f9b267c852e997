//! `fuzz`: the cargo-fuzz targets of `fuzz/` (one per parser, and three on properties of whole
//! stages: `pipeline`, attribution, detectors and the findings store on event sequences;
//! `host_root`, the host root on symlink trees; `redaction`, no secret shown), each run for a
//! bounded time with AddressSanitizer, seeded from the test fixtures. A crash, a hang (`-timeout`) or an
//! allocation beyond `-rss_limit_mb` fails the run; the input is kept in
//! `fuzz/artifacts/<target>/` (replay it with `cargo +1.98.0 fuzz run <target> <file>`).
//!
//! The build and the growing corpus live in `target/fuzz/`, so later runs only fuzz. Seeds are
//! rebuilt on every run: fixture files per target, `fuzz/seeds/<target>/`, and the binary
//! records that `write_seeds` makes from monitor-common's structs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{TOOLCHAIN, cargo, status, workspace_root};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 12;

/// Files of one fixture node that make up an `audit_node` input, NUL-separated, in the order
/// of `fuzz/fuzz_targets/audit_node.rs`.
const AUDIT_NODE_FILES: [&str; 8] = [
    "etc/containerd/config.toml",
    "var/lib/kubelet/config.yaml",
    "var/lib/kubelet/kubeadm-flags.env",
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "etc/kubernetes/manifests/kube-apiserver.yaml",
    "proc/meminfo",
    "proc/1/cmdline",
    "etc/k0s/k0s.yaml",
];

/// Whether a fixture file (its path relative to `tests/fixtures/nodes/`) seeds a target.
type Seeds = fn(&str) -> bool;

/// Every target, with the fixture files that seed it.
const TARGETS: [(&str, Seeds); 15] = [
    ("events_decode", |_| false),
    ("kernel_btf", |_| false),
    ("containerd_config", |p| p.ends_with(".toml")),
    ("kubelet_config", |p| {
        p.ends_with("/var/lib/kubelet/config.yaml")
            || p.ends_with("kubelet-config.yaml")
            || p.ends_with("/var/lib/kubelet/kubelet.conf")
            || p.contains("/etc/kubernetes/kubelet/") // nodeadm's config.json and its config.json.d
    }),
    ("kubelet_flags", |p| {
        p.ends_with(".env")
            || p.contains("kubelet.service")
            || p.ends_with("/proc/1/cmdline")
            || p.ends_with("/etc/default/kubelet")
            || p.ends_with("/etc/sysconfig/kubelet")
            || p.ends_with("/etc/eks/kubelet/environment")
    }),
    ("static_pods", |p| p.contains("/manifests/")),
    ("k0s_config", |p| p.contains("/manifests/") || p.ends_with("k0s.yaml")),
    ("cgroup_path", |_| false),
    ("cri_facts", |p| p.ends_with(".cri.json")),
    ("node_lines", |p| p.ends_with("/proc/meminfo")),
    ("audit_node", |_| false),
    ("go_buildinfo", |p| p.contains("/bin/") || p.contains("/sbin/") || p.contains("/var/cache/nodeup/")),
    ("redaction", |_| false),
    ("host_root", |_| false),
    ("pipeline", |_| false),
];

pub struct Options {
    pub seconds: u64,
    pub target: Option<String>,
    /// Only write the seeds (`target/fuzz/seeds/<target>/`), do not fuzz.
    pub seed_only: bool,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let targets: Vec<&str> = match &options.target {
        Some(t) if TARGETS.iter().any(|(name, _)| name == t) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target {t:?}; targets: {}", TARGETS.map(|(n, _)| n).join(" ")),
        None => TARGETS.iter().map(|(n, _)| *n).collect(),
    };
    cargo_fuzz()?;
    let root = workspace_root();
    let dir = root.join("target/fuzz");
    eprintln!("xtask: building the fuzz targets (AddressSanitizer, {})", dir.display());
    let mut build = fuzz_cargo();
    build.args(["fuzz", "build", "--target-dir"]).arg(&dir);
    if let [one] = targets.as_slice() {
        build.arg(one);
        status(fuzz_cargo().args(["fuzz", "build", "--target-dir"]).arg(&dir).arg("write_seeds"))?;
    }
    status(&mut build).context("building the fuzz targets")?;
    let bin = dir.join("x86_64-unknown-linux-gnu/release");
    let seeds = dir.join("seeds");
    let _ = fs::remove_dir_all(&seeds);
    status(Command::new(bin.join("write_seeds")).arg(&seeds))?;
    for target in &targets {
        write_seeds(&root, &seeds, target)?;
    }
    if options.seed_only {
        eprintln!("xtask: seeds written to {}", seeds.display());
        return Ok(());
    }
    let mut failed = Vec::new();
    for target in &targets {
        if let Err(err) = fuzz(&root, &dir, &bin, target, options.seconds) {
            eprintln!("xtask: {err:#}");
            failed.push(*target);
        }
    }
    eprintln!("xtask: fuzzing took {:.0}s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(" "));
    }
    Ok(())
}

/// Installs the pinned cargo-fuzz when it is missing (set-up calls this for the test scope).
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let version = Command::new("cargo").args([&format!("+{TOOLCHAIN}"), "fuzz", "--version"]).stderr(Stdio::null()).output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    status(Command::new("cargo").args([&format!("+{TOOLCHAIN}"), "install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]))
        .context("installing cargo-fuzz")
}

/// `cargo +TOOLCHAIN` for cargo-fuzz: the stable toolchain ships the sanitizer runtimes, and
/// `RUSTC_BOOTSTRAP` lets it take `-Zsanitizer`. The kernel programs are not needed.
fn fuzz_cargo() -> Command {
    let mut cmd = cargo();
    cmd.env("RUSTC_BOOTSTRAP", "1").env("AYA_BUILD_SKIP", "1");
    cmd
}

/// Copies the fixture files that seed `target`, and its committed seeds, into `seeds/<target>/`.
fn write_seeds(root: &Path, seeds: &Path, target: &str) -> anyhow::Result<()> {
    let out = seeds.join(target);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let nodes = root.join("tests/fixtures/nodes");
    let wanted = TARGETS.iter().find(|(n, _)| *n == target).map(|(_, f)| *f).unwrap_or(|_| false);
    let mut files = Vec::new();
    walk(&nodes, &mut files);
    for (i, file) in files.iter().enumerate() {
        let rel = format!("/{}", file.strip_prefix(&nodes).unwrap_or(file).display());
        if wanted(&rel) {
            fs::copy(file, out.join(format!("fixture-{i}"))).with_context(|| format!("copying {}", file.display()))?;
        }
    }
    let committed = root.join("fuzz/seeds").join(target);
    for entry in fs::read_dir(&committed).into_iter().flatten().flatten() {
        fs::copy(entry.path(), out.join(entry.file_name())).with_context(|| format!("copying {}", entry.path().display()))?;
    }
    if target == "audit_node" {
        // One input per fixture node: its files joined by NUL, then its recorded CRI answers.
        for node in fs::read_dir(&nodes).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
            let mut input = Vec::new();
            for file in AUDIT_NODE_FILES {
                let mut bytes = fs::read(node.path().join(file)).unwrap_or_default();
                if file.ends_with("cmdline") {
                    bytes.iter_mut().filter(|b| **b == 0).for_each(|b| *b = b' ');
                }
                input.extend(bytes.into_iter().filter(|b| *b != 0));
                input.push(0);
            }
            input.extend(fs::read(node.path().with_extension("cri.json")).unwrap_or_default());
            fs::write(out.join(node.file_name()), input)?;
        }
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if fs::metadata(&path).is_ok_and(|m| m.len() <= 64 * 1024) {
            out.push(path);
        }
    }
}

/// Runs one target for `seconds`, then prints one line: runs, executions per second, corpus.
fn fuzz(root: &Path, dir: &Path, bin: &Path, target: &str, seconds: u64) -> anyhow::Result<()> {
    let corpus = dir.join("corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    let scratch = dir.join("scratch").join(target);
    let log = dir.join("logs").join(format!("{target}.log"));
    for d in [&corpus, &artifacts, &scratch, &log.parent().unwrap_or(dir).to_path_buf()] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let started = Instant::now();
    let exit = Command::new(bin.join(target))
        .arg(&corpus)
        .arg(dir.join("seeds").join(target))
        .arg(format!("-max_total_time={seconds}"))
        .args(["-rss_limit_mb=512", "-malloc_limit_mb=512", "-timeout=5", "-max_len=65536", "-print_final_stats=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .env("NRM_FUZZ_SCRATCH", &scratch)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("running fuzz target {target}"))?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let stat = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("stat::{name}:")).map(|v| v.trim().to_string())).unwrap_or_else(|| "?".into())
    };
    let inputs = fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "xtask: fuzz {target:<18} {:>4.0}s {:>9} runs {:>7} exec/s  corpus {inputs}",
        started.elapsed().as_secs_f64(),
        stat("number_of_executed_units"),
        stat("average_exec_per_sec"),
    );
    if !exit.success() {
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        bail!("fuzz target {target} failed ({exit}); input in {}, log {}", artifacts.display(), log.display());
    }
    Ok(())
}
