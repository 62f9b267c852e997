//! cgroup paths: `node::cgroup_path::parse` (owner of a path: container, pod, host unit, host).
//! Properties: no panic; container ids are 64 hex digits or a short `ctr` name; pod uids are
//! lower-case UUIDs or 32-digit hashes; the result serialises; the same path with redundant
//! slashes gives the same owner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::node::cgroup_path::{CgroupOwner, ContainerId, PodCgroup, parse};

fn check_pod(pod: &PodCgroup) {
    let uid = &pod.uid;
    assert!(uid.len() == 36 || uid.len() == 32, "pod uid {uid:?}");
    assert!(uid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-'), "pod uid {uid:?}");
    let _ = pod.uid_is_config_hash();
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let owner = parse(path);
    match &owner {
        CgroupOwner::Container(c) => {
            let id = c.id.as_str();
            let hex = ContainerId::parse_hex(id).is_some();
            assert!(hex || (c.containerd_namespace.is_some() && !id.is_empty() && id.len() <= 128), "id {id:?}");
            assert!(c.id.short().len() <= 12);
            let _ = c.runtime.as_str();
            c.pod.iter().for_each(check_pod);
        }
        CgroupOwner::Pod(pod) => check_pod(pod),
        CgroupOwner::HostService { unit, service } => assert!(unit.contains(service.as_str())),
        CgroupOwner::Host { path } => assert!(path.starts_with('/')),
    }
    serde_json::to_string(&owner).expect("an owner serialises");
    assert_eq!(parse(&path.replace('/', "//")), owner, "double slashes change the owner of {path:?}");
});
