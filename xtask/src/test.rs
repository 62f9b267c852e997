//! `test`: the whole suite with cargo-nextest (one summary at the end). Needs root: the
//! integration tests load the eBPF programs into this kernel and start containerd and
//! Prometheus.

use std::process::Command;

use anyhow::Context as _;

use crate::{TOOLCHAIN, cargo, setup, status};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run(setup::Scope::Tests)?;
    crate::fuzz::run(&crate::fuzz::Options { seconds: crate::fuzz::CI_SECONDS, target: None, seed_only: false })?;
    nextest()?;
    // The end-to-end tests run the daemon binary itself, which `nextest run` does not build.
    status(cargo().args(["build", "--package", "monitor", "--bin", "node-runtime-monitor"]))?;
    // The image (both architectures) for the image and DaemonSet tests: built here, not in a
    // test, whose 5-minute limit a cold cross build would pass.
    crate::image::run(&crate::image::Args { arch: crate::image::ArchChoice::All })?;
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "--workspace", "--exclude", "monitor-ebpf", "--no-fail-fast"]).args(args);
    status(&mut cmd)
}

fn nextest() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args([&format!("+{TOOLCHAIN}"), "nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-nextest");
    status(Command::new("cargo").args([&format!("+{TOOLCHAIN}"), "install", "cargo-nextest", "--locked"]))
        .context("installing cargo-nextest")
}
