//! ROUGE-L as pycocoevalcap's `rouge/rouge.py` computes it.
//!
//! For each reference, `LCS / len(hyp)` (precision) and `LCS / len(ref)`
//! (recall); the maxima over references (taken separately) are combined as
//! `F = (1 + β²) P R / (R + β² P)` with β = 1.2. Corpus score: mean over images.
//!
//! Difference: Python's `"".split(" ")` makes an empty sentence one empty
//! token; here an empty sentence has no tokens and scores 0 precision/recall.

/// Weight of recall over precision.
pub const BETA: f64 = 1.2;

/// Length of the longest common subsequence of two token sequences.
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    // One row of the dynamic-programming table at a time.
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure of one hypothesis against its references.
pub fn rouge_l(hyp: &[String], refs: &[Vec<String>]) -> f64 {
    let mut prec_max: f64 = 0.0;
    let mut rec_max: f64 = 0.0;
    for reference in refs {
        let lcs = lcs_len(reference, hyp) as f64;
        prec_max = prec_max.max(ratio(lcs, hyp.len()));
        rec_max = rec_max.max(ratio(lcs, reference.len()));
    }
    if prec_max == 0.0 || rec_max == 0.0 {
        return 0.0;
    }
    let b2 = BETA * BETA;
    (1.0 + b2) * prec_max * rec_max / (rec_max + b2 * prec_max)
}

/// Mean ROUGE-L over images; 0 for an empty corpus.
pub fn corpus_rouge_l(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> f64 {
    if hyps.is_empty() {
        return 0.0;
    }
    let total: f64 = hyps.iter().zip(refs).map(|(h, r)| rouge_l(h, r)).sum();
    total / hyps.len() as f64
}

fn ratio(lcs: f64, len: usize) -> f64 {
    if len == 0 {
        0.0
    } else {
        lcs / len as f64
    }
}

#[cfg(test)]
mod tests {
    use super::lcs_len;

    fn t(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn lcs_is_symmetric_and_skips_gaps() {
        // "a b c d" vs "a c d x": a, c, d in order → 3.
        assert_eq!(lcs_len(&t("a b c d"), &t("a c d x")), 3);
        assert_eq!(lcs_len(&t("a c d x"), &t("a b c d")), 3);
        assert_eq!(lcs_len(&t(""), &t("a")), 0);
    }
}
