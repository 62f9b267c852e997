//! The statistics of the repeats: the median, a percentile, and a bootstrap interval of the
//! median. Plain functions of a slice of numbers: they do not know which runs count, how
//! ratios are paired repeat by repeat (report.rs chooses both), or how a figure is printed.

pub(super) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// 90% bootstrap interval of the median of `v` (resampled 2000 times, with a fixed seed so a
/// report can be reproduced from its runs).
pub(super) fn median_interval(v: &[f64]) -> (f64, f64) {
    if v.len() < 2 {
        return (median(v), median(v));
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let medians: Vec<f64> = (0..2000)
        .map(|_| median(&(0..v.len()).map(|_| v[(next() % v.len() as u64) as usize]).collect::<Vec<_>>()))
        .collect();
    (percentile(&medians, 5.0), percentile(&medians, 95.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_interval_holds_the_median_and_is_a_point_when_repeats_agree() {
        assert_eq!(median_interval(&[1.07; 7]), (1.07, 1.07));
        let v = [0.96, 1.01, 1.03, 1.04, 1.05, 1.09, 1.15];
        let (low, high) = median_interval(&v);
        assert!(low <= median(&v) && median(&v) <= high, "{low} {high}");
        assert!(low >= 0.96 && high <= 1.15 && low < high, "{low} {high}");
    }
}
