//! Several models on exactly the same records, side by side.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use indicatif::ProgressBar;
use serde::Serialize;

use super::disagreement::{disagreements, Disagreement};
use super::evaluation::{evaluate, EvalOptions};
use super::model_report::{measure_speed, model_report, ModelReport};
use super::prediction::Prediction;
use crate::data::manifest::{Record, Task};
use crate::model::Fusion;
use crate::pipeline::{load_model, ModelDir};
use crate::plot::{grouped_bars, BarSeries};

/// How `compare` runs each model.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub eval: EvalOptions,
    pub speed_samples: usize,
    pub disagreements: usize,
}

/// Everything `compare` found; `--json` writes exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub manifest: String,
    pub split: String,
    pub records: usize,
    pub questions: usize,
    pub captions: usize,
    pub models: Vec<ModelReport>,
    /// Records on which the models' normalised outputs differ.
    pub disagreement_count: usize,
    /// The first of them (those where the scores differ come first).
    pub disagreements: Vec<Disagreement>,
}

/// What `compare` tells its caller while it runs, one model at a time.
pub trait CompareProgress {
    /// Model `name` is about to run on `records` records; returns the bar
    /// its evaluation advances.
    fn model_started(&self, name: &str, fusion: Fusion, records: usize) -> ProgressBar;
    /// Its evaluation is done (some predictions may be errors).
    fn model_evaluated(&self, predictions: &[Prediction]);
}

/// Evaluates each model in turn on the same records and puts the results together.
pub fn compare(
    dirs: &[PathBuf],
    records: &[&Record],
    opts: &CompareOptions,
    device: &Device,
    manifest: &Path,
    split: &str,
    progress: &dyn CompareProgress,
) -> Result<CompareReport> {
    let mut models: Vec<ModelReport> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let md = load_model(dir, device)?;
        let taken: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let name = unique_name(&md.name, dir, &taken);
        models.push(run_model(&md, name, records, opts, device, progress)?);
    }
    let all = disagreements(&models);
    let questions = records
        .iter()
        .filter(|r| matches!(r.task, Task::Vqa { .. }))
        .count();
    Ok(CompareReport {
        manifest: manifest.display().to_string(),
        split: split.to_string(),
        records: records.len(),
        questions,
        captions: records.len() - questions,
        models,
        disagreement_count: all.len(),
        disagreements: all.into_iter().take(opts.disagreements).collect(),
    })
}

/// The directory's name, or its whole path when another model already has that name.
fn unique_name(name: &str, dir: &Path, taken: &[&str]) -> String {
    if !taken.contains(&name) {
        return name.to_string();
    }
    let path = dir.display().to_string();
    if !taken.contains(&path.as_str()) {
        return path;
    }
    (2..)
        .map(|i| format!("{name}#{i}"))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_else(|| name.to_string())
}

/// One model: the batched run (predictions, metrics, attention shares),
/// then the speed at batch 1 and batched on the first records.
fn run_model(
    md: &ModelDir,
    name: String,
    records: &[&Record],
    opts: &CompareOptions,
    device: &Device,
    progress: &dyn CompareProgress,
) -> Result<ModelReport> {
    let bar = progress.model_started(&name, md.model.cfg.fusion, records.len());
    let evaluation = evaluate(md, records, &opts.eval, device, &bar)?;
    bar.finish_and_clear();
    progress.model_evaluated(&evaluation.predictions);
    let samples = opts.speed_samples.min(records.len());
    let speed = measure_speed(md, &records[..samples], &opts.eval, device)?;
    model_report(md, name, evaluation, speed)
}

/// The question types, in order, that any model has a per-type score for.
pub fn question_types(models: &[ModelReport]) -> Vec<(String, usize)> {
    let mut types: BTreeSet<(String, usize)> = BTreeSet::new();
    for m in models {
        for (k, s) in &m.metrics.vqa_per_type {
            types.insert((k.clone(), s.n));
        }
    }
    let mut seen = BTreeSet::new();
    types
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

/// Grouped bars: VQA accuracy per question type (and over all questions), one bar per model.
pub fn plot_accuracy(report: &CompareReport, path: &Path) -> Result<()> {
    let types = question_types(&report.models);
    let mut groups = vec!["all questions".to_string()];
    groups.extend(types.iter().map(|(k, _)| k.clone()));
    let series: Vec<BarSeries> = report
        .models
        .iter()
        .map(|m| {
            let mut values = vec![m.metrics.vqa.as_ref().map(|v| v.accuracy)];
            values.extend(
                types
                    .iter()
                    .map(|(k, _)| m.metrics.vqa_per_type.get(k).map(|s| s.accuracy)),
            );
            BarSeries {
                name: m.name.clone(),
                values,
            }
        })
        .collect();
    grouped_bars(
        path,
        "VQA accuracy per question type",
        "accuracy",
        &groups,
        &series,
        1.0,
    )
}

#[cfg(test)]
mod tests {
    use super::unique_name;
    use std::path::Path;

    #[test]
    fn repeated_model_names_fall_back_to_paths() {
        assert_eq!(unique_name("m", Path::new("a/m"), &[]), "m");
        assert_eq!(unique_name("m", Path::new("a/m"), &["m"]), "a/m");
        assert_eq!(unique_name("m", Path::new("a/m"), &["m", "a/m"]), "m#2");
    }
}
