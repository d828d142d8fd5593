//! Decoding strategies: greedy search, beam search and sampling.
//!
//! Every strategy keeps one self-attention cache row per hypothesis and one
//! copy of the cross-attention keys/values per input: the decoder runs on
//! B·K rows (row = b·K + k, image-major) against keys/values of batch B, and
//! `Attention::attend` folds the K rows of an input into its query axis.
mod beam;
mod options;
mod sample;
mod step;

pub use beam::beam_search;
pub use options::{GenerateOptions, InvalidOption, SamplingOptions, DECODE_MEMORY_BYTES};
pub use step::{argmax, Generated, OnToken};

use anyhow::{bail, Result};
use candle_core::Device;

use crate::model::dir::ModelDir;
use crate::model::{pad_tokens, FusionModel, Memory};

/// Decodes every input of `memory` with the strategy `opts` selects. Returns,
/// per input, up to `opts.num_return` sequences, best first (samples are
/// ordered by log-probability). `on_token` streams tokens; beam search cannot,
/// since its best hypothesis is only known at the end.
pub fn generate(
    model: &FusionModel,
    memory: &Memory,
    opts: &GenerateOptions,
    on_token: Option<&mut OnToken>,
) -> Result<Vec<Vec<Generated>>> {
    on_worker(|| generate_here(model, memory, opts, on_token))
}

/// Runs `work` on a rayon worker thread, where candle's own calls into rayon
/// run inline. From any other thread each such call hands its work to a
/// worker and sleeps until it is done; with three beams at batch 1 those
/// hand-offs cost more than the arithmetic (BENCHMARKS.md). Nested calls are
/// free: on a worker, `rayon::scope` runs `work` in place.
pub fn on_worker<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

fn generate_here(
    model: &FusionModel,
    memory: &Memory,
    opts: &GenerateOptions,
    on_token: Option<&mut OnToken>,
) -> Result<Vec<Vec<Generated>>> {
    opts.validate()?;
    if opts.sampling.is_none() && opts.beams > 1 {
        if on_token.is_some() {
            bail!("streaming needs beams = 1: beam search only knows its best sequence at the end");
        }
        return beam_search(model, memory, opts);
    }
    sample::decode_rows(model, memory, opts, opts.sampling.as_ref(), on_token)
}

/// Greedy decoding for every row of `memory`. Each row stops at its own EOS.
/// Honours the length, n-gram and repetition rules of `opts`; ignores its
/// beam and sampling settings.
pub fn greedy(
    model: &FusionModel,
    memory: &Memory,
    opts: &GenerateOptions,
) -> Result<Vec<Generated>> {
    let opts = GenerateOptions {
        beams: 1,
        num_return: 1,
        sampling: None,
        ..opts.clone()
    };
    opts.validate()?;
    let rows = on_worker(|| sample::decode_rows(model, memory, &opts, None, None))?;
    Ok(rows.into_iter().flatten().collect())
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
                .ok_or_else(|| anyhow::anyhow!("no sequence was generated for {:?}", q.text))
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
        let generated = on_worker(|| {
            let memory = encode_queries(md, part, device)?;
            generate(&md.model, &memory, opts, on_token.as_deref_mut())
        })?;
        for seqs in generated {
            answers.push(
                seqs.into_iter()
                    .map(|g| {
                        Ok(Answer {
                            text: md.tokenizer.decode(&g.tokens)?,
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

/// Runs both encoders on a batch of queries.
pub fn encode_queries(md: &ModelDir, queries: &[Query], device: &Device) -> Result<Memory> {
    let cfg = &md.model.cfg;
    let pixels: Vec<Vec<f32>> = queries.iter().map(|q| q.pixels.clone()).collect();
    let images = crate::data::image::batch_tensor(&pixels, cfg.image_size, device)?;
    let texts = queries
        .iter()
        .map(|q| md.tokenizer.encode(&q.text))
        .collect::<Result<Vec<_>>>()?;
    let (ids, valid) = pad_tokens(&texts, cfg.pad_id, cfg.max_text_len, device)?;
    Ok(md.model.encode(&images, &ids, &valid)?)
}
