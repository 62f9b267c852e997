//! Test harness: real kernel programs, real processes, real cgroups.
//!
//! Tests load the eBPF programs into the running kernel (they must run as root) and cause the
//! events they check. A test that cannot load the programs fails with a message saying why; it
//! never passes by skipping.

pub mod architecture;
pub mod bpf_objects;
pub mod capture;
pub mod cgroups;
pub mod containerd;
pub mod daemon;
pub mod fixture_node;
pub mod pod_template;
pub mod prometheus;
pub mod vm;
