//! node-runtime-monitor: an eBPF node agent that says why a node's container runtime or
//! control plane fails.
//!
//! The data flow is the architecture, one module per stage, each knowing only its neighbours
//! (docs/ARCHITECTURE.md has the rules, and a test keeps imports to them):
//!
//! ```text
//! probes (kernel programs, loader, ring buffer reader)
//!   -> events (typed, decoded)
//!     -> attribution (node context: cgroups, CRI, static pods -> owner of each event)
//!       -> detectors -> findings
//!         -> exporters (/metrics, /findings, /healthz, the `check` report)
//! node (reads the node: files under the host root, /proc, cgroupfs, CRI answers; one
//!       snapshot) feeds attribution (kubelet's hints) and audit;
//! audit (judges the snapshot with its rules) feeds findings and the detectors.
//! ```
//!
//! `daemon` (`run`) and `check` are composition roots: they wire the stages and own no logic
//! of their own; `catalogue` assembles every stage's rules; `health` is where any stage says
//! whether its sources are up; `progress` is where a stage marks itself busy or beats, and
//! `/healthz` fails on a stage that stopped making progress.
pub mod attribution;
pub mod audit;
pub mod catalogue;
pub mod check;
pub mod daemon;
pub mod detectors;
pub mod events;
pub mod exporters;
pub mod findings;
pub mod health;
pub mod node;
pub mod probes;
pub mod progress;
