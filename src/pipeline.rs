//! From files to model inputs, and from generated token ids back to text:
//! loading a model directory, reading and preprocessing images, and the
//! tokenizer. `caption`, `ask`, `eval`, `compare` and `explain` reach the
//! model only through here; `generate` sees encoder memories and token ids.
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use candle_core::Device;
use image::RgbImage;

use crate::data::image::batch_tensor;
use crate::data::manifest::{Record, Task};
use crate::generate::{
    generate, inference_workers, on_worker, GenerateOptions, Generated, OnToken,
};
use crate::model::{pad_tokens, Config, Memory};

pub use crate::data::image::{decode_rgb, Preprocess, IMAGE_EXTENSIONS};
pub use crate::model::dir::ModelDir;

/// Inputs per forward pass when nothing else is asked for.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Loads the model directory `dir` (config.json, model.safetensors,
/// tokenizer.json) onto `device`, checking that the three files agree.
pub fn load_model(dir: &Path, device: &Device) -> Result<ModelDir> {
    ModelDir::load(dir, device)
}

/// One input to answer: preprocessed pixels and the text-encoder input
/// (the question, or the model's caption prompt).
#[derive(Debug, Clone)]
pub struct Query {
    pub pixels: Vec<f32>,
    pub text: String,
}

/// A generated answer or caption with its text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub tokens: Vec<u32>,
    pub logprob: f32,
}

/// How images are brought to the input of `md`'s vision encoder.
pub fn preprocess(md: &ModelDir) -> Preprocess {
    Preprocess::from_config(&md.model.cfg)
}

/// Reads the image at `path` and preprocesses it for `md`.
pub fn image_pixels(md: &ModelDir, path: &Path) -> Result<Vec<f32>> {
    preprocess(md).load(path)
}

/// The text-encoder input of a record: its question, or the caption prompt.
pub fn input_text(record: &Record, cfg: &Config) -> String {
    match &record.task {
        Task::Caption { .. } => cfg.caption_prompt.clone(),
        Task::Vqa { question, .. } => question.clone(),
    }
}

/// The token ids of `text` as the text encoder receives them, before the
/// cut to the model's `max_text_len`.
pub fn text_ids(md: &ModelDir, text: &str) -> Result<Vec<u32>> {
    md.tokenizer.encode(text)
}

/// The text of generated token ids.
pub fn decode_text(md: &ModelDir, tokens: &[u32]) -> Result<String> {
    md.tokenizer.decode(tokens)
}

/// The vocabulary entry of one token id, or `#ID` for an id outside it.
pub fn token_label(md: &ModelDir, id: u32) -> String {
    md.tokenizer.token(id).unwrap_or_else(|| format!("#{id}"))
}

/// Runs both encoders on a batch of queries.
pub fn encode_queries(md: &ModelDir, queries: &[Query], device: &Device) -> Result<Memory> {
    let cfg = &md.model.cfg;
    let pixels: Vec<Vec<f32>> = queries.iter().map(|q| q.pixels.clone()).collect();
    let images = batch_tensor(&pixels, cfg.image_size, device)?;
    let texts = queries
        .iter()
        .map(|q| text_ids(md, &q.text))
        .collect::<Result<Vec<_>>>()?;
    let (ids, valid) = pad_tokens(&texts, cfg.pad_id, cfg.max_text_len, device)?;
    Ok(md.model.encode(&images, &ids, &valid)?)
}

/// Encodes a batch of queries and decodes them; returns the best sequence of each.
pub fn answer_batch(
    md: &ModelDir,
    queries: &[Query],
    opts: &GenerateOptions,
    device: &Device,
) -> Result<Vec<Answer>> {
    let all = answer_queries(md, queries, opts, device, None)?;
    all.into_iter()
        .zip(queries)
        .map(|(answers, q)| {
            answers
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no sequence was generated for {:?}", q.text))
        })
        .collect()
}

/// Encodes a batch of queries and decodes them; returns up to
/// `opts.num_return` answers per query, best first.
/// The queries go through the decoder in as many passes as
/// [`GenerateOptions::inputs_per_pass`] needs.
pub fn answer_queries(
    md: &ModelDir,
    queries: &[Query],
    opts: &GenerateOptions,
    device: &Device,
    mut on_token: Option<&mut OnToken>,
) -> Result<Vec<Vec<Answer>>> {
    let per_pass = opts.inputs_per_pass(&md.model.cfg)?;
    let mut answers = Vec::with_capacity(queries.len());
    for part in queries.chunks(per_pass) {
        let generated = match on_token.as_deref_mut() {
            Some(stream) => on_worker(|| {
                let memory = encode_queries(md, part, device)?;
                generate(&md.model, &memory, opts, Some(stream))
            })?,
            None => generate_queries(md, part, opts, device)?,
        };
        for seqs in generated {
            answers.push(
                seqs.into_iter()
                    .map(|g| {
                        Ok(Answer {
                            text: decode_text(md, &g.tokens)?,
                            tokens: g.tokens,
                            logprob: g.logprob,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            );
        }
    }
    Ok(answers)
}

/// Encodes and decodes `queries` in one pass, split across the inference
/// workers (`generate::inference_workers`) where that decodes every input
/// as the whole batch would: on the CPU, and without sampling, whose draws
/// depend on an input's row in the batch.
pub fn generate_queries(
    md: &ModelDir,
    queries: &[Query],
    opts: &GenerateOptions,
    device: &Device,
) -> Result<Vec<Vec<Generated>>> {
    let run = |rows: Range<usize>| {
        let memory = encode_queries(md, &queries[rows], device)?;
        generate(&md.model, &memory, opts, None)
    };
    match inference_workers() {
        Some(workers) if device.is_cpu() && opts.sampling.is_none() => {
            workers.map_shards(queries.len(), run)
        }
        _ => on_worker(|| run(0..queries.len())),
    }
}

/// Decoded images at the model's input size, each file read once; an
/// unreadable file keeps its error.
pub struct ImageCache {
    preprocess: Preprocess,
    images: HashMap<PathBuf, std::result::Result<RgbImage, String>>,
}

impl ImageCache {
    pub fn new(cfg: &Config) -> Self {
        ImageCache {
            preprocess: Preprocess::from_config(cfg),
            images: HashMap::new(),
        }
    }

    /// The preprocessed pixels of `path`, or why it could not be read.
    pub fn pixels(&mut self, path: &Path) -> std::result::Result<Vec<f32>, String> {
        let preprocess = &self.preprocess;
        let entry = self.images.entry(path.to_path_buf()).or_insert_with(|| {
            decode_rgb(path)
                .map(|img| preprocess.resized(&img))
                .map_err(|e| format!("{e:#}"))
        });
        match entry {
            Ok(img) => Ok(preprocess.normalise(img)),
            Err(e) => Err(e.clone()),
        }
    }
}
