//! A VM on Debian's stock kernel, for what this machine's kernel cannot show (fexit programs,
//! a pure cgroup v2 node with the memory controller). `cargo xtask setup --tests` downloads
//! the kernel to `target/vm/vmlinuz`; QEMU boots it (TCG: there is no KVM here) with an
//! initramfs built by [`Initramfs`]: busybox, the binaries a test adds (stripped, with the
//! shared libraries `ldd` names), its files, and an init script. The test reads the serial
//! console once the VM has powered off ([`Console`]); what it asserts, the init prints between
//! markers (`=== BEGIN name ===` / `=== END name ===`, [`Console::section`]).

use std::{
    io::Read as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Debian's stock kernel, downloaded by `cargo xtask setup --tests`.
pub fn stock_kernel() -> PathBuf {
    let kernel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm/vmlinuz");
    assert!(kernel.exists(), "{} is missing: `cargo xtask setup --tests` downloads Debian's stock kernel", kernel.display());
    kernel
}

/// What every init does first: moves the root to a tmpfs (runc's pivot_root refuses the
/// initramfs' own root, which no mount is under), installs busybox's applets, mounts the pseudo
/// filesystems (tracefs for the probes), brings up loopback, and keeps the console for the
/// init's output (the kernel's OOM reports would land in the middle of a section).
const PREAMBLE: &str = "#!/bin/busybox sh\n\
    if [ ! -e /.root-on-tmpfs ]; then\n\
        /bin/busybox mkdir /newroot && /bin/busybox mount -t tmpfs -o size=90% root /newroot\n\
        for entry in /*; do [ \"$entry\" = /newroot ] || /bin/busybox cp -a \"$entry\" /newroot/; done\n\
        /bin/busybox touch /newroot/.root-on-tmpfs\n\
        exec /bin/busybox switch_root /newroot /init\n\
    fi\n\
    /bin/busybox --install -s /bin\n\
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
    mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
    mount -t tracefs tracefs /sys/kernel/tracing\n\
    mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp\n\
    dmesg -n 1\n\
    ip link set lo up\n\
    echo \"KERNEL $(uname -r)\"\n";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// The VM's root filesystem, staged in a temporary directory and packed as a newc cpio.
pub struct Initramfs {
    dir: PathBuf,
    root: PathBuf,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Initramfs {
    /// A root with busybox, the usual top-level directories and files.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("nrm-vm-{}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        for sub in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "var"] {
            std::fs::create_dir_all(root.join(sub)).expect("initramfs dirs");
        }
        let image = Self { dir, root };
        image.copy(Path::new("/usr/bin/busybox"), "/bin/busybox");
        image.symlink("/run", "/var/run");
        // What a distribution's root has and runtimes copy into host-network sandboxes.
        image.file("/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        image.file("/etc/resolv.conf", "nameserver 127.0.0.1\n");
        image
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn target(&self, path: &str) -> PathBuf {
        let target = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("a path below the root")).expect("parent dir");
        target
    }

    fn copy(&self, from: &Path, to: &str) {
        std::fs::copy(from, self.target(to)).unwrap_or_else(|e| panic!("copy {} to {to}: {e}", from.display()));
    }

    /// A file with `contents` at `path`.
    pub fn file(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        std::fs::write(self.target(path), contents).unwrap_or_else(|e| panic!("write {path}: {e}"));
        self
    }

    /// An executable file (a script) with `contents` at `path`.
    pub fn executable(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        self.file(path, contents);
        std::fs::set_permissions(self.target(path), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(&self, target: &str, path: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.target(path)).unwrap_or_else(|e| panic!("symlink {path}: {e}"));
        self
    }

    /// The host's binary `from` at `path`, stripped, with the shared libraries it needs at
    /// their host paths.
    pub fn binary(&self, from: &Path, path: &str) -> &Self {
        let stripped = Command::new("strip").arg("-o").arg(self.target(path)).arg(from).status().expect("strip");
        assert!(stripped.success(), "strip {}", from.display());
        self.libraries_of(from)
    }

    /// The shared libraries `ldd` says `binary` loads (none for a static binary).
    pub fn libraries_of(&self, binary: &Path) -> &Self {
        let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
        for library in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            if !self.target(library).exists() {
                self.copy(Path::new(library), library);
            }
        }
        self
    }

    /// The host directory `from`'s files (recursively) under `path`.
    pub fn tree(&self, from: &Path, path: &str) -> &Self {
        let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let to = format!("{}/{name}", path.trim_end_matches('/'));
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.tree(&entry.path(), &to);
            } else {
                self.copy(&entry.path(), &to);
            }
        }
        self
    }

    /// Packs the root with `init` (run after the [`PREAMBLE`]; the VM powers off after it),
    /// boots it with `memory` and waits at most `limit` for the VM to power off.
    pub fn boot(self, init: &str, memory: &str, limit: Duration) -> Console {
        self.executable("/init", format!("{PREAMBLE}{init}\necho INIT DONE\npoweroff -f\n"));
        let image = self.dir.join("initramfs.gz");
        let packed = Command::new("sh")
            .arg("-c")
            .arg(format!("find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > '{}'", image.display()))
            .current_dir(&self.root)
            .status()
            .expect("cpio");
        assert!(packed.success(), "packing the initramfs");
        let started = Instant::now();
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", memory, "-nographic", "-no-reboot", "-kernel"])
            .arg(stock_kernel())
            .arg("-initrd")
            .arg(&image)
            // psi=1: the memory pressure tests read PSI, which a kernel built with
            // CONFIG_PSI_DEFAULT_DISABLED (as distributions that fear its cost build it) keeps off.
            .args(["-append", "console=ttyS0 quiet panic=-1 psi=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (Debian qemu-system-x86)");
        // Read the console while QEMU runs: it writes more than a pipe holds and would block.
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).replace('\r', "")
            })
        };
        let console = drain(Box::new(qemu.stdout.take().expect("stdout")));
        let errors = drain(Box::new(qemu.stderr.take().expect("stderr")));
        let mut timed_out = false;
        while qemu.try_wait().expect("wait qemu").is_none() {
            if started.elapsed() > limit {
                let _ = qemu.kill();
                let _ = qemu.wait();
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let elapsed = started.elapsed();
        let text = console.join().expect("console reader");
        let errors = errors.join().expect("stderr reader");
        let _ = std::fs::remove_dir_all(&self.dir);
        // To read what a passing VM printed: NRM_VM_CONSOLE=<file>.
        if let Some(path) = std::env::var_os("NRM_VM_CONSOLE") {
            let _ = std::fs::write(path, &text);
        }
        Console { text, errors, elapsed, timed_out }
    }
}

/// The serial console of a VM that has stopped.
#[derive(Debug)]
pub struct Console {
    pub text: String,
    /// QEMU's own messages.
    pub errors: String,
    /// From QEMU's start to the VM's power-off.
    pub elapsed: Duration,
    /// The VM was killed at the limit.
    pub timed_out: bool,
}

impl Console {
    /// The lines between `=== BEGIN name ===` and `=== END name ===`.
    pub fn section(&self, name: &str) -> Option<String> {
        let begin = format!("=== BEGIN {name} ===\n");
        let start = self.text.find(&begin)? + begin.len();
        let end = self.text[start..].find(&format!("=== END {name} ==="))?;
        Some(self.text[start..start + end].to_string())
    }

    /// The first line containing `needle`.
    pub fn line(&self, needle: &str) -> Option<&str> {
        self.text.lines().find(|l| l.contains(needle))
    }

    /// The uptime the init printed at `T <name> <seconds>` (see the scripts' `stamp`).
    pub fn stamp(&self, name: &str) -> Option<f64> {
        let prefix = format!("T {name} ");
        self.text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// The whole console and QEMU's messages, for a failed assertion.
    pub fn report(&self) -> String {
        format!(
            "VM ran {:?}{}\n--- console ---\n{}\n--- qemu ---\n{}",
            self.elapsed,
            if self.timed_out { " (killed at the limit)" } else { "" },
            self.text,
            self.errors
        )
    }
}
