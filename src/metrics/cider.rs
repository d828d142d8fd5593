//! CIDEr-D as pycocoevalcap's `cider/cider_scorer.py` computes it.
//!
//! - Document frequency `df(g)`: the number of images whose references (any of
//!   them) contain n-gram `g`, over the evaluated set only.
//! - Every sentence becomes one tf-idf vector per order n = 1..4, with weight
//!   `tf(g) * (ln(N) - ln(max(1, df(g))))`, `N` = number of images.
//! - Per reference and order: `sum_g min(h_g, r_g) * r_g / (|h| |r|)` (cosine
//!   similarity with the hypothesis clipped to the reference, the "-D" part),
//!   times a Gaussian length penalty `exp(-delta^2 / (2 * 6^2))`.
//! - Image score: mean over n, divided by the number of references, × 10.
//!   Corpus score: mean over images.
//!
//! Reference quirk kept on purpose: the "length" in the penalty is the number of
//! *bigrams* of a sentence (the Python code counts terms where `n == 1` on a
//! 0-based order), i.e. `len - 1` for sentences of two or more words. For such
//! sentences `delta` equals the word-length difference anyway.
//!
//! With a single image, `ln(N) = 0` and every weight is 0, so CIDEr-D is 0 —
//! the same as the reference. CIDEr-D needs a set of images.

use std::collections::{HashMap, HashSet};

use super::tokenize::{ngram_counts, NgramCounts};

/// Maximum n-gram order.
pub const MAX_N: usize = 4;
/// Standard deviation of the Gaussian length penalty.
pub const SIGMA: f64 = 6.0;

/// One sentence as tf-idf vectors per order, their norms and its bigram count.
struct TfIdf<'a> {
    vec: [HashMap<&'a [String], f64>; MAX_N],
    norm: [f64; MAX_N],
    length: usize,
}

/// Inverse document frequencies of the evaluated set.
struct Idf<'a> {
    log_n: f64,
    df: HashMap<&'a [String], usize>,
}

impl<'a> Idf<'a> {
    fn from_refs(refs: &'a [Vec<Vec<String>>]) -> Self {
        let mut df = HashMap::new();
        for image_refs in refs {
            let grams: HashSet<&[String]> = image_refs
                .iter()
                .flat_map(|r| ngram_counts(r, MAX_N).into_keys())
                .collect();
            for gram in grams {
                *df.entry(gram).or_insert(0) += 1;
            }
        }
        Idf {
            log_n: (refs.len() as f64).ln(),
            df,
        }
    }

    fn weight(&self, gram: &[String]) -> f64 {
        let df = self.df.get(gram).copied().unwrap_or(0).max(1);
        self.log_n - (df as f64).ln()
    }

    /// pycocoevalcap's `counts2vec`.
    fn vectorise(&self, counts: NgramCounts<'a>) -> TfIdf<'a> {
        let mut out = TfIdf {
            vec: Default::default(),
            norm: [0.0; MAX_N],
            length: 0,
        };
        for (gram, tf) in counts {
            let n = gram.len() - 1;
            let value = tf as f64 * self.weight(gram);
            out.norm[n] += value * value;
            out.vec[n].insert(gram, value);
            if n == 1 {
                out.length += tf;
            }
        }
        out.norm.iter_mut().for_each(|x| *x = x.sqrt());
        out
    }
}

/// Per-order clipped cosine similarity with the length penalty (`sim`).
fn similarity(hyp: &TfIdf, reference: &TfIdf) -> [f64; MAX_N] {
    let delta = hyp.length as f64 - reference.length as f64;
    let penalty = (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
    let mut val = [0.0; MAX_N];
    for (n, v) in val.iter_mut().enumerate() {
        for (gram, &h) in &hyp.vec[n] {
            let r = reference.vec[n].get(gram).copied().unwrap_or(0.0);
            *v += h.min(r) * r;
        }
        if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
            *v /= hyp.norm[n] * reference.norm[n];
        }
        *v *= penalty;
    }
    val
}

/// CIDEr-D of every image: `hyps[i]` against `refs[i]` (tokenised), with
/// document frequencies taken from all of `refs`. An image without references
/// scores 0 (the reference implementation rejects it).
pub fn cider_d_per_image(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> Vec<f64> {
    let idf = Idf::from_refs(refs);
    hyps.iter()
        .zip(refs)
        .map(|(hyp, image_refs)| {
            if image_refs.is_empty() {
                return 0.0;
            }
            let hyp_vec = idf.vectorise(ngram_counts(hyp, MAX_N));
            let mut sum = [0.0; MAX_N];
            for reference in image_refs {
                let ref_vec = idf.vectorise(ngram_counts(reference, MAX_N));
                let sim = similarity(&hyp_vec, &ref_vec);
                (0..MAX_N).for_each(|n| sum[n] += sim[n]);
            }
            let mean_over_n = sum.iter().sum::<f64>() / MAX_N as f64;
            mean_over_n / image_refs.len() as f64 * 10.0
        })
        .collect()
}

/// Corpus CIDEr-D: the mean of [`cider_d_per_image`]; 0 for an empty corpus.
pub fn cider_d(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> f64 {
    let scores = cider_d_per_image(hyps, refs);
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}
