//! The training log (training.jsonl): its records, how a run appends to it,
//! reading it back, and its charts (the loss, validation accuracy).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::plot::{line_chart, Labels, Series};

/// One line of training.jsonl: a step's loss and rate, and the validation
/// results at the steps that validated.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LogRecord {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_sec: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Validation accuracy per question type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_accuracy_by_type: BTreeMap<String, f64>,
}

/// Appends to training.jsonl; on resume, drops records after the resumed step.
pub(super) struct LogWriter {
    file: std::fs::File,
}

impl LogWriter {
    pub(super) fn open(path: &Path, keep_through: usize) -> Result<Self> {
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) if keep_through > 0 => text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<LogRecord>(l).is_ok_and(|r| r.step <= keep_through)
                })
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        // Rewritten beside the log and renamed into place: a run killed here
        // must still find the records its checkpoint's steps have.
        crate::model::dir::write_atomically(path, |tmp| {
            let mut file = std::fs::File::create(tmp)?;
            for line in &kept {
                writeln!(file, "{line}")?;
            }
            Ok(())
        })?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(LogWriter { file })
    }

    pub(super) fn write(&mut self, record: &LogRecord) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(record)?)?;
        Ok(())
    }
}

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
