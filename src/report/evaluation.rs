//! Running a model greedily over manifest records and scoring its outputs.
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use indicatif::ProgressBar;
use serde::Serialize;

use super::attention::image_shares;
use super::prediction::{score_predictions, Prediction};
use super::records::type_key;
use crate::data::manifest::Record;
use crate::generate::{greedy, GenerateOptions, DEFAULT_MAX_NEW_TOKENS};
use crate::model::Config;
use crate::pipeline::{
    decode_text, encode_queries, generate_queries, input_text, ImageCache, ModelDir, Query,
    DEFAULT_BATCH_SIZE,
};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Records per forward pass.
    pub batch_size: usize,
    pub max_new_tokens: usize,
    /// Also measure how the cross-attention splits between image and text
    /// (concat models only; costs one extra teacher-forced pass per batch).
    pub modality_share: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            modality_share: false,
        }
    }
}

impl EvalOptions {
    fn generate(&self) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            ..GenerateOptions::default()
        }
    }
}

/// The mean share of cross-attention mass on image and on text tokens, and
/// on the attention sink (`Config::cross_attention_sink`; 0 without one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModalityShare {
    pub image: f64,
    pub text: f64,
    pub sink: f64,
    /// Records averaged over (each weighs the same; its steps are averaged first).
    pub n: usize,
}

/// What a model produced on a list of records.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// One per record, in record order, scored.
    pub predictions: Vec<Prediction>,
    /// Seconds spent encoding and decoding (reading image files excluded).
    pub decode_seconds: f64,
    /// Records that were decoded (those whose image loaded).
    pub decoded: usize,
    pub batch_size: usize,
    /// Per type key (see [`type_key`]) plus "all"; `Some` for concat models
    /// when [`EvalOptions::modality_share`] is set.
    pub modality_share: Option<BTreeMap<String, ModalityShare>>,
}

impl Evaluation {
    /// Mean encode + decode time per record; 0 when nothing was decoded.
    pub fn ms_per_image(&self) -> f64 {
        if self.decoded == 0 {
            0.0
        } else {
            1000.0 * self.decode_seconds / self.decoded as f64
        }
    }

    pub fn failures(&self) -> usize {
        self.predictions
            .iter()
            .filter(|p| p.error.is_some())
            .count()
    }
}

/// Runs the model greedily over `records` in batches and scores the outputs.
/// A record whose image cannot be read gets an error prediction (scored as
/// empty); the others still run. `progress` advances by one per record.
pub fn evaluate(
    md: &ModelDir,
    records: &[&Record],
    opts: &EvalOptions,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Evaluation> {
    let mut images = ImageCache::new(&md.model.cfg);
    let want_share = opts.modality_share && md.model.cfg.fusion.joint_memory();
    let mut shares = ShareSums::default();
    let mut predictions = Vec::with_capacity(records.len());
    let (mut seconds, mut decoded) = (0.0, 0);
    for chunk in records.chunks(opts.batch_size.max(1)) {
        let mut batch = ChunkInputs::load(chunk, &mut images, &md.model.cfg);
        if !batch.queries.is_empty() {
            let start = Instant::now();
            let (generated, memory) = if want_share {
                let memory = encode_queries(md, &batch.queries, device)?;
                (greedy(&md.model, &memory, &opts.generate())?, Some(memory))
            } else {
                let all = generate_queries(md, &batch.queries, &opts.generate(), device)?;
                (all.into_iter().flatten().collect::<Vec<_>>(), None)
            };
            let texts = generated
                .iter()
                .map(|g| decode_text(md, &g.tokens))
                .collect::<Result<Vec<_>>>()?;
            seconds += start.elapsed().as_secs_f64();
            decoded += batch.queries.len();
            if let Some(memory) = &memory {
                let tokens: Vec<Vec<u32>> = generated.iter().map(|g| g.tokens.clone()).collect();
                let row_shares = image_shares(&md.model, memory, &tokens, &opts.generate())?;
                for (&row, share) in batch.rows.iter().zip(row_shares) {
                    shares.add(&type_key(chunk[row]), share);
                }
            }
            for ((&row, g), text) in batch.rows.iter().zip(&generated).zip(texts) {
                batch.outputs[row] = Some(Prediction::new(chunk[row], text, g.logprob, None));
            }
        }
        predictions.extend(batch.outputs.into_iter().flatten());
        progress.inc(chunk.len() as u64);
    }
    score_predictions(&mut predictions);
    Ok(Evaluation {
        predictions,
        decode_seconds: seconds,
        decoded,
        batch_size: opts.batch_size,
        modality_share: want_share.then(|| shares.means()),
    })
}

/// The model inputs of one chunk of records. Records whose image failed
/// already have their (error) prediction; the others wait for theirs.
struct ChunkInputs {
    queries: Vec<Query>,
    /// The chunk row of each query.
    rows: Vec<usize>,
    /// One per chunk row.
    outputs: Vec<Option<Prediction>>,
}

impl ChunkInputs {
    fn load(chunk: &[&Record], images: &mut ImageCache, cfg: &Config) -> Self {
        let mut inputs = ChunkInputs {
            queries: Vec::new(),
            rows: Vec::new(),
            outputs: Vec::with_capacity(chunk.len()),
        };
        for (row, record) in chunk.iter().enumerate() {
            match images.pixels(&record.image) {
                Ok(pixels) => {
                    let text = input_text(record, cfg);
                    inputs.queries.push(Query { pixels, text });
                    inputs.rows.push(row);
                    inputs.outputs.push(None);
                }
                Err(e) => {
                    let failed = Prediction::new(record, String::new(), 0.0, Some(e));
                    inputs.outputs.push(Some(failed));
                }
            }
        }
        inputs
    }
}

/// Sums of per-record (image, text, sink) shares, by type key.
#[derive(Default)]
struct ShareSums {
    sums: BTreeMap<String, ([f64; 3], usize)>,
}

impl ShareSums {
    fn add(&mut self, key: &str, share: [f64; 3]) {
        for k in [key, "all"] {
            let e = self.sums.entry(k.to_string()).or_insert(([0.0; 3], 0));
            e.0.iter_mut().zip(share).for_each(|(sum, x)| *sum += x);
            e.1 += 1;
        }
    }

    fn means(&self) -> BTreeMap<String, ModalityShare> {
        self.sums
            .iter()
            .map(|(k, &([image, text, sink], n))| {
                let n_f = n.max(1) as f64;
                let share = ModalityShare {
                    image: image / n_f,
                    text: text / n_f,
                    sink: sink / n_f,
                    n,
                };
                (k.clone(), share)
            })
            .collect()
    }
}
