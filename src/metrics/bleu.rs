//! Corpus BLEU-1..4 as pycocoevalcap's `bleu_scorer.py` computes it.
//!
//! - Per sentence: clipped n-gram matches (each hypothesis n-gram count is
//!   clipped to its maximum count in any single reference) and the number of
//!   hypothesis n-grams ("guesses"), summed over the corpus.
//! - BLEU-k is the geometric mean of the precisions p1..pk, where pycocoevalcap
//!   computes each ratio as `(correct + TINY) / (guess + SMALL)`. The constants
//!   keep BLEU finite when nothing matches (or the hypothesis is empty): the
//!   ratio becomes ~1e-6 instead of 0/0. They are kept so scores agree with the
//!   reference to the last digit.
//! - Brevity penalty, option "closest" (the one `Bleu.compute_score` passes):
//!   per sentence the reference length closest to the hypothesis length (ties go
//!   to the shorter reference), summed over the corpus into `r`; with `c` the
//!   summed hypothesis length, `ratio = (c + TINY) / (r + SMALL)` and, if
//!   `ratio < 1`, every BLEU-k is multiplied by `exp(1 - 1/ratio)`.

use super::tokenize::{ngram_counts, NgramCounts};

/// Maximum n-gram order.
pub const MAX_N: usize = 4;
/// Added to the matched n-gram count (pycocoevalcap's `tiny`).
pub const TINY: f64 = 1e-15;
/// Added to the hypothesis n-gram count (pycocoevalcap's `small`).
pub const SMALL: f64 = 1e-9;

/// Sufficient statistics of a corpus (or of one sentence).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BleuStats {
    /// Hypothesis length in tokens, summed.
    pub hyp_len: usize,
    /// Closest reference length, summed.
    pub ref_len: usize,
    /// Hypothesis n-grams of order k+1.
    pub guess: [usize; MAX_N],
    /// Clipped matches of order k+1.
    pub correct: [usize; MAX_N],
}

impl BleuStats {
    fn add(&mut self, other: &BleuStats) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for k in 0..MAX_N {
            self.guess[k] += other.guess[k];
            self.correct[k] += other.correct[k];
        }
    }

    /// BLEU-1..4 from these statistics, with the brevity penalty.
    pub fn scores(&self) -> [f64; MAX_N] {
        let mut bleu = [0.0; MAX_N];
        let mut product = 1.0;
        for (k, b) in bleu.iter_mut().enumerate() {
            product *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            *b = product.powf(1.0 / (k + 1) as f64);
        }
        let ratio = (self.hyp_len as f64 + TINY) / (self.ref_len as f64 + SMALL);
        if ratio < 1.0 {
            let penalty = (1.0 - 1.0 / ratio).exp();
            bleu.iter_mut().for_each(|b| *b *= penalty);
        }
        bleu
    }
}

/// Statistics of one hypothesis against its references (`cook_refs` + `cook_test`).
pub fn sentence_stats(hyp: &[String], refs: &[Vec<String>]) -> BleuStats {
    let hyp_counts = ngram_counts(hyp, MAX_N);
    let max_ref_counts = max_counts(refs);
    let mut stats = BleuStats {
        hyp_len: hyp.len(),
        ref_len: closest_ref_len(hyp.len(), refs),
        ..BleuStats::default()
    };
    for k in 0..MAX_N {
        stats.guess[k] = (hyp.len() + 1).saturating_sub(k + 1);
    }
    for (gram, &count) in &hyp_counts {
        let clip = max_ref_counts.get(gram).copied().unwrap_or(0);
        stats.correct[gram.len() - 1] += count.min(clip);
    }
    stats
}

/// Corpus BLEU-1..4 over `hyps[i]` against `refs[i]` (tokenised).
pub fn corpus_bleu(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> [f64; MAX_N] {
    let mut total = BleuStats::default();
    for (hyp, hyp_refs) in hyps.iter().zip(refs) {
        total.add(&sentence_stats(hyp, hyp_refs));
    }
    total.scores()
}

/// For each n-gram, its largest count in any one reference.
fn max_counts(refs: &[Vec<String>]) -> NgramCounts<'_> {
    let mut max = NgramCounts::new();
    for reference in refs {
        for (gram, count) in ngram_counts(reference, MAX_N) {
            let entry = max.entry(gram).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    max
}

/// The reference length closest to `hyp_len`; ties go to the shorter one
/// (Python's `min((abs(l - c), l) ...)`). No references → 0.
fn closest_ref_len(hyp_len: usize, refs: &[Vec<String>]) -> usize {
    refs.iter()
        .map(|r| (r.len().abs_diff(hyp_len), r.len()))
        .min()
        .map_or(0, |(_, len)| len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn closest_reference_length_prefers_shorter_on_tie() {
        // hyp length 3; refs of length 2 and 4 are both 1 away → 2.
        assert_eq!(closest_ref_len(3, &[t("a b c d"), t("a b")]), 2);
        assert_eq!(closest_ref_len(3, &[t("a b c d e"), t("a b c d")]), 4);
    }

    #[test]
    fn empty_hypothesis_scores_zero() {
        let b = corpus_bleu(&[vec![]], &[vec![t("a cat")]]);
        assert!(b.iter().all(|&x| x < 1e-12), "{b:?}");
    }
}
