//! The metrics as the plain-text table `eval` and `score` print.
use std::fmt::Write as _;

use super::metrics::Metrics;

/// Caption metrics, then VQA accuracy overall and per question type; each
/// block after a blank line.
pub fn metrics_table(m: &Metrics) -> String {
    let mut out = String::new();
    if let Some(c) = &m.caption {
        let _ = writeln!(out, "\ncaptions (n = {})", c.n);
        for (k, b) in c.bleu.iter().enumerate() {
            let _ = writeln!(out, "  {:<14}{b:.4}", format!("BLEU-{}", k + 1));
        }
        let _ = writeln!(out, "  {:<14}{:.4}", "CIDEr-D", c.cider_d);
        let _ = writeln!(out, "  {:<14}{:.4}", "ROUGE-L", c.rouge_l);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", c.exact_match);
    }
    if let Some(v) = &m.vqa {
        let _ = writeln!(out, "\nVQA (n = {})", v.n);
        let _ = writeln!(out, "  {:<14}{:.4}", "accuracy", v.accuracy);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", v.exact_match);
    }
    if !m.vqa_per_type.is_empty() {
        let width = m
            .vqa_per_type
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(out, "  per question type:");
        let _ = writeln!(out, "    {:<width$}  accuracy  exact match  n", "type");
        for (kind, s) in &m.vqa_per_type {
            let _ = writeln!(
                out,
                "    {kind:<width$}  {:<8.4}  {:<11.4}  {}",
                s.accuracy, s.exact_match, s.n
            );
        }
    }
    out
}
