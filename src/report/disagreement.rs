//! The records on which the compared models' outputs differ.
use serde::Serialize;

use super::model_report::ModelReport;
use super::prediction::Prediction;

/// One model's output in a disagreement.
#[derive(Debug, Clone, Serialize)]
pub struct ModelOutput {
    pub model: String,
    pub output: String,
    pub score: f64,
}

/// A record on which the models' (normalised) outputs differ.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub source: String,
    pub image: String,
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    pub references: Vec<String>,
    pub outputs: Vec<ModelOutput>,
}

/// All records where the models' normalised outputs differ, those where the
/// scores differ too first (then in record order). Every model must have one
/// prediction per record, in the same order.
pub fn disagreements(models: &[ModelReport]) -> Vec<Disagreement> {
    let Some(first) = models.first() else {
        return Vec::new();
    };
    let mut found: Vec<(bool, Disagreement)> = Vec::new();
    for (i, base) in first.predictions.iter().enumerate() {
        let preds: Vec<&Prediction> = models.iter().filter_map(|m| m.predictions.get(i)).collect();
        let norm = base.normalized_output();
        if preds.iter().all(|p| p.normalized_output() == norm) {
            continue;
        }
        let scores_differ = preds.iter().any(|p| p.score != base.score);
        let outputs = models
            .iter()
            .zip(&preds)
            .map(|(m, p)| ModelOutput {
                model: m.name.clone(),
                output: p.output.clone(),
                score: p.score,
            })
            .collect();
        found.push((
            scores_differ,
            Disagreement {
                source: base.source.clone(),
                image: base.image.clone(),
                task: base.task,
                question: base.question.clone(),
                references: base.references.clone(),
                outputs,
            },
        ));
    }
    // Stable: record order within each group.
    found.sort_by_key(|(differ, _)| !differ);
    found.into_iter().map(|(_, d)| d).collect()
}
