//! The user-space pipeline bench: runs criterion on `monitor/benches/pipeline.rs` with short
//! measurement times and reads each benchmark's median throughput off its console output, for
//! the table. It measures no kernel cost and starts no tracer, and its figures take no part in
//! the ratios of the runs.

use std::process::Stdio;

use anyhow::{Context as _, bail};

/// Runs the criterion bench (`monitor/benches/pipeline.rs`) with short measurement times and
/// returns each benchmark's median throughput in elements (events) per second.
pub(super) fn throughputs() -> anyhow::Result<Vec<(String, f64)>> {
    let out = crate::cargo()
        .args(["bench", "--package", "monitor", "--bench", "pipeline", "--", "--warm-up-time", "1", "--measurement-time", "3", "--noplot"])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench --bench pipeline failed ({})", out.status);
    }
    Ok(parse_criterion(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_criterion(text: &str) -> Vec<(String, f64)> {
    let mut results = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !line.starts_with(char::is_whitespace) && !line.is_empty() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('/') {
                name = first.to_string();
            }
        }
        if let Some(rest) = trimmed.strip_prefix("thrpt:") {
            let parts: Vec<&str> = rest.trim().trim_matches(['[', ']']).split_whitespace().collect();
            // [low unit mid unit high unit]
            if let (Some(value), Some(unit)) = (parts.get(2), parts.get(3)) {
                let scale = match *unit {
                    "Gelem/s" => 1e9,
                    "Melem/s" => 1e6,
                    "Kelem/s" => 1e3,
                    _ => 1.0,
                };
                if let Ok(v) = value.parse::<f64>() {
                    results.push((name.clone(), v * scale));
                }
            }
        }
    }
    results
}
