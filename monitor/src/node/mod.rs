//! Node context: what this node is and how it is configured, read from a host root. Modules
//! here only read and parse; they never judge (that is `audit`) and never see kernel events
//! (that is `attribution`, which uses them to name an event's owner).
//!
//! [`snapshot`] is one read of the whole node, [`watch`] keeps it current; [`runtimes`] is the
//! one table of the runtimes and control-plane components every other module derives from.
//! Every parser is a pure function over bytes or text that returns a typed error, never panics,
//! and is tested with samples of real files. Every file of the node is read through
//! [`host_root::HostRoot`].
pub mod binaries;
pub mod buildinfo;
pub mod cgroup_path;
pub mod cgroupfs;
pub mod containerd_config;
pub mod cri;
pub mod cri_clients;
pub mod cri_facts;
pub mod crio_config;
pub mod daemon_args;
pub mod docker_config;
pub mod host_root;
pub mod k0s;
pub mod kubelet;
pub mod memory;
pub mod memory_pressure;
pub mod offline_images;
pub mod parse_error;
pub mod runtimes;
pub mod snapshot;
pub mod static_pods;
pub mod systemd_unit;
pub mod watch;
