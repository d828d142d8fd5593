//! Decoding: greedy search with a self-attention cache and cross-attention
//! keys/values computed once per input.
use anyhow::Result;
use candle_core::{Device, Tensor, D};

use crate::model::dir::ModelDir;
use crate::model::{pad_tokens, FusionModel, Memory, SelfCache};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    /// Project the cross-attention keys/values once (true) or at every step
    /// (false, only for measuring what the cache saves).
    pub cache_cross_kv: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_new_tokens: 24, min_new_tokens: 0, cache_cross_kv: true }
    }
}

/// One generated sequence: tokens without BOS/EOS, and its total log-probability
/// (the EOS token included when it was produced).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub logprob: f32,
}

/// Greedy decoding for every row of `memory`. Each row stops at its own EOS.
pub fn greedy(model: &FusionModel, memory: &Memory, opts: &GenerateOptions) -> Result<Vec<Generated>> {
    let cfg = &model.cfg;
    let device = memory.vision.device().clone();
    let batch = memory.vision.dim(0)?;
    let max_steps = opts.max_new_tokens.min(cfg.max_decode_len);
    let mut cross = model.cross_kv(memory)?;
    let mut cache = SelfCache::new(cfg.decoder_layers);
    let mut outputs = vec![Generated { tokens: Vec::new(), logprob: 0.0 }; batch];
    let mut finished = vec![false; batch];
    let mut next = vec![cfg.bos_id; batch];
    for step in 0..max_steps {
        if !opts.cache_cross_kv && step > 0 {
            cross = model.cross_kv(memory)?;
        }
        let input = Tensor::from_vec(next.clone(), (batch, 1), &device)?;
        let logits = model.decoder.forward(&input, &cross, Some(&mut cache), None)?;
        let logprobs = candle_nn::ops::log_softmax(&logits.squeeze(1)?, D::Minus1)?.to_vec2::<f32>()?;
        for (row, lp) in logprobs.iter().enumerate() {
            if finished[row] {
                next[row] = cfg.eos_id;
                continue;
            }
            let allow_eos = step >= opts.min_new_tokens;
            let token = argmax(lp, |t| allow_eos || t != cfg.eos_id);
            outputs[row].logprob += lp[token as usize];
            if token == cfg.eos_id {
                finished[row] = true;
            } else {
                outputs[row].tokens.push(token);
            }
            next[row] = token;
        }
        if finished.iter().all(|&f| f) {
            break;
        }
    }
    Ok(outputs)
}

/// Index of the largest value among the allowed tokens.
pub fn argmax(values: &[f32], allowed: impl Fn(u32) -> bool) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if allowed(i as u32) && (v > best.1 || best.1 == f32::NEG_INFINITY && i == 0) {
            best = (i as u32, v);
        }
    }
    best.0
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

/// Encodes a batch of queries and decodes them greedily.
pub fn answer_batch(md: &ModelDir, queries: &[Query], opts: &GenerateOptions, device: &Device) -> Result<Vec<Answer>> {
    let memory = encode_queries(md, queries, device)?;
    greedy(&md.model, &memory, opts)?
        .into_iter()
        .map(|g| Ok(Answer { text: md.tokenizer.decode(&g.tokens)?, tokens: g.tokens, logprob: g.logprob }))
        .collect()
}

/// Runs both encoders on a batch of queries.
pub fn encode_queries(md: &ModelDir, queries: &[Query], device: &Device) -> Result<Memory> {
    let cfg = &md.model.cfg;
    let pixels: Vec<Vec<f32>> = queries.iter().map(|q| q.pixels.clone()).collect();
    let images = crate::data::image::batch_tensor(&pixels, cfg.image_size, device)?;
    let texts = queries.iter().map(|q| md.tokenizer.encode(&q.text)).collect::<Result<Vec<_>>>()?;
    let (ids, valid) = pad_tokens(&texts, cfg.pad_id, cfg.max_text_len, device)?;
    Ok(md.model.encode(&images, &ids, &valid)?)
}
