//! A distribution's image list as the node reader reads it: `node::k0s::parse` (k0s
//! `ClusterConfig` images; static pods are `node::static_pods`' target). Properties: no panic;
//! every `file:line` points at a line of the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor::node::k0s;

fn line_ok(source: &str, lines: usize) {
    if let Some((_, line)) = source.rsplit_once(':') {
        let line: usize = line.parse().expect("a line number");
        assert!(line >= 1 && line <= lines, "{source}: the file has {lines} lines");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    match k0s::parse(Path::new("/etc/k0s/k0s.yaml"), text) {
        Ok(k0s) => {
            k0s.images.iter().for_each(|i| line_ok(&i.source, lines));
            k0s.pull_policy.iter().for_each(|(_, source)| line_ok(source, lines));
        }
        Err(err) => drop(err.to_string()),
    }
});
