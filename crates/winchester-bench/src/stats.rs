//! Medians, percentiles, min/max.

/// Median (mean of the middle two for an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// The `p`th percentile by linear interpolation between closest ranks; 0 when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0).clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (rank - lo as f64)
}

/// Median, min and max of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarizes `v` (zeros when empty).
    pub fn of(v: &[f64]) -> Summary {
        Summary {
            median: median(v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min).min(if v.is_empty() { 0.0 } else { f64::INFINITY }),
            max: v.iter().copied().fold(if v.is_empty() { 0.0 } else { f64::NEG_INFINITY }, f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 100.0), 5.0);
        assert_eq!(median(&[]), 0.0);
        let s = Summary::of(&[2.0, 5.0, 1.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 5.0));
        assert_eq!(Summary::of(&[]), Summary { median: 0.0, min: 0.0, max: 0.0 });
    }
}
