//! One model's row of a comparison: its metrics, speed and facts.
use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::Device;
use indicatif::ProgressBar;
use serde::Serialize;

use super::evaluation::{evaluate, EvalOptions, Evaluation, ModalityShare};
use super::facts::{gates, parameter_counts, peak_memory_bytes, Gate};
use super::metrics::{metrics, Metrics};
use super::prediction::Prediction;
use crate::data::manifest::Record;
use crate::model::Fusion;
use crate::pipeline::ModelDir;

/// One model's row of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The column name: the directory's name, made unique.
    pub name: String,
    pub path: String,
    pub fusion: Fusion,
    pub parameters: usize,
    /// Parameters of the tensors with "cross_attn" in their names.
    pub cross_attention_parameters: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Mean encode + greedy decode time per image, one image per pass.
    pub ms_per_image_batch1: f64,
    /// The same with `batch_size` images per pass.
    pub ms_per_image_batched: f64,
    pub batch_size: usize,
    /// The records both speeds were timed on (the first ones), after the
    /// evaluation run had warmed up.
    pub speed_samples: usize,
    /// VmHWM of the whole process after this model ran: models are evaluated
    /// one after another in one process, so this never decreases.
    pub process_peak_memory_bytes: Option<u64>,
    /// Concat only: mean cross-attention share on image vs text, per type key and "all".
    pub modality_share: Option<BTreeMap<String, ModalityShare>>,
    /// Gated only: `tanh(alpha)` per decoder layer.
    pub gate_values: Option<Vec<Gate>>,
    /// Records whose image could not be read (scored as empty outputs).
    pub failed: usize,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Decoding speed measured on the same records one at a time and batched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub ms_batch1: f64,
    pub ms_batched: f64,
    pub batch_size: usize,
    /// Records timed.
    pub samples: usize,
}

/// Times greedy decoding of `records` at batch 1 and at `opts.batch_size`.
/// Run it after a first pass over the data, so that neither figure pays for warm-up.
pub fn measure_speed(
    md: &ModelDir,
    records: &[&Record],
    opts: &EvalOptions,
    device: &Device,
) -> Result<Speed> {
    let hidden = ProgressBar::hidden();
    let timed = |batch_size: usize| -> Result<f64> {
        let opts = EvalOptions {
            batch_size,
            modality_share: false,
            ..opts.clone()
        };
        Ok(evaluate(md, records, &opts, device, &hidden)?.ms_per_image())
    };
    Ok(Speed {
        ms_batch1: timed(1)?,
        ms_batched: timed(opts.batch_size)?,
        batch_size: opts.batch_size,
        samples: records.len(),
    })
}

/// Puts a model's evaluation, its speed and its facts together.
pub fn model_report(
    md: &ModelDir,
    name: String,
    evaluation: Evaluation,
    speed: Speed,
) -> Result<ModelReport> {
    let (parameters, cross_attention_parameters) = parameter_counts(md);
    Ok(ModelReport {
        name,
        path: md.path.display().to_string(),
        fusion: md.model.cfg.fusion,
        parameters,
        cross_attention_parameters,
        metrics: metrics(&evaluation.predictions),
        ms_per_image_batch1: speed.ms_batch1,
        ms_per_image_batched: speed.ms_batched,
        batch_size: speed.batch_size,
        speed_samples: speed.samples,
        process_peak_memory_bytes: peak_memory_bytes(),
        modality_share: evaluation.modality_share.clone(),
        gate_values: gates(&md.model)?,
        failed: evaluation.failures(),
        predictions: evaluation.predictions,
    })
}
