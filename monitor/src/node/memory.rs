//! Node memory: the capacity from `<host-root>/proc/meminfo`, Kubernetes memory quantities
//! (`512Mi`, `1G`, `5%`) as written in kubelet configuration, and the system's page size.
//! Judging whether reservations are sensible is the audit's job, not this module's.

/// Why meminfo or a quantity could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("no MemTotal line in meminfo")]
    NoMemTotal,
    #[error("MemTotal is not a number of kB: {0}")]
    BadMemTotal(String),
    #[error("not a Kubernetes memory quantity: {0}")]
    BadQuantity(String),
}

/// `MemTotal` in bytes, from the text of `/proc/meminfo` (`MemTotal:       16318404 kB`).
pub fn parse_meminfo_total(text: &str) -> Result<u64, MemoryError> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).ok_or(MemoryError::NoMemTotal)?;
    let rest = line.trim_start_matches("MemTotal:").trim();
    let number = rest.trim_end_matches("kB").trim();
    number
        .parse::<u64>()
        .ok()
        .and_then(|kb| kb.checked_mul(1024))
        .ok_or_else(|| MemoryError::BadMemTotal(rest.chars().take(40).collect()))
}

/// A memory amount: bytes, or a percentage of capacity (eviction thresholds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantity {
    Bytes(u64),
    Percent(f64),
}

impl Quantity {
    /// Bytes, given the node capacity for percentages.
    pub fn bytes_of(self, capacity: u64) -> u64 {
        match self {
            Quantity::Bytes(b) => b,
            Quantity::Percent(p) => ((capacity as f64) * p / 100.0) as u64,
        }
    }
}

/// Parses a Kubernetes quantity: `512Mi`, `1Gi`, `100M`, `1e9`, `1024`, `5%`, `0.5Gi`.
pub fn parse_quantity(text: &str) -> Result<Quantity, MemoryError> {
    let s = text.trim();
    let bad = || MemoryError::BadQuantity(s.chars().take(40).collect());
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| bad())?;
        return if (0.0..=100.0).contains(&v) { Ok(Quantity::Percent(v)) } else { Err(bad()) };
    }
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
        ("", 1.0),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = s.strip_suffix(suffix) {
            if number.is_empty() {
                continue;
            }
            // Exponent form (1e9) only without a suffix.
            if !suffix.is_empty() && number.contains(['e', 'E']) {
                return Err(bad());
            }
            let v: f64 = number.parse().map_err(|_| bad())?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad());
            }
            let bytes = v * factor;
            if bytes > u64::MAX as f64 {
                return Err(bad());
            }
            return Ok(Quantity::Bytes(bytes.ceil() as u64));
        }
    }
    Err(bad())
}

/// `1.5Gi`-style rendering for reports.
pub fn human_bytes(bytes: u64) -> String {
    const GI: f64 = 1073741824.0;
    const MI: f64 = 1048576.0;
    let b = bytes as f64;
    if b >= GI {
        format!("{:.1}Gi", b / GI)
    } else {
        format!("{:.0}Mi", b / MI)
    }
}

/// The system's page size in bytes: the kernel counts memory in pages (an OOM kill's resident
/// memory, a memory cgroup's limit), and pages are 4 KiB, 16 KiB or 64 KiB by architecture
/// and kernel build.
pub fn page_size() -> u64 {
    static SIZE: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        // SAFETY: sysconf has no preconditions; for _SC_PAGESIZE it reads the kernel's AT_PAGESZ.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // It cannot fail on Linux; were it to, the aux vector says the same.
        u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or_else(|| unsafe { libc::getauxval(libc::AT_PAGESZ) })
    });
    *SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    // From a 16 GiB Debian 12 VM.
    const MEMINFO: &str = "MemTotal:       16318404 kB\nMemFree:         9876543 kB\nMemAvailable:   13000000 kB\nBuffers:          123456 kB\n";

    #[test]
    fn meminfo() {
        assert_eq!(parse_meminfo_total(MEMINFO), Ok(16318404 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), Err(MemoryError::NoMemTotal));
        assert!(matches!(parse_meminfo_total("MemTotal: lots kB"), Err(MemoryError::BadMemTotal(_))));
        assert!(matches!(parse_meminfo_total("MemTotal: 99999999999999999999 kB"), Err(MemoryError::BadMemTotal(_))));
        assert_eq!(parse_meminfo_total(""), Err(MemoryError::NoMemTotal));
    }

    #[test]
    fn quantities() {
        for (text, want) in [
            ("512Mi", Quantity::Bytes(512 * 1048576)),
            ("1Gi", Quantity::Bytes(1073741824)),
            ("100M", Quantity::Bytes(100_000_000)),
            ("1024", Quantity::Bytes(1024)),
            ("1e9", Quantity::Bytes(1_000_000_000)),
            ("0.5Gi", Quantity::Bytes(536870912)),
            ("100Mi", Quantity::Bytes(104857600)),
            ("5%", Quantity::Percent(5.0)),
            ("0", Quantity::Bytes(0)),
        ] {
            assert_eq!(parse_quantity(text), Ok(want), "{text}");
        }
        for bad in ["", "Mi", "lots", "-1Gi", "1e3Mi", "200%", "1.2.3Gi", "NaN", "inf"] {
            assert!(parse_quantity(bad).is_err(), "{bad} should not parse");
        }
    }
}
