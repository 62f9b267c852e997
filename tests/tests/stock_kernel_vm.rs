//! The syscall probes' fexit programs, on a kernel that allows fexit. The development machine's
//! kernel refuses every fentry/fexit program, so there the probes fall back to the syscall
//! tracepoints and the fexit programs never run. This test boots Debian's stock kernel (which
//! `cargo xtask setup --tests` downloads to `target/vm/`) in QEMU, with an initramfs holding
//! busybox and `syscall-probes-smoke`, which loads the real probes there, requires fexit for
//! the syscall probes, causes failed execs and connects and checks each event.
//!
//! QEMU emulates the CPU (TCG): KVM is not usable inside this VM. The boot and the smoke test
//! take about 10 s.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BOOT_LIMIT: Duration = Duration::from_secs(240);

fn stock_kernel() -> PathBuf {
    let kernel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm/vmlinuz");
    assert!(kernel.exists(), "{} is missing: `cargo xtask setup --tests` downloads Debian's stock kernel", kernel.display());
    kernel
}

/// An initramfs (newc cpio, gzip) with busybox, the smoke binary (stripped) and the shared
/// libraries it needs, and an init that mounts what the probes need and runs it.
fn initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for sub in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("initramfs dirs");
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox (Debian busybox-static)");
    let smoke = env!("CARGO_BIN_EXE_syscall-probes-smoke");
    let stripped = Command::new("strip").arg("-o").arg(root.join("bin/smoke")).arg(smoke).status().expect("strip");
    assert!(stripped.success(), "strip {smoke}");
    let ldd = Command::new("ldd").arg(smoke).output().expect("ldd");
    for library in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let target = root.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("library dir")).expect("library dir");
        std::fs::copy(library, &target).unwrap_or_else(|e| panic!("copy {library}: {e}"));
    }
    let init = "#!/bin/busybox sh\n\
        /bin/busybox --install -s /bin\n\
        mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
        mount -t tracefs tracefs /sys/kernel/tracing\n\
        ip link set lo up\n\
        echo \"KERNEL $(uname -r)\"\n\
        /bin/smoke; echo \"SMOKE EXIT $?\"\n\
        poweroff -f\n";
    let init_path = root.join("init");
    std::fs::write(&init_path, init).expect("init");
    let chmod = Command::new("chmod").arg("+x").arg(&init_path).status().expect("chmod");
    assert!(chmod.success());
    let image = dir.join("initramfs.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg(format!("find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > '{}'", image.display()))
        .current_dir(&root)
        .status()
        .expect("cpio");
    assert!(packed.success(), "packing the initramfs");
    image
}

#[test]
fn on_a_stock_kernel_the_syscall_probes_use_fexit_and_report_the_same_events() {
    let kernel = stock_kernel();
    let dir = std::env::temp_dir().join(format!("nrm-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    let image = initramfs(&dir);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1G", "-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&image)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (Debian qemu-system-x86)");
    // Read the console while QEMU runs: a failing smoke test prints its events, more than a
    // pipe holds, and QEMU would block on it.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let console = drain(Box::new(qemu.stdout.take().expect("stdout")));
    let errors = drain(Box::new(qemu.stderr.take().expect("stderr")));
    let started = Instant::now();
    while qemu.try_wait().expect("wait qemu").is_none() {
        if started.elapsed() > BOOT_LIMIT {
            let _ = qemu.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = console.join().expect("console reader");
    let errors = errors.join().expect("stderr reader");
    let _ = std::fs::remove_dir_all(&dir);
    let console = console.replace('\r', "");
    assert!(console.contains("KERNEL 6."), "the stock kernel did not boot to the init:\n{console}\n{errors}");
    let ok = console.lines().find(|l| l.contains("SMOKE OK")).unwrap_or_else(|| panic!("smoke test failed:\n{console}\n{errors}"));
    for program in ["sys_exit_execve=fexit/__x64_sys_execve", "sys_exit_execveat=fexit/__x64_sys_execveat", "sys_exit_connect=fexit/__x64_sys_connect"] {
        assert!(ok.contains(program), "{program} in {ok}");
    }
    assert!(console.contains("SMOKE EXIT 0"), "{console}");
}
