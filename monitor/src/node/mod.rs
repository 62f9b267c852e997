//! Node context: what this node is and how it is configured, read from a host root.
//! Collectors here only read and parse; they never judge (that is `audit`) and never see
//! kernel events (that is `attribution`, which uses them to name an event's owner).
//!
//! Every parser is a pure function over bytes or text that returns a typed error, never panics,
//! and is tested with samples of real files.
pub mod binaries;
pub mod cgroup_path;
pub mod cgroupfs;
pub mod containerd_config;
pub mod cri;
pub mod kubelet;
pub mod host_root;
pub mod memory;
pub mod static_pods;
