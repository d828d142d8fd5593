//! Caption and VQA metrics, matching the reference implementations
//! (pycocoevalcap for captions, the official VQA evaluation for answers).
//!
//! ```
//! use fusecap::metrics::{caption_scores, vqa_accuracy};
//!
//! let s = caption_scores(&["A red circle.".to_string()], &[vec!["a red circle".to_string()]]);
//! assert!((s.bleu[0] - 1.0).abs() < 1e-9 && s.exact_match == 1.0);
//! assert_eq!(vqa_accuracy("Two", "2", &[]), 1.0);
//! ```

pub mod bleu;
pub mod cider;
pub mod rouge;
pub mod tokenize;
pub mod vqa;

use serde::Serialize;

pub use tokenize::caption_tokens;
pub use vqa::{normalize_answer, vqa_accuracy, vqa_scores, VqaItem, VqaScores};

/// Corpus caption scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionScores {
    /// Corpus BLEU-1..4, in [0, 1].
    pub bleu: [f64; 4],
    /// CIDEr-D, mean over images (pycocoevalcap's scale: ×10, typically 0..10).
    pub cider_d: f64,
    /// ROUGE-L, mean over images, in [0, 1].
    pub rouge_l: f64,
    /// Fraction of hypotheses whose tokens equal those of some reference.
    pub exact_match: f64,
    /// Number of images scored.
    pub n: usize,
}

/// Score hypothesis `hyps[i]` against references `refs[i]` (raw text; tokenised
/// with [`caption_tokens`]). An image without references scores 0 on every
/// metric. An empty corpus gives zeros.
///
/// # Panics
/// If `hyps` and `refs` have different lengths (a caller bug).
pub fn caption_scores(hyps: &[String], refs: &[Vec<String>]) -> CaptionScores {
    assert_eq!(
        hyps.len(),
        refs.len(),
        "caption_scores needs one reference list per hypothesis"
    );
    let hyp_toks: Vec<Vec<String>> = hyps.iter().map(|h| caption_tokens(h)).collect();
    let ref_toks: Vec<Vec<Vec<String>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| caption_tokens(r)).collect())
        .collect();
    let n = hyps.len();
    if n == 0 {
        return CaptionScores {
            bleu: [0.0; 4],
            cider_d: 0.0,
            rouge_l: 0.0,
            exact_match: 0.0,
            n,
        };
    }
    let exact = hyp_toks
        .iter()
        .zip(&ref_toks)
        .filter(|(h, rs)| rs.iter().any(|r| r == *h))
        .count();
    CaptionScores {
        bleu: bleu::corpus_bleu(&hyp_toks, &ref_toks),
        cider_d: cider::cider_d(&hyp_toks, &ref_toks),
        rouge_l: rouge::corpus_rouge_l(&hyp_toks, &ref_toks),
        exact_match: exact as f64 / n as f64,
        n,
    }
}
