//! What `experiment` concludes: which strategy won each question type, by
//! how much, and whether that is noise.
use std::fmt::Write as _;

use serde::Serialize;

use super::compare::CompareReport;
use super::verdict::Verdict;
use crate::model::Fusion;

/// Everything `summary.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub strategies: Vec<Fusion>,
    pub steps: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub test_records: usize,
    pub verdicts: Vec<Verdict>,
    /// The last logged validation accuracy of each strategy, with its step.
    pub final_val_accuracy: Vec<FinalVal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalVal {
    pub fusion: Fusion,
    pub step: usize,
    pub val_accuracy: f64,
}

/// A strategy and its (step, validation accuracy) points.
pub type Curve = (Fusion, Vec<(f64, f64)>);

/// The last validation accuracy of each strategy, with its step.
pub fn final_vals(curves: &[Curve]) -> Vec<FinalVal> {
    curves
        .iter()
        .filter_map(|(fusion, points)| {
            let &(step, val_accuracy) = points.last()?;
            Some(FinalVal {
                fusion: *fusion,
                step: step as usize,
                val_accuracy,
            })
        })
        .collect()
}

/// "concat, gated".
pub fn fusion_names(fusions: &[Fusion]) -> String {
    fusions
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which strategy won each question type, by how much, and whether that is noise.
pub fn render_summary(summary: &Summary, comparison: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "Trained {} for {} steps each (batch {}, seed {}, same data order); compared on {} test record(s).\n",
        fusion_names(&summary.strategies),
        summary.steps,
        summary.batch_size,
        summary.seed,
        summary.test_records
    );
    for v in &summary.verdicts {
        let _ = writeln!(out, "- {}", verdict_line(v));
    }
    if let Some(line) = caption_line(comparison) {
        let _ = writeln!(out, "- {line}");
    }
    if summary.verdicts.is_empty() && comparison.captions == 0 {
        let _ = writeln!(
            out,
            "- nothing to compare: the test split has no scored records."
        );
    }
    if !summary.final_val_accuracy.is_empty() {
        let parts: Vec<String> = summary
            .final_val_accuracy
            .iter()
            .map(|f| {
                format!(
                    "{} {:.1}% (step {})",
                    f.fusion,
                    100.0 * f.val_accuracy,
                    f.step
                )
            })
            .collect();
        let _ = writeln!(out, "- last validation accuracy: {}.", parts.join(", "));
    }
    let _ = writeln!(
        out,
        "\n\"Within noise\" means the gap is no larger than one binomial standard error, sqrt(p(1-p)/n), with p the mean accuracy of the two best strategies and n the number of questions."
    );
    out
}

fn verdict_line(v: &Verdict) -> String {
    let head = format!("{} (n = {})", v.question_type, v.n);
    let (Some(runner), Some(runner_acc)) = (&v.runner_up, v.runner_up_accuracy) else {
        return format!(
            "{head}: only {} was evaluated ({:.1}%)",
            v.winner,
            100.0 * v.accuracy
        );
    };
    let se = 100.0 * v.standard_error;
    if !v.tied.is_empty() {
        let mut all = vec![v.winner.clone()];
        all.extend(v.tied.iter().cloned());
        let last = all.pop().unwrap_or_default();
        return format!(
            "{head}: {} and {last} tie at {:.1}%",
            all.join(", "),
            100.0 * v.accuracy
        );
    }
    let noise = if v.within_noise {
        format!("within noise (gap ≤ SE {se:.1} points)")
    } else {
        format!("beyond noise (SE {se:.1} points)")
    };
    format!(
        "{head}: {} wins with {:.1}%, {:.1} points ahead of {runner} ({:.1}%) — {noise}",
        v.winner,
        100.0 * v.accuracy,
        100.0 * v.gap,
        100.0 * runner_acc
    )
}

/// The best CIDEr-D among the strategies (there is no binomial error for it).
fn caption_line(comparison: &CompareReport) -> Option<String> {
    let mut scores: Vec<(&str, f64)> = comparison
        .models
        .iter()
        .filter_map(|m| {
            m.metrics
                .caption
                .as_ref()
                .map(|c| (m.name.as_str(), c.cider_d))
        })
        .collect();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (best, score) = *scores.first()?;
    let rest: Vec<String> = scores[1..]
        .iter()
        .map(|(n, s)| format!("{n} {s:.3}"))
        .collect();
    Some(format!(
        "captions (n = {}): {best} has the best CIDEr-D, {score:.3}{} (no binomial standard error applies to CIDEr-D)",
        comparison.captions,
        if rest.is_empty() { String::new() } else { format!(", then {}", rest.join(", ")) }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(gap: f64, within_noise: bool) -> Verdict {
        Verdict {
            question_type: "color".into(),
            n: 100,
            winner: "gated".into(),
            accuracy: 0.6,
            runner_up: Some("concat".into()),
            runner_up_accuracy: Some(0.6 - gap),
            tied: if gap == 0.0 {
                vec!["concat".into()]
            } else {
                Vec::new()
            },
            gap,
            standard_error: 0.05,
            within_noise,
        }
    }

    #[test]
    fn verdict_lines_say_within_noise_only_for_small_gaps() {
        assert!(verdict_line(&verdict(0.02, true)).contains("within noise"));
        assert!(verdict_line(&verdict(0.2, false)).contains("beyond noise"));
        assert!(verdict_line(&verdict(0.0, true)).contains("tie"));
    }
}
