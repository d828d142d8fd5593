//! The training options shared by `train` and `experiment`: the data, the
//! architecture, the optimiser's budget, how examples are batched and
//! weighed, and where and on how many threads training runs.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Args;

use super::model_args::{one_candle_thread_per_worker, thread_count};
use crate::model::{Config, Fusion};
use crate::train::TrainOptions;

#[derive(Args, Debug, Clone)]
pub struct TrainingArgs {
    /// JSONL manifests; records with split "train" (or none) are trained on,
    /// "val" validates (and `experiment` compares on "test").
    #[arg(long, required = true, num_args = 1.., value_name = "MANIFEST")]
    pub data: Vec<PathBuf>,
    /// Architecture (config.json, e.g. from `fusecap init`); fusion and
    /// vocab_size come from the command and the tokenizer, so the file may
    /// leave them out. Default: the shipped size. A file without
    /// `cross_attention_sink` / `text_cross_attention` gets the older design
    /// (both off), as an old model directory does.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up steps (at most the number of steps).
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    #[command(flatten)]
    pub batching: BatchingArgs,
    /// Seeds the initialisation, the order of the examples, the streamed
    /// scenes and the validation sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the random initialisation alone (default: --seed), so that two
    /// runs can share their data and differ only in their starting weights.
    #[arg(long, value_name = "SEED")]
    pub init_seed: Option<u64>,
    /// Percentage of training images held out for validation when no "val" split exists.
    #[arg(long, default_value_t = 5)]
    pub val_percent: u64,
    #[command(flatten)]
    pub threads: ThreadsArgs,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args, Debug, Clone)]
pub struct BatchingArgs {
    /// Examples of the same image put in one batch, so the image is encoded
    /// once for all of them. 1 (every example drawn on its own) learned shape
    /// much faster per step than 4 on easy-VQA; 4 trains more examples a second.
    #[arg(long, default_value_t = 1)]
    pub group_size: usize,
    /// Weigh the questions so that every answer of a question type has the
    /// same total weight in the loss, no weight more than this factor from 1
    /// (0 = off). Against the answer prior: easy-VQA answers "is there a red
    /// shape?" with "no" 7 times in 8.
    #[arg(long, default_value_t = 0.0, value_name = "MAX_WEIGHT")]
    pub balance_answers: f32,
    /// Multiply the loss weight of one question type's examples, e.g.
    /// `--type-weight shape=2 --type-weight "yes/no shape=2"` (repeatable).
    #[arg(long, value_name = "TYPE=FACTOR", value_parser = parse_type_weight)]
    pub type_weight: Vec<(String, f32)>,
}

impl BatchingArgs {
    /// `options` with these settings.
    pub fn apply(&self, options: TrainOptions) -> TrainOptions {
        TrainOptions {
            group_size: self.group_size,
            balance_answers: self.balance_answers,
            type_weights: self.type_weight.iter().cloned().collect(),
            ..options
        }
    }
}

pub fn parse_type_weight(text: &str) -> Result<(String, f32), String> {
    let (name, factor) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected TYPE=FACTOR, e.g. shape=2, not {text:?}"))?;
    match factor.trim().parse::<f32>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok((name.trim().to_string(), f)),
        _ => Err(format!("the factor in {text:?} must be a positive number")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct ThreadsArgs {
    /// Worker threads that share each batch, each doing its arithmetic on
    /// one thread (faster than candle's own threading at this size, see
    /// BENCHMARKS.md). Default: every core. Use 1 to train runs side by side.
    /// Thread counts differ only in float rounding; a --resume is exact with
    /// the same count.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl ThreadsArgs {
    /// The number of training threads.
    pub fn count(&self) -> Result<usize> {
        thread_count(self.threads)
    }

    /// Checks the count and sets candle's own threading to one thread per
    /// worker, which must happen before the first tensor operation.
    pub fn apply(&self) -> Result<usize> {
        let count = self.count()?;
        one_candle_thread_per_worker();
        Ok(count)
    }
}

/// The architecture in the config.json at `path`, with `fusion` and
/// `vocab_size` put in: the command chooses the one and the tokenizer
/// decides the other, so the file may leave them out or hold other values.
pub fn load_architecture(path: &Path, fusion: Fusion, vocab_size: usize) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read the file", path.display()))?;
    let invalid = |e: &dyn std::fmt::Display| {
        anyhow!(
            "--config {}: invalid config ({e}); compare it with the config.json `fusecap init` writes",
            path.display()
        )
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(&e))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(invalid(&"not a JSON object"));
    };
    fields.insert("fusion".into(), fusion.name().into());
    fields.insert("vocab_size".into(), vocab_size.into());
    let mut cfg: Config = serde_json::from_value(value).map_err(|e| invalid(&e))?;
    cfg.validate().map_err(|e| invalid(&e))?;
    if let Some(folder) = path.parent() {
        crate::model::dir::resolve_encoder_dirs(&mut cfg, folder);
    }
    Ok(cfg)
}
