//! The monitor's own health, as the stages report it: whether each source of node context is
//! available ([`sources`]) and how the monitor's previous run ended ([`previous_run`]: its
//! restarts, and an OOM kill of it read from its memory cgroup). Nothing here reads the node's
//! configuration or judges it.
pub mod previous_run;
pub mod sources;

pub use sources::SourceHealth;
