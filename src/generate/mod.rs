//! Decoding strategies (greedy search, beam search and sampling): encoder
//! memory in, token ids out. Files and text are `pipeline`'s business.
//!
//! Every strategy keeps one self-attention cache row per hypothesis and one
//! copy of the cross-attention keys/values per input: the decoder runs on
//! B·K rows (row = b·K + k, image-major) against keys/values of batch B, and
//! `Attention::attend` folds the K rows of an input into its query axis.
mod beam;
mod options;
mod sample;
mod step;
mod workers;

pub use beam::beam_search;
pub use options::{
    GenerateOptions, InvalidOption, SamplingOptions, DECODE_MEMORY_BYTES, DEFAULT_MAX_NEW_TOKENS,
};
pub use step::{argmax, Generated, OnToken};
pub use workers::{every_core, inference_workers, set_inference_threads, Workers};

use anyhow::{bail, Result};

use crate::model::{FusionModel, Memory};

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
