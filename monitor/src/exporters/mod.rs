//! Exporters: how what the monitor knows leaves it. They consume metrics and findings and know
//! nothing of how those were produced.
pub mod http;
