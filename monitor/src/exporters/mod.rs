//! Exporters: how what the monitor knows leaves it: `/metrics`, `/findings` and `/healthz`
//! over HTTP ([`http`], with TLS and authentication as [`web_config`] says), and the `check` report ([`check_report`]). They consume metrics and
//! findings and know nothing of how those were produced.
pub mod check_report;
pub mod http;
pub mod web_config;
