//! The small line parsers of the node and attribution, all on every input: `/proc/meminfo`
//! and memory quantities (`node::memory`), version strings (`node::binaries::version_in`),
//! containerd releases, `/proc/self/mountinfo` (`node::cgroupfs::Mounts`), `/proc/cgroups`
//! (`probes::kernel_btf::memcg_on_v1`), kubelet log names (`attribution::kubelet_files`).
//! Properties: no panic; percentages stay within capacity; a version is a word of its line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{
    attribution::kubelet_files::{parse_container_log, parse_pod_dir},
    node::{binaries::version_in, cgroupfs::Mounts, containerd_config::Release, memory},
    probes::kernel_btf::memcg_on_v1,
};

const ID: &str = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251";
const UID: &str = "8f2c1d0e-3b4a-4c5d-9e6f-7a8b9c0d1e2f";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(total) = memory::parse_meminfo_total(text) {
        assert_eq!(total % 1024, 0);
    }
    for line in text.lines().take(64) {
        match memory::parse_quantity(line) {
            Ok(q @ memory::Quantity::Percent(_)) => assert!(q.bytes_of(1 << 40) <= 1 << 40),
            Ok(q) => drop(memory::human_bytes(q.bytes_of(0))),
            Err(e) => drop(e.to_string()),
        }
        if let Some(version) = version_in(line) {
            assert!(line.contains(version.as_str()));
        }
        if let Some(release) = Release::parse(line) {
            let _ = (release.to_string(), release.max_config_version(), release.default_sandbox_image());
            let _ = release.reads_version(line.len() as i64 - 8);
        }
        let _ = (parse_container_log(line, ID), parse_pod_dir(line, UID));
    }
    let _ = Mounts::from_mountinfo(text);
    let _ = memcg_on_v1(text);
});
