//! The disclosure rules for one magnitude cell and for one model, as ACRO states them.
//!
//! Owns only the arithmetic: given a cell's contributions (the dataset values that went into it)
//! or a model's size, each function says whether its rule is broken. Which cells, which values
//! and what the report says belong to the caller (`magnitude`).
//!
//! The boundaries follow ACRO (SACRO's checker) exactly, so that the two agree on the same data:
//! - n,k dominance fails when the `n` largest contributions make up **`k` or more** of a
//!   positive total (ACRO 1.0's `NKCheck`; ACRO 0.4 failed only above `k`); a total of zero or
//!   less does not fail it;
//! - the p-ratio fails when the total less the two largest contributions is **less than** `p`
//!   times the largest, and always when the total is zero or less or there is at most one
//!   contributor (zeros are disclosive);
//! - a model fails when its residual degrees of freedom (`n_obs - n_params`) are **fewer than**
//!   the minimum.

/// The largest and second largest of `values` (`f64::NEG_INFINITY` where absent), and their sum.
fn two_largest_and_total(values: &[f64]) -> (f64, f64, f64) {
    let mut largest = f64::NEG_INFINITY;
    let mut second = f64::NEG_INFINITY;
    let mut total = 0.0;
    for &value in values {
        total += value;
        if value > largest {
            second = largest;
            largest = value;
        } else if value > second {
            second = value;
        }
    }
    (largest, second, total)
}

/// Whether the `n` largest of `values` make up `k` (a fraction) or more of their positive total.
pub(crate) fn nk_dominated(values: &[f64], n: usize, k: f64) -> bool {
    let total: f64 = values.iter().sum();
    if total <= 0.0 || n == 0 {
        return false;
    }
    let top: f64 = if n == 1 || n == 2 {
        let (largest, second, _) = two_largest_and_total(values);
        if n == 1 || values.len() < 2 {
            largest
        } else {
            largest + second
        }
    } else {
        let mut sorted = values.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        sorted.iter().take(n).sum()
    };
    top / total >= k
}

/// Whether the p-ratio (the total less the two largest, as a fraction of the largest) is below
/// `p`; always true for a total of zero or less and for at most one contributor.
pub(crate) fn p_ratio_violated(values: &[f64], p: f64) -> bool {
    let (largest, second, total) = two_largest_and_total(values);
    if total <= 0.0 || values.len() <= 1 {
        return true;
    }
    (total - largest - second) / largest < p
}

/// The residual degrees of freedom of a model, `n_obs - n_params` (negative when the model has
/// more parameters than observations).
pub(crate) fn residual_dof(n_obs: u64, n_params: u64) -> i128 {
    i128::from(n_obs) - i128::from(n_params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nk_fails_at_k_and_passes_just_below() {
        // Two largest 9 of 10: exactly k = 0.9 fails (ACRO 1.0: `>= k`); 8.9 of 10 passes.
        let at_k = [5.0, 4.0, 0.5, 0.5];
        assert!(nk_dominated(&at_k, 2, 0.9));
        let below_k = [5.0, 3.9, 0.6, 0.5];
        assert!(!nk_dominated(&below_k, 2, 0.9));
        let spread = [1.0; 10];
        assert!(!nk_dominated(&spread, 2, 0.9));
    }

    #[test]
    fn nk_with_a_single_contributor_is_dominated_and_a_zero_total_is_not() {
        assert!(nk_dominated(&[7.0], 2, 0.9));
        assert!(!nk_dominated(&[0.0, 0.0], 2, 0.9));
        assert!(!nk_dominated(&[], 2, 0.9));
    }

    #[test]
    fn nk_takes_any_n() {
        let values = [3.0, 3.0, 3.0, 1.0];
        assert!(nk_dominated(&values, 3, 0.9)); // 9 of 10
        assert!(!nk_dominated(&values, 3, 0.91));
        assert!(nk_dominated(&values, 1, 0.3)); // 3 of 10
        assert!(!nk_dominated(&values, 1, 0.31));
    }

    #[test]
    fn p_ratio_fails_below_p_and_passes_exactly_at_p() {
        // Rest 1 of largest 10: exactly p = 0.1 passes (ACRO: `< p`).
        assert!(!p_ratio_violated(&[10.0, 8.0, 0.5, 0.5], 0.1));
        assert!(p_ratio_violated(&[10.0, 8.0, 0.5, 0.4], 0.1));
        assert!(!p_ratio_violated(&[10.0, 8.0, 5.0, 5.0], 0.1));
    }

    #[test]
    fn p_ratio_fails_for_one_contributor_two_contributors_and_a_zero_total() {
        assert!(p_ratio_violated(&[10.0], 0.1));
        assert!(p_ratio_violated(&[6.0, 4.0], 0.1)); // nothing hides the largest
        assert!(p_ratio_violated(&[0.0, 0.0, 0.0], 0.1));
        assert!(p_ratio_violated(&[], 0.1));
    }

    #[test]
    fn residual_dof_is_observations_less_parameters() {
        assert_eq!(residual_dof(15, 5), 10);
        assert_eq!(residual_dof(14, 5), 9);
        assert_eq!(residual_dof(3, 5), -2);
    }
}
