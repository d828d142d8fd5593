//! Every metric over a set of scored predictions, and the worst of them.
use std::collections::BTreeMap;

use serde::Serialize;

use super::prediction::Prediction;
use crate::metrics::{caption_scores, vqa_scores, CaptionScores, VqaItem, VqaScores};

/// VQA scores of the questions of one type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeScores {
    pub accuracy: f64,
    pub exact_match: f64,
    pub n: usize,
}

/// Every metric: captions, VQA overall, and VQA per question type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub caption: Option<CaptionScores>,
    pub vqa: Option<VqaScores>,
    /// Question type -> scores, for the questions that name a type.
    pub vqa_per_type: BTreeMap<String, TypeScores>,
}

/// The metrics of scored predictions.
pub fn metrics(predictions: &[Prediction]) -> Metrics {
    let (questions, captions): (Vec<&Prediction>, Vec<&Prediction>) =
        predictions.iter().partition(|p| p.is_vqa());
    let hyps: Vec<String> = captions.iter().map(|p| p.output.clone()).collect();
    let refs: Vec<Vec<String>> = captions.iter().map(|p| p.references.clone()).collect();
    let items: Vec<VqaItem> = questions.iter().map(|p| p.vqa_item()).collect();
    metrics_of(&hyps, &refs, &items)
}

/// The metrics of captions `hyps` against their references `refs`, and of
/// the answered questions `items`.
pub fn metrics_of(hyps: &[String], refs: &[Vec<String>], items: &[VqaItem]) -> Metrics {
    let mut by_type: BTreeMap<String, Vec<VqaItem>> = BTreeMap::new();
    for item in items {
        if let Some(kind) = &item.question_type {
            by_type.entry(kind.clone()).or_default().push(item.clone());
        }
    }
    let vqa_per_type = by_type
        .into_iter()
        .map(|(kind, items)| {
            let s = vqa_scores(&items);
            let scores = TypeScores {
                accuracy: s.accuracy,
                exact_match: s.exact_match,
                n: s.n,
            };
            (kind, scores)
        })
        .collect();
    Metrics {
        caption: (!hyps.is_empty()).then(|| caption_scores(hyps, refs)),
        vqa: (!items.is_empty()).then(|| vqa_scores(items)),
        vqa_per_type,
    }
}

/// Up to `n` of the worst outputs of one task ("caption" or "vqa"): lowest
/// score first, and among equal scores the most confident (highest log-probability) first.
pub fn worst(predictions: &[Prediction], task: &str, n: usize) -> Vec<Prediction> {
    let mut of_task: Vec<&Prediction> = predictions.iter().filter(|p| p.task == task).collect();
    of_task.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(b.logprob.total_cmp(&a.logprob))
    });
    of_task.into_iter().take(n).cloned().collect()
}
