//! Which strategy won each question type, and whether the gap is noise.
use serde::Serialize;

use super::model_report::ModelReport;

/// Which strategy won one question type, and whether the gap is meaningful.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// A question type, or "all questions".
    pub question_type: String,
    pub n: usize,
    pub winner: String,
    pub accuracy: f64,
    pub runner_up: Option<String>,
    pub runner_up_accuracy: Option<f64>,
    /// The other models with exactly the winner's accuracy.
    pub tied: Vec<String>,
    /// Winner minus runner-up accuracy.
    pub gap: f64,
    /// sqrt(p(1-p)/n) with p the mean of the two accuracies.
    pub standard_error: f64,
    /// The gap is no larger than one binomial standard error.
    pub within_noise: bool,
}

/// The label of the overall VQA row in [`verdicts`].
pub const ALL_QUESTIONS: &str = "all questions";

/// Per question type (and over all questions): the best model by VQA accuracy
/// against the runner-up, with a binomial standard error for the gap.
pub fn verdicts(models: &[ModelReport]) -> Vec<Verdict> {
    let mut rows: Vec<(String, Vec<Score>)> = Vec::new();
    let overall: Vec<Score> = models
        .iter()
        .filter_map(|m| {
            m.metrics
                .vqa
                .as_ref()
                .map(|v| (m.name.clone(), v.accuracy, v.n))
        })
        .collect();
    if !overall.is_empty() {
        rows.push((ALL_QUESTIONS.to_string(), overall));
    }
    let mut types: Vec<&String> = models
        .iter()
        .flat_map(|m| m.metrics.vqa_per_type.keys())
        .collect();
    types.sort();
    types.dedup();
    for kind in types {
        let scores = models
            .iter()
            .filter_map(|m| {
                let s = m.metrics.vqa_per_type.get(kind)?;
                Some((m.name.clone(), s.accuracy, s.n))
            })
            .collect();
        rows.push((kind.clone(), scores));
    }
    rows.into_iter()
        .filter_map(|(kind, scores)| verdict(kind, scores))
        .collect()
}

/// (model, accuracy, questions).
type Score = (String, f64, usize);

fn verdict(question_type: String, mut scores: Vec<Score>) -> Option<Verdict> {
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (winner, accuracy, n) = scores.first()?.clone();
    let runner = scores.get(1);
    let p = runner.map_or(accuracy, |r| (accuracy + r.1) / 2.0);
    let standard_error = (p * (1.0 - p) / n.max(1) as f64).sqrt();
    let gap = runner.map_or(0.0, |r| accuracy - r.1);
    let tied = scores[1..]
        .iter()
        .filter(|s| s.1 == accuracy)
        .map(|s| s.0.clone())
        .collect();
    Some(Verdict {
        question_type,
        n,
        winner,
        accuracy,
        runner_up: runner.map(|r| r.0.clone()),
        runner_up_accuracy: runner.map(|r| r.1),
        tied,
        gap,
        standard_error,
        within_noise: runner.is_some() && gap <= standard_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fusion;
    use crate::report::metrics::{Metrics, TypeScores};

    fn report(name: &str, per_type: &[(&str, f64, usize)]) -> ModelReport {
        let vqa_per_type = per_type
            .iter()
            .map(|&(k, accuracy, n)| {
                let s = TypeScores {
                    accuracy,
                    exact_match: accuracy,
                    n,
                };
                (k.to_string(), s)
            })
            .collect();
        ModelReport {
            name: name.into(),
            path: name.into(),
            fusion: Fusion::ALL[0],
            parameters: 0,
            cross_attention_parameters: 0,
            metrics: Metrics {
                caption: None,
                vqa: None,
                vqa_per_type,
            },
            ms_per_image_batch1: 0.0,
            ms_per_image_batched: 0.0,
            batch_size: 1,
            speed_samples: 0,
            process_peak_memory_bytes: None,
            modality_share: None,
            gate_values: None,
            failed: 0,
            predictions: Vec::new(),
        }
    }

    #[test]
    fn a_gap_below_one_standard_error_is_noise() {
        // p = 0.5, n = 100: SE = 0.05. A 0.02 gap is noise, a 0.2 gap is not.
        let a = report("a", &[("color", 0.51, 100), ("shape", 0.6, 100)]);
        let b = report("b", &[("color", 0.49, 100), ("shape", 0.4, 100)]);
        let v = verdicts(&[a, b]);
        let color = v
            .iter()
            .find(|v| v.question_type == "color")
            .expect("color row");
        assert_eq!(color.winner, "a");
        assert!((color.standard_error - 0.05).abs() < 1e-9);
        assert!(color.within_noise);
        let shape = v
            .iter()
            .find(|v| v.question_type == "shape")
            .expect("shape row");
        assert!(!shape.within_noise && (shape.gap - 0.2).abs() < 1e-9);
    }
}
