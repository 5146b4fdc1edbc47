//! Order statistics of latency samples.

/// Median, p10 and p90 of a sample set (linear interpolation between closest ranks, as numpy's
/// default), plus its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
}

/// The `q`-quantile (0 ≤ q ≤ 1) of `sorted` (ascending, non-empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Summarises `samples`; None when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    Some(Summary {
        n: s.len(),
        p10: quantile(&s, 0.10),
        median: quantile(&s, 0.50),
        p90: quantile(&s, 0.90),
    })
}

/// The median of `samples` (None when empty).
pub fn median(samples: &[f64]) -> Option<f64> {
    summarize(samples).map(|s| s.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).expect("non-empty");
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert!((s.p10 - 1.4).abs() < 1e-9);
        assert!((s.p90 - 4.6).abs() < 1e-9);
        assert_eq!(median(&[2.0, 4.0]), Some(3.0));
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[7.0]).map(|s| s.p90), Some(7.0));
    }
}
