//! Holm–Bonferroni step-down over the metrics' fail p-values: which Fail candidates stand while keeping the
//! chance of any false rollback across all metrics at alpha.

/// For each p-value, the level it is compared with and whether it is rejected. The family is all of `p_values`;
/// they are sorted ascending and the k-th smallest (0-based) is compared with `alpha / (m − k)` until the first
/// one that is not rejected; that one and all larger ones are kept.
pub fn holm_bonferroni(p_values: &[f64], alpha: f64) -> Vec<(f64, bool)> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut result = vec![(alpha, false); m];
    let mut still_rejecting = true;
    for (rank, &index) in order.iter().enumerate() {
        let level = alpha / (m - rank) as f64;
        let rejected = still_rejecting && p_values[index] <= level;
        still_rejecting = rejected;
        result[index] = (level, rejected);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_in_step_down_order_and_stops_at_first_keep() {
        let result = holm_bonferroni(&[0.01, 0.04, 0.03, 0.2], 0.05);
        // Sorted: 0.01 <= 0.05/4, 0.03 > 0.05/3 stops; 0.04 and 0.2 are kept too.
        assert_eq!(result[0], (0.0125, true));
        assert!(!result[2].1);
        assert!(!result[1].1);
        assert!(!result[3].1);
    }

    #[test]
    fn single_metric_is_compared_with_alpha() {
        assert_eq!(holm_bonferroni(&[0.049], 0.05), vec![(0.05, true)]);
    }
}
