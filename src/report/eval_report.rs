//! What `eval` reports about one model on one manifest.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::binding::{binding_report, scenes_beside, BindingReport, Share};
use super::evaluation::Evaluation;
use super::facts::parameter_counts;
use super::metrics::{metrics, worst, Metrics};
use super::metrics_table::metrics_table;
use super::prediction::Prediction;
use super::text::{quoted_list, thousands};
use crate::model::Fusion;
use crate::pipeline::ModelDir;

/// What `eval` reports; `--json` writes exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub path: String,
    pub fusion: Fusion,
    pub parameters: usize,
    pub manifest: String,
    pub split: String,
    pub records: usize,
    /// Records whose image could not be read (scored as empty outputs).
    pub failed: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Accuracy by object count, where the manifest has a `scenes.jsonl` beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingReport>,
    /// Mean encode + greedy decode time per image.
    pub ms_per_image: f64,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub worst_answers: Vec<Prediction>,
    pub worst_captions: Vec<Prediction>,
    pub predictions: Vec<Prediction>,
}

impl EvalReport {
    /// Puts one model's evaluation on `records` records of `manifest` together
    /// with its facts, the `worst_n` worst answers and captions, and, where the
    /// manifest has a `scenes.jsonl` beside it, the binding breakdown.
    pub fn new(
        md: &ModelDir,
        manifest: &Path,
        split: &str,
        records: usize,
        evaluation: Evaluation,
        worst_n: usize,
        max_new_tokens: usize,
    ) -> Result<Self> {
        let binding = scenes_beside(manifest)?
            .and_then(|scenes| binding_report(&evaluation.predictions, &scenes));
        Ok(EvalReport {
            model: md.name.clone(),
            path: md.path.display().to_string(),
            fusion: md.model.cfg.fusion,
            parameters: parameter_counts(md).0,
            manifest: manifest.display().to_string(),
            split: split.to_string(),
            records,
            failed: evaluation.failures(),
            metrics: metrics(&evaluation.predictions),
            binding,
            ms_per_image: evaluation.ms_per_image(),
            batch_size: evaluation.batch_size,
            max_new_tokens,
            worst_answers: worst(&evaluation.predictions, "vqa", worst_n),
            worst_captions: worst(&evaluation.predictions, "caption", worst_n),
            predictions: evaluation.predictions,
        })
    }

    /// The human-readable report printed on stdout.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let questions = self.predictions.iter().filter(|p| p.is_vqa()).count();
        let _ = writeln!(
            out,
            "model  {} ({} fusion, {} parameters)",
            self.model,
            self.fusion,
            thousands(self.parameters)
        );
        let _ = writeln!(
            out,
            "data   {}, split \"{}\": {} record(s), {} question(s), {} caption(s){}",
            self.manifest,
            self.split,
            self.records,
            questions,
            self.records - questions,
            if self.failed > 0 {
                format!("; {} image(s) unreadable, scored as empty", self.failed)
            } else {
                String::new()
            }
        );
        out.push_str(&metrics_table(&self.metrics));
        if let Some(binding) = &self.binding {
            render_binding(&mut out, binding);
        }
        let _ = writeln!(
            out,
            "\nspeed: {:.2} ms/image (batch {}, greedy, up to {} tokens, encoders included)",
            self.ms_per_image, self.batch_size, self.max_new_tokens
        );
        render_worst(&mut out, "answers", &self.worst_answers, "accuracy");
        render_worst(&mut out, "captions", &self.worst_captions, "CIDEr-D");
        out
    }
}

fn render_binding(out: &mut String, b: &BindingReport) {
    let cell = |s: &Share| {
        if s.n == 0 {
            "-".to_string()
        } else {
            format!("{:.4} ({})", s.accuracy, s.n)
        }
    };
    let _ = writeln!(out, "\nby objects in the scene (accuracy, n)");
    let _ = writeln!(out, "    {:<10}  {:<14}  2 or more", "type", "1 object");
    for (kind, (one, several)) in &b.per_type {
        let _ = writeln!(out, "    {kind:<10}  {:<14}  {}", cell(one), cell(several));
    }
    let _ = writeln!(
        out,
        "  \"is there a <color> <shape>?\" with the colour and the shape on different objects: {}",
        cell(&b.split_conjunctions)
    );
}

fn render_worst(out: &mut String, what: &str, worst: &[Prediction], score: &str) {
    if worst.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{} worst {what}:", worst.len());
    for (i, p) in worst.iter().enumerate() {
        let question = p
            .question
            .as_deref()
            .map(|q| format!(" \"{q}\""))
            .unwrap_or_default();
        let expected = quoted_list(&p.references, if p.is_vqa() { 3 } else { 1 });
        let error = p
            .error
            .as_deref()
            .map(|e| format!(" [error: {e}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}. {}{question} -> \"{}\" (expected {expected}; {score} {:.2}){error}",
            i + 1,
            p.image,
            p.output,
            p.score
        );
    }
}
