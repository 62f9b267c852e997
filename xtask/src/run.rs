//! `run`: builds the daemon and runs it on this host (as root), e.g.
//! `cargo xtask run -- --listen 127.0.0.1:9750`.

use crate::{cargo, setup, status};

pub fn run(release: bool, args: &[String]) -> anyhow::Result<()> {
    setup::run(setup::Scope::Build)?;
    let mut cmd = cargo();
    cmd.args(["run", "--package", "monitor", "--bin", "node-runtime-monitor"]);
    if release {
        cmd.arg("--release");
    }
    cmd.arg("--").arg("run").args(args);
    status(&mut cmd)
}
