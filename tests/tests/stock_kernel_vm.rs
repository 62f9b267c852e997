//! The syscall probes' fexit programs, on a kernel that allows fexit. The development machine's
//! kernel refuses every fentry/fexit program, so there the probes fall back to the syscall
//! tracepoints and the fexit programs never run. This test boots Debian's stock kernel (which
//! `cargo xtask setup --tests` downloads to `target/vm/`) in QEMU (`monitor_tests::vm`), with
//! an initramfs holding busybox and `syscall-probes-smoke`, which loads the real probes there,
//! requires fexit for the syscall probes, causes failed execs and connects and checks each event.
//!
//! QEMU emulates the CPU (TCG): KVM is not usable inside this VM. The boot and the smoke test
//! take about 10 s.

use std::{path::Path, time::Duration};

use monitor_tests::vm::Initramfs;

const BOOT_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn on_a_stock_kernel_the_syscall_probes_use_fexit_and_report_the_same_events() {
    let image = Initramfs::new();
    image.binary(Path::new(env!("CARGO_BIN_EXE_syscall-probes-smoke")), "/bin/smoke");
    let console = image.boot("/bin/smoke; echo \"SMOKE EXIT $?\"\n", "1G", BOOT_LIMIT);
    let (report, console) = (console.report(), console.text);
    assert!(console.contains("KERNEL 6."), "the stock kernel did not boot to the init:\n{report}");
    let ok = console.lines().find(|l| l.contains("SMOKE OK")).unwrap_or_else(|| panic!("smoke test failed:\n{report}"));
    for program in ["sys_exit_execve=fexit/__x64_sys_execve", "sys_exit_execveat=fexit/__x64_sys_execveat", "sys_exit_connect=fexit/__x64_sys_connect"] {
        assert!(ok.contains(program), "{program} in {ok}");
    }
    assert!(console.contains("SMOKE EXIT 0"), "{report}");
}
