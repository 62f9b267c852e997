//! The OCI image `cargo xtask image` writes, one archive per architecture
//! (`<target>/image/node-runtime-monitor-<version>-<amd64|arm64>.oci.tar`), read back with GNU
//! tar and sha256sum rather than the crates that wrote it:
//! - the layout: one manifest per archive, every blob named by its digest, the config
//!   (entrypoint, cmd, port, platform, labels), and one layer holding only the binary, owned by
//!   0:0 with mode 0755;
//! - the binary taken out of the layer is a static ELF of its architecture and, natively for
//!   amd64 and under qemu-aarch64-static for arm64, prints `--help` and audits every fixture node
//!   (`check --cri-replay`) with the very report the test build of the daemon gives;
//! - the DaemonSet's container (its `command`/`args` resolved against the image's entrypoint and
//!   cmd, as the runtime does) starts the daemon's `run`;
//! - a real containerd (`ctr -n k8s.io images import`) registers each archive, with its digest
//!   and platform, under the name the DaemonSet's `image:` normalises to, and its CRI resolves
//!   that `image:` to it;
//! - deploy/Dockerfile's final stage has the same layout.
//!
//! An archive that is missing is built here with `cargo xtask image --arch <arch>`. That takes
//! minutes on a cold target dir, so `cargo xtask test` builds the archives before the suite.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
    time::Duration,
};

use k8s_cri::v1 as cri;
use monitor_tests::containerd::Containerd;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const NAME: &str = "node-runtime-monitor";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The target dir of this test run (`<target>/debug/deps/image-<hash>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn output(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = output(cmd);
    assert!(out.status.success(), "{shown}: {}\n{}", out.status, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One architecture of the image.
#[derive(Clone, Copy)]
struct Arch {
    /// OCI architecture, the archive's suffix.
    oci: &'static str,
    /// `cargo xtask image --arch` value.
    xtask: &'static str,
    elf_machine: u16,
    /// What runs its binaries here (none: natively).
    runner: Option<&'static str>,
}

const AMD64: Arch = Arch { oci: "amd64", xtask: "x86_64", elf_machine: 62, runner: None };
const ARM64: Arch = Arch { oci: "arm64", xtask: "arm64", elf_machine: 183, runner: Some("qemu-aarch64-static") };

/// The archive of `arch`, built with `cargo xtask image` if it is missing.
fn archive(arch: Arch) -> PathBuf {
    // One build at a time within this process (tests of one binary may run as threads).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let path = target_dir().join("image").join(format!("{NAME}-{VERSION}-{}.oci.tar", arch.oci));
    if !path.exists() {
        let mut cmd = Command::new("cargo");
        cmd.args(["xtask", "image", "--arch", arch.xtask]).current_dir(root()).env("CARGO_TARGET_DIR", target_dir());
        // As a user runs it: xtask's own toolchain, not the one running this suite.
        for var in ["RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO", "AYA_BUILD_SKIP"] {
            cmd.env_remove(var);
        }
        run_ok(&mut cmd);
        assert!(path.exists(), "`cargo xtask image --arch {}` did not write {}", arch.xtask, path.display());
    }
    path
}

/// An archive unpacked into a directory of its own, removed on drop unless the test failed.
struct Unpacked {
    arch: Arch,
    archive: PathBuf,
    dir: PathBuf,
    index: Value,
    manifest: Value,
    config: Value,
    /// The compressed layer blob.
    layer: PathBuf,
    /// The binary extracted from the layer.
    binary: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrm-image-{tag}-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json_file(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unpacks `arch`'s archive with GNU tar and follows index -> manifest -> config, layer.
fn unpack(arch: Arch) -> Unpacked {
    let archive = archive(arch);
    let dir = tempdir(arch.oci);
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("a digest");
        layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").expect("sha256 digest"))
    };
    let index = json_file(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image per archive: {index}");
    let manifest = json_file(&blob(&manifests[0]["digest"]));
    let config = json_file(&blob(&manifest["config"]["digest"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer = blob(&layers[0]["digest"]);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    run_ok(Command::new("tar").arg("-xzf").arg(&layer).arg("-C").arg(&rootfs));
    Unpacked { arch, archive, binary: rootfs.join(NAME), dir, index, manifest, config, layer }
}

/// `binary args`, natively or through the architecture's runner.
fn run_binary(arch: Arch, binary: &Path, args: &[&str]) -> Output {
    let mut cmd = match arch.runner {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    output(cmd.args(args).current_dir(root()))
}

/// Machine and whether the ELF file asks for a program interpreter (is dynamically linked).
fn elf_machine_and_interpreter(elf: &[u8]) -> (u16, bool) {
    assert!(elf.starts_with(b"\x7fELF\x02\x01"), "a 64-bit little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
    let interp = (0..phnum).any(|i| elf[phoff + i * phentsize..phoff + i * phentsize + 4] == 3u32.to_le_bytes());
    (u16_at(18), interp)
}

/// The fixture nodes: (host root, recorded CRI answers), relative to the workspace root.
fn fixtures() -> Vec<(String, String)> {
    let dir = root().join("tests/fixtures/nodes");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/nodes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.with_extension("cri.json").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (format!("tests/fixtures/nodes/{name}"), format!("tests/fixtures/nodes/{name}.cri.json"))
        })
        .collect();
    found.sort();
    assert!(found.len() >= 2, "fixture nodes in {}", dir.display());
    found
}

fn assert_layout(image: &Unpacked) {
    // Every blob is named by its digest (sha256sum, not the writer's hash).
    let blobs = image.dir.join("layout/blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let sum = run_ok(Command::new("sha256sum").arg(&path));
        assert_eq!(sum.split_whitespace().next(), path.file_name().unwrap().to_str(), "{}", path.display());
    }
    assert_eq!(json_file(&image.dir.join("layout/oci-layout")), json!({ "imageLayoutVersion": "1.0.0" }));
    let descriptor = &image.index["manifests"][0];
    assert_eq!(descriptor["platform"], json!({ "architecture": image.arch.oci, "os": "linux" }));
    assert_eq!(descriptor["annotations"]["io.containerd.image.name"], format!("docker.io/library/{NAME}:{VERSION}"));
    assert_eq!(descriptor["annotations"]["org.opencontainers.image.ref.name"], VERSION);
    let config = &image.config;
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some(image.arch.oci), Some("linux")));
    assert_eq!(config["config"]["Entrypoint"], json!(["/node-runtime-monitor"]));
    assert_eq!(config["config"]["Cmd"], json!(["run"]));
    assert_eq!(config["config"]["ExposedPorts"], json!({ "9750/tcp": {} }));
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], NAME);
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    let repository = read("Cargo.toml").lines().find_map(|l| l.strip_prefix("repository = \"").map(|r| r.trim_end_matches('"').to_string()));
    assert_eq!(labels["org.opencontainers.image.source"].as_str(), repository.as_deref());
    let diff_id = run_ok(Command::new("sh").arg("-c").arg("gzip -dc \"$1\" | sha256sum").arg("sh").arg(&image.layer));
    assert_eq!(config["rootfs"]["diff_ids"], json!([format!("sha256:{}", diff_id.split_whitespace().next().unwrap())]));

    // The layer: the binary and nothing else, root-owned, 0755, mtime 0 (reproducible).
    let listing = run_ok(Command::new("tar").args(["-tvzf"]).arg(&image.layer).args(["--numeric-owner", "--full-time"]));
    let entries: Vec<Vec<&str>> = listing.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(entries.len(), 1, "one file in the layer:\n{listing}");
    let size = std::fs::metadata(&image.binary).unwrap().len().to_string();
    assert_eq!(entries[0], ["-rwxr-xr-x", "0/0", size.as_str(), "1970-01-01", "00:00:00", NAME], "{listing}");
    let in_rootfs: Vec<_> = std::fs::read_dir(image.dir.join("rootfs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(in_rootfs, [NAME], "nothing but the binary in the image's filesystem");

    let (machine, interpreter) = elf_machine_and_interpreter(&std::fs::read(&image.binary).unwrap());
    assert_eq!(machine, image.arch.elf_machine, "ELF machine of the {} binary", image.arch.oci);
    assert!(!interpreter, "the {} binary is static: an empty base has no dynamic loader", image.arch.oci);
    // The kernel programs are in it: one embedded ELF object for the BPF machine (247).
    let binary = std::fs::read(&image.binary).unwrap();
    let bpf_objects = binary
        .windows(20)
        .skip(1)
        .filter(|w| w.starts_with(b"\x7fELF\x02\x01") && u16::from_le_bytes([w[18], w[19]]) == 247)
        .count();
    assert_eq!(bpf_objects, 1, "the {} binary embeds the eBPF object", image.arch.oci);
}

/// `--help`, `--version`, and `check` on every fixture node giving the test build's report.
fn assert_runs(image: &Unpacked) {
    let arch = image.arch;
    let help = run_binary(arch, &image.binary, &["--help"]);
    assert!(help.status.success(), "{} --help: {}", arch.oci, text(&help));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: node-runtime-monitor") && help.contains("  run ") && help.contains("  check "), "{help}");
    let version = run_binary(arch, &image.binary, &["--version"]);
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("{NAME} {VERSION}"), "{}", text(&version));

    let reference = monitor_tests::daemon::binary();
    for (node, replay) in fixtures() {
        let args = ["check", "--host-root", &node, "--cri-replay", &replay, "--output", "json"];
        let got = run_binary(arch, &image.binary, &args);
        let want = output(Command::new(&reference).args(args).current_dir(root()));
        let code = got.status.code();
        assert!(matches!(code, Some(0..=2)), "{} check of {node}: {code:?} (3: the check failed)\n{}", arch.oci, text(&got));
        let report: Value = serde_json::from_slice(&got.stdout).unwrap_or_else(|e| panic!("{} check of {node}: {e}\n{}", arch.oci, text(&got)));
        assert_eq!(report["exit_code"].as_i64(), code.map(i64::from), "{node}");
        assert_eq!(code, want.status.code(), "{} check of {node}: exit code of the test build's daemon", arch.oci);
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&want.stdout),
            "{} check of {node}: the image's binary and the test build disagree (is the archive older than the sources? \
             `cargo xtask image` rebuilds it; `cargo xtask test` does before the suite)",
            arch.oci
        );
    }
}

#[test]
fn the_amd64_image_is_the_static_binary_alone_and_it_runs_help_and_check() {
    let image = unpack(AMD64);
    assert_layout(&image);
    assert_runs(&image);
}

#[test]
fn the_arm64_image_is_the_static_binary_alone_and_it_runs_help_and_check_under_qemu_user() {
    let image = unpack(ARM64);
    assert_layout(&image);
    assert_runs(&image);
}

#[test]
fn the_two_archives_differ_only_by_their_binary_and_platform() {
    let (amd64, arm64) = (unpack(AMD64), unpack(ARM64));
    let strip = |config: &Value| {
        let mut c = config.clone();
        c["architecture"] = Value::Null;
        c["rootfs"] = Value::Null;
        c
    };
    assert_eq!(strip(&amd64.config), strip(&arm64.config));
    assert_ne!(amd64.index["manifests"][0]["digest"], arm64.index["manifests"][0]["digest"]);
}

/// The DaemonSet's container, from deploy/daemonset.yaml: `image`, `command`, `args` (block
/// sequences of plain or quoted scalars, or flow sequences, as the manifest writes them).
struct DaemonSetContainer {
    image: String,
    command: Vec<String>,
    args: Vec<String>,
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').trim_matches('\'').to_string()
}

fn daemonset_container() -> DaemonSetContainer {
    parse_container(&read("deploy/daemonset.yaml"))
}

/// The first container of the pod template in `text`.
fn parse_container(text: &str) -> DaemonSetContainer {
    let mut lines = text.lines().skip_while(|l| l.trim() != "containers:").skip(1).peekable();
    let first = *lines.peek().expect("a container in deploy/daemonset.yaml");
    let key_indent = first.find("- ").expect("containers: a block sequence") + 2;
    let mut fields: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let mut current: Option<String> = None;
    for (i, line) in lines.enumerate() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let at_key = if i == 0 { content.strip_prefix("- ") } else { (indent == key_indent).then_some(content) };
        if let Some(entry) = at_key {
            let (key, value) = entry.split_once(':').unwrap_or((entry, ""));
            current = Some(key.trim().to_string());
            fields.insert(key.trim().to_string(), (value.trim().to_string(), Vec::new()));
        } else if indent < key_indent {
            break; // the next container, or the pod spec's next field
        } else if let (Some(key), Some(item)) = (&current, content.strip_prefix("- ")) {
            fields.get_mut(key).unwrap().1.push(unquote(item));
        }
    }
    let list = |key: &str| match fields.get(key) {
        None => Vec::new(),
        Some((flow, _)) if flow.starts_with('[') => {
            flow.trim_matches(['[', ']']).split(',').map(unquote).filter(|s| !s.is_empty()).collect()
        }
        Some((_, items)) => items.clone(),
    };
    DaemonSetContainer {
        image: unquote(&fields.get("image").expect("the container's image").0),
        command: list("command"),
        args: list("args"),
    }
}

/// The process a runtime starts for a container with `command` and `args` from an image with
/// `config`: Kubernetes' rule, as containerd's CRI applies it (`command` replaces the
/// entrypoint, `args` the cmd; with a `command` the image's cmd is not used).
fn process_args(config: &Value, command: &[String], args: &[String]) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
    };
    let mut argv = if command.is_empty() { strings(&config["config"]["Entrypoint"]) } else { command.to_vec() };
    if args.is_empty() && command.is_empty() {
        argv.extend(strings(&config["config"]["Cmd"]));
    } else {
        argv.extend(args.iter().cloned());
    }
    argv
}

#[test]
fn the_container_of_a_manifest_and_the_process_it_runs_are_read_as_kubernetes_does() {
    let manifest = |command: &str| {
        [
            "spec:",
            "  template:",
            "    spec:",
            "      containers:",
            "        - name: monitor",
            "          image: \"nrm:1\"",
            command,
            "          args:",
            "            - --host-root=/host",
            "            - '--listen=0.0.0.0:9750'",
            "          ports:",
            "            - name: metrics",
            "      volumes:",
            "        - name: host",
        ]
        .join("\n")
    };
    let config = json!({ "config": { "Entrypoint": ["/bin/nrm"], "Cmd": ["run"] } });
    let cases = [
        ("", vec!["/bin/nrm", "--host-root=/host", "--listen=0.0.0.0:9750"]),
        ("          command: [\"/bin/nrm\", run]", vec!["/bin/nrm", "run", "--host-root=/host", "--listen=0.0.0.0:9750"]),
        ("          command:\n            - /bin/other", vec!["/bin/other", "--host-root=/host", "--listen=0.0.0.0:9750"]),
    ];
    for (command, want) in cases {
        let c = parse_container(&manifest(command));
        assert_eq!(c.image, "nrm:1");
        assert_eq!(process_args(&config, &c.command, &c.args), want, "{command:?}");
    }
    // Neither command nor args: the image's entrypoint and cmd.
    assert_eq!(process_args(&config, &[], &[]), ["/bin/nrm", "run"]);
}

#[test]
fn the_daemonsets_container_runs_the_daemon_from_the_image() {
    let image = unpack(AMD64);
    let container = daemonset_container();
    assert_eq!(container.image, format!("{NAME}:{VERSION}"));
    let argv = process_args(&image.config, &container.command, &container.args);
    assert_eq!(argv.first().map(String::as_str), Some("/node-runtime-monitor"), "the DaemonSet runs the image's binary: {argv:?}");
    assert_eq!(argv.get(1).map(String::as_str), Some("run"), "the DaemonSet's container starts the daemon (`run`): {argv:?}");
    // The binary accepts exactly this command line (`--help` stops it before it starts).
    let mut args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    args.push("--help");
    let out = run_binary(AMD64, &image.binary, &args);
    assert!(out.status.success(), "the image's binary rejects the DaemonSet's command line {argv:?}: {}", text(&out));
}

#[test]
fn deploy_dockerfile_builds_the_same_layout() {
    let image = unpack(AMD64);
    let dockerfile = read("deploy/Dockerfile");
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                let instruction = std::mem::take(&mut pending);
                if !instruction.trim().is_empty() {
                    instructions.push(instruction.trim().to_string());
                }
            }
        }
    }
    let last_from = instructions.iter().rposition(|i| i.starts_with("FROM ")).expect("FROM");
    let stage = &instructions[last_from..];
    assert_eq!(stage[0], "FROM scratch", "an empty base");
    let find = |keyword: &str| -> Vec<&String> { stage.iter().filter(|i| i.starts_with(&format!("{keyword} "))).collect() };
    let copies = find("COPY");
    assert_eq!(copies.len(), 1, "one file in the image: {copies:?}");
    assert!(copies[0].ends_with(" /node-runtime-monitor /node-runtime-monitor"), "{}", copies[0]);
    let exec_form = |keyword: &str| -> Value {
        let found = find(keyword);
        assert_eq!(found.len(), 1, "one {keyword}");
        serde_json::from_str(found[0][keyword.len()..].trim()).unwrap_or_else(|e| panic!("{keyword} in exec form: {e}"))
    };
    assert_eq!(exec_form("ENTRYPOINT"), image.config["config"]["Entrypoint"]);
    assert_eq!(exec_form("CMD"), image.config["config"]["Cmd"]);
    let exposed: Vec<String> = find("EXPOSE")
        .iter()
        .flat_map(|i| i["EXPOSE".len()..].split_whitespace().map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") }))
        .collect();
    let ports: Vec<String> = image.config["config"]["ExposedPorts"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(exposed, ports);
    // Labels, with the stage's ARG defaults substituted.
    let args: HashMap<String, String> = find("ARG")
        .iter()
        .filter_map(|i| i["ARG".len()..].trim().split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let mut labels = serde_json::Map::new();
    for label in find("LABEL") {
        let mut rest = label["LABEL".len()..].trim();
        while let Some((key, value)) = rest.split_once("=\"") {
            let (value, after) = value.split_once('"').expect("a quoted label value");
            let value = args.iter().fold(value.to_string(), |v, (k, a)| v.replace(&format!("${{{k}}}"), a));
            labels.insert(key.trim().to_string(), Value::String(value));
            rest = after;
        }
    }
    assert_eq!(Value::Object(labels), image.config["config"]["Labels"]);
    // The build stage builds the static binary of the same Rust targets as xtask.
    let setup = read("xtask/src/setup.rs");
    let targets = setup.lines().find(|l| l.contains("const IMAGE_TARGETS")).expect("IMAGE_TARGETS in xtask/src/setup.rs");
    for target in targets.split('"').skip(1).step_by(2) {
        assert!(instructions.iter().any(|i| i.starts_with("RUN ") && i.contains("rustup target add") && i.contains(target)), "{target}");
        assert!(dockerfile.contains("--target \"${target}\"") && dockerfile.contains(&format!("target={target}")), "{target}");
    }
}

#[test]
fn containerd_imports_the_archives_under_the_daemonsets_image_name() {
    let (amd64, arm64) = (unpack(AMD64), unpack(ARM64));
    let ctd = Containerd::start();
    let ctr = |namespace: &str, args: &[&str]| -> String {
        run_ok(Command::new("ctr").arg("-a").arg(&ctd.socket).args(["-n", namespace]).args(args))
    };
    let reference = format!("docker.io/library/{NAME}:{VERSION}");
    // arm64 into a namespace of its own (one name per namespace), all platforms: by default ctr
    // imports only this host's.
    for (namespace, image, extra) in [("k8s.io", &amd64, None), ("nrm-arm64", &arm64, Some("--all-platforms"))] {
        let mut args = vec!["images", "import", "--snapshotter", "native"];
        args.extend(extra);
        args.push(image.archive.to_str().unwrap());
        ctr(namespace, &args);
        let listing = ctr(namespace, &["images", "ls"]);
        let line = listing
            .lines()
            .find(|l| l.starts_with(&format!("{reference} ")))
            .unwrap_or_else(|| panic!("{reference} not in namespace {namespace}:\n{listing}"));
        let manifest_digest = image.index["manifests"][0]["digest"].as_str().unwrap();
        assert!(line.split_whitespace().any(|w| w == manifest_digest), "{namespace}: the archive's manifest digest:\n{listing}");
        let platform = format!("linux/{}", image.arch.oci);
        assert!(line.split_whitespace().any(|w| w == platform), "{namespace}: {platform}:\n{listing}");
    }

    // CRI (kubelet's view) resolves the DaemonSet's `image:` to it: kubelet finds it present
    // and pulls nothing (tests/tests/daemonset_e2e.rs runs the DaemonSet's container from it).
    let image = daemonset_container().image;
    let spec = cri::ImageSpec { image: image.clone(), ..Default::default() };
    let mut images = cri::image_service_client::ImageServiceClient::new(tonic_channel(&ctd));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = ctd
            .block_on(images.image_status(cri::ImageStatusRequest { image: Some(spec.clone()), verbose: false }))
            .ok()
            .and_then(|r| r.into_inner().image);
        if let Some(status) = status {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "CRI does not resolve {image} after the import:\n{}", ctd.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.repo_tags.contains(&reference), "{image}: {:?}", status.repo_tags);
    assert_eq!(Some(status.id.as_str()), amd64.manifest["config"]["digest"].as_str(), "the image's id is its config's digest");
}

fn tonic_channel(ctd: &Containerd) -> tonic::transport::Channel {
    ctd.block_on(monitor::node::cri::connect(&ctd.socket, Duration::from_secs(2))).expect("CRI channel")
}
