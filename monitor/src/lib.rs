//! node-runtime-monitor: an eBPF node agent that says why a node's container runtime or
//! control plane fails.
//!
//! The data flow is the architecture, one module per stage, each knowing only its neighbours:
//!
//! ```text
//! probes (kernel programs, loader, ring buffer reader)
//!   -> events (typed, decoded)
//!     -> attribution (node context: cgroups, CRI, static pods -> owner of each event)
//!       -> detectors -> findings
//!         -> exporters (/metrics, /findings, logs)
//! node (what the node is: cgroup paths, CRI sockets, manifests) feeds attribution and audit;
//! audit (runtime configuration rules) feeds findings.
//! ```
pub mod attribution;
pub mod audit;
pub mod daemon;
pub mod detectors;
pub mod events;
pub mod exporters;
pub mod findings;
pub mod node;
pub mod probes;
