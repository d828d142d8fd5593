//! Charts of a training log (training.jsonl): the loss, and validation accuracy.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use super::LogRecord;
use crate::plot::{line_chart, Labels, Series};

/// Reads a training.jsonl log; lines that do not parse are skipped.
pub fn read_log(log: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(log).map_err(|e| anyhow!("{}: {e}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The (step, validation accuracy) points of a training log.
pub fn val_accuracy_points(log: &Path) -> Result<Vec<(f64, f64)>> {
    Ok(read_log(log)?
        .iter()
        .filter_map(|r| r.val_accuracy.map(|a| (r.step as f64, a)))
        .collect())
}

/// Validation accuracy against the step, one line per (name, training.jsonl).
/// A log without validation accuracy gives an empty line.
pub fn val_accuracy_curves(logs: &[(String, PathBuf)], out: &Path) -> Result<()> {
    let series = logs
        .iter()
        .map(|(name, log)| {
            Ok(Series {
                name: name.clone(),
                points: val_accuracy_points(log)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    val_accuracy_chart(&series, out)
}

/// Draws validation-accuracy lines on a 0–1 axis.
pub fn val_accuracy_chart(series: &[Series], out: &Path) -> Result<()> {
    let labels = Labels {
        title: "validation accuracy (greedy exact match)",
        x: "step",
        y: "accuracy",
    };
    line_chart(out, &labels, series, Some(0.0..1.0))
}

/// The training loss (and validation loss where logged) against the step.
pub fn loss_curve(log: &Path, out: &Path) -> Result<()> {
    let records = read_log(log)?;
    let train = Series {
        name: "train loss".into(),
        points: records.iter().map(|r| (r.step as f64, r.loss)).collect(),
    };
    let val = Series {
        name: "validation loss".into(),
        points: records
            .iter()
            .filter_map(|r| r.val_loss.map(|v| (r.step as f64, v)))
            .collect(),
    };
    line_chart(
        out,
        &Labels {
            title: "training loss",
            x: "step",
            y: "loss",
        },
        &[train, val],
        None,
    )
}
