//! Which weights a row loses: the `round(sparsity · cols)` with the lowest
//! score, |W_ij| for magnitude pruning, |W_ij| · ‖X_j‖₂ for Wanda (Sun et al.,
//! 2023), compared within each output row.

/// How many weights a row of `cols` loses at `sparsity`.
pub fn pruned_per_row(cols: usize, sparsity: f64) -> usize {
    ((sparsity * cols as f64).round() as usize).min(cols)
}

/// Zeroes, in each row of `w` (`[rows × cols]`, row-major), the
/// [`pruned_per_row`] weights with the lowest score |w_ij| · `norms[j]`
/// (|w_ij| alone without `norms`); ties go to the lower column. Every row
/// ends with exactly that many weights set to 0 by this call (weights that
/// were already 0 score lowest and are among them).
pub fn prune_rows(w: &mut [f32], cols: usize, norms: Option<&[f32]>, sparsity: f64) {
    let k = pruned_per_row(cols, sparsity);
    if k == 0 || cols == 0 {
        return;
    }
    let mut order: Vec<usize> = Vec::with_capacity(cols);
    for row in w.chunks_exact_mut(cols) {
        let score = |j: usize| f64::from(row[j].abs()) * norms.map_or(1.0, |n| f64::from(n[j]));
        order.clear();
        order.extend(0..cols);
        order.select_nth_unstable_by(k - 1, |&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
        for &j in &order[..k] {
            row[j] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_drops_the_smallest_of_each_row() {
        let mut w = vec![0.5, -0.1, 2.0, 0.3, /* row 2 */ -3.0, 0.2, 0.1, 1.0];
        prune_rows(&mut w, 4, None, 0.5);
        assert_eq!(w, [0.5, 0.0, 2.0, 0.0, -3.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn wanda_weighs_each_column_by_its_input_norm() {
        // Column 0's input is tiny: its large weight goes first.
        let mut w = vec![1.0, 0.2, 0.3, 0.4];
        prune_rows(&mut w, 4, Some(&[0.01, 1.0, 1.0, 1.0]), 0.25);
        assert_eq!(w, [0.0, 0.2, 0.3, 0.4]);
    }

    #[test]
    fn rows_lose_exactly_round_sparsity_times_cols() {
        assert_eq!((pruned_per_row(576, 0.3), pruned_per_row(1536, 0.3), pruned_per_row(10, 1.0)), (173, 461, 10));
        // Equal scores (ties) and existing zeros still give exactly k zeros.
        let mut w = vec![1.0f32; 3 * 10];
        w[5] = 0.0;
        prune_rows(&mut w, 10, None, 0.3);
        for row in w.chunks(10) {
            assert_eq!(row.iter().filter(|v| **v == 0.0).count(), 3, "{row:?}");
        }
        assert_eq!(&w[..3], &[0.0, 0.0, 1.0], "ties go to the lower column after the zero");
    }
}
