//! Detectors: turn attributed events into deaths and findings. Each detector is a small state
//! machine fed one event at a time; none does I/O.
pub mod kills;
