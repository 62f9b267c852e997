//! A `KubeletConfiguration` file: `kubelet::ConfigFile::parse`, then the lookups the audit makes
//! (scalars with their `file:line`, maps' keys) and the memory quantities in them. Properties:
//! no panic; errors never quote the file beyond the scrubbed parser message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor::node::{kubelet::ConfigFile, memory};

const PATHS: [&[&str]; 8] = [
    &["cgroupDriver"],
    &["containerRuntimeEndpoint"],
    &["staticPodPath"],
    &["podInfraContainerImage"],
    &["systemReserved", "memory"],
    &["kubeReserved", "memory"],
    &["evictionHard", "memory.available"],
    &["authentication", "x509", "clientCAFile"],
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = match ConfigFile::parse(Path::new("/var/lib/kubelet/config.yaml"), text.to_string()) {
        Ok(file) => file,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    for path in PATHS {
        if let Some(value) = file.value(path) {
            if let Ok(q) = memory::parse_quantity(&value.value) {
                let _ = memory::human_bytes(q.bytes_of(u64::MAX));
            }
        }
        let _ = (file.map_keys(path), file.locate(path));
    }
});
