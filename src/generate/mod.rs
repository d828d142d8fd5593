//! Decoding strategies: greedy search, beam search and sampling.
//!
//! Every strategy keeps one self-attention cache row per hypothesis and one
//! copy of the cross-attention keys/values per input: the decoder runs on
//! B·K rows (row = b·K + k, image-major) against keys/values of batch B, and
//! `Attention::attend` folds the K rows of an input into its query axis.
mod beam;
mod sample;

pub use beam::beam_search;
pub use sample::SamplingOptions;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

use crate::model::dir::ModelDir;
use crate::model::{pad_tokens, Config, CrossKv, FusionModel, Memory, SelfCache};

/// A decoding option out of range: `option` names the field of
/// [`GenerateOptions`] or [`SamplingOptions`] at fault, `value` its value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{option} {value}: {problem}")]
pub struct InvalidOption {
    pub option: &'static str,
    pub value: String,
    pub problem: String,
}

impl InvalidOption {
    pub fn new(option: &'static str, value: impl ToString, problem: impl Into<String>) -> Self {
        InvalidOption {
            option,
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// End-of-sequence is not allowed before this many tokens.
    pub min_new_tokens: usize,
    /// Project the cross-attention keys/values once (true) or at every step
    /// (false, only for measuring what the cache saves).
    pub cache_cross_kv: bool,
    /// Hypotheses kept per input; 1 is greedy search.
    pub beams: usize,
    /// Beam hypotheses are ranked by `logprob / length^length_penalty`:
    /// 0 ranks by log-probability alone (favouring short outputs), larger
    /// values favour longer ones.
    pub length_penalty: f32,
    /// Never generate the same n-gram of this many tokens twice (0 = off).
    pub no_repeat_ngram: usize,
    /// CTRL-style penalty on every token already generated: its logit is
    /// divided by this when positive, multiplied when negative (1 = off).
    pub repetition_penalty: f32,
    /// Sequences returned per input: the best beams, or independent samples.
    pub num_return: usize,
    /// Sample tokens instead of searching for the most likely sequence.
    pub sampling: Option<SamplingOptions>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 40,
            min_new_tokens: 0,
            cache_cross_kv: true,
            beams: 1,
            length_penalty: 1.0,
            no_repeat_ngram: 0,
            repetition_penalty: 1.0,
            num_return: 1,
            sampling: None,
        }
    }
}

impl GenerateOptions {
    /// Checks the combination of options; the error names the field at fault.
    pub fn validate(&self) -> std::result::Result<(), InvalidOption> {
        if self.max_new_tokens == 0 {
            return Err(InvalidOption::new(
                "max_new_tokens",
                0,
                "would give every input an empty output: use at least 1",
            ));
        }
        if self.beams == 0 {
            return Err(InvalidOption::new(
                "beams",
                0,
                "use 1 for greedy search or more for beam search",
            ));
        }
        if self.num_return == 0 {
            return Err(InvalidOption::new(
                "num_return",
                0,
                "ask for at least 1 sequence per input",
            ));
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(InvalidOption::new(
                "min_new_tokens",
                self.min_new_tokens,
                format!(
                    "is above the longest output allowed ({}); lower the one or raise the other",
                    self.max_new_tokens
                ),
            ));
        }
        if !self.length_penalty.is_finite() {
            return Err(InvalidOption::new(
                "length_penalty",
                self.length_penalty,
                "give a finite number (1 is the usual choice)",
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(InvalidOption::new(
                "repetition_penalty",
                self.repetition_penalty,
                "give a positive number (1 = off, 1.2 is typical)",
            ));
        }
        match &self.sampling {
            Some(sampling) => {
                sampling.validate()?;
                if self.beams > 1 {
                    return Err(InvalidOption::new("beams", self.beams, "beam search cannot be combined with sampling; choose one"));
                }
            }
            None if self.num_return > self.beams => {
                return Err(InvalidOption::new(
                    "num_return",
                    self.num_return,
                    format!("needs at least as many beams (there are {}); raise the beams, or sample instead", self.beams),
                ))
            }
            None => {}
        }
        Ok(())
    }

    /// Decoding steps this model allows: positions beyond `max_decode_len` have no embedding.
    fn max_steps(&self, model: &FusionModel) -> usize {
        self.max_new_tokens.min(model.cfg.max_decode_len)
    }

    /// How many inputs one decoding pass of a `cfg` model may hold within
    /// [`DECODE_MEMORY_BYTES`]; errs, naming the limit, when one input alone
    /// (its beams or samples) needs more.
    pub fn inputs_per_pass(&self, cfg: &Config) -> Result<usize> {
        let row = row_bytes(cfg);
        let per_input = self.beams.max(self.num_return).saturating_mul(row);
        if per_input > DECODE_MEMORY_BYTES {
            bail!(
                "beams {} with num_return {} needs about {} MiB of decoder memory per input with this model, above the limit of {} MiB: use at most {} beams (or samples)",
                self.beams,
                self.num_return,
                per_input >> 20,
                DECODE_MEMORY_BYTES >> 20,
                DECODE_MEMORY_BYTES / row
            );
        }
        Ok(DECODE_MEMORY_BYTES / per_input)
    }
}

/// The decoder memory one decoding pass may use, over all its rows (inputs ×
/// beams or samples); larger batches are split into several passes.
pub const DECODE_MEMORY_BYTES: usize = 2 << 30;

/// Estimated peak bytes of one decoder row. Measured on the shipped model,
/// `caption` of 4 images with `--beams 1000` peaked at 4.9 GB, 1.2 MB a row:
/// about 15 times the row's self-attention cache at full length, which the
/// step-by-step growth and beam reordering of the cache copy many times.
fn row_bytes(cfg: &Config) -> usize {
    let cache = 2 * cfg.decoder_layers.max(1) * cfg.d_model * cfg.max_decode_len;
    4 * (16 * cache + 8 * cfg.vocab_size)
}

/// One generated sequence: tokens without BOS/EOS, and its total log-probability
/// under the model (the EOS token included when it was produced).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub logprob: f32,
}

/// Called with (row, token) for each token as it is chosen; row = input · num_return + n.
pub type OnToken<'a> = dyn FnMut(usize, u32) -> Result<()> + Send + 'a;

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

/// Index of the largest value among the allowed tokens (the first on ties).
pub fn argmax(values: &[f32], allowed: impl Fn(u32) -> bool) -> u32 {
    let mut best: Option<(u32, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if allowed(i as u32) && best.is_none_or(|(_, b)| v > b) {
            best = Some((i as u32, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Runs the decoder one token per row, keeping the self-attention cache and
/// the cross-attention keys/values between steps.
struct Stepper<'a> {
    model: &'a FusionModel,
    memory: &'a Memory,
    cross: Vec<CrossKv>,
    cache: SelfCache,
    cache_cross_kv: bool,
    device: Device,
}

impl<'a> Stepper<'a> {
    fn new(model: &'a FusionModel, memory: &'a Memory, cache_cross_kv: bool) -> Result<Self> {
        Ok(Stepper {
            model,
            memory,
            cross: model.cross_kv(memory)?,
            cache: SelfCache::new(model.cfg.decoder_layers),
            cache_cross_kv,
            device: memory.vision.device().clone(),
        })
    }

    /// Feeds `tokens` (one per row, B·K rows) and returns each row's next-token logits.
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if !self.cache_cross_kv && !self.cache.is_empty()? {
            self.cross = self.model.cross_kv(self.memory)?;
        }
        let input = Tensor::from_vec(tokens.to_vec(), (tokens.len(), 1), &self.device)?;
        let logits =
            self.model
                .decoder
                .forward(&input, &self.cross, Some(&mut self.cache), None)?;
        Ok(logits.squeeze(1)?.to_vec2::<f32>()?)
    }

    /// Row i of the cache becomes old row `parents[i]` (beam reselection).
    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        if parents.iter().enumerate().all(|(i, &p)| p as usize == i) {
            return Ok(());
        }
        let index = Tensor::from_vec(parents.to_vec(), parents.len(), &self.device)?;
        Ok(self.cache.select(&index)?)
    }
}

/// The per-step rules every strategy applies to the model's distribution.
struct TokenRules {
    eos: u32,
    min_new_tokens: usize,
    no_repeat_ngram: usize,
    repetition_penalty: f32,
}

/// One row's next-token scores.
struct StepScores {
    /// What the strategy chooses by: log-probabilities after the repetition
    /// penalty, with forbidden tokens at -inf.
    search: Vec<f32>,
    /// The model's own log-probabilities, summed into `Generated::logprob`.
    model: Vec<f32>,
}

impl TokenRules {
    fn new(model: &FusionModel, opts: &GenerateOptions) -> Self {
        TokenRules {
            eos: model.cfg.eos_id,
            min_new_tokens: opts.min_new_tokens,
            no_repeat_ngram: opts.no_repeat_ngram,
            repetition_penalty: opts.repetition_penalty,
        }
    }

    /// Scores for the token after `history` (the tokens generated so far).
    fn scores(&self, logits: &[f32], history: &[u32]) -> StepScores {
        let model = log_softmax(logits);
        let mut search = if self.repetition_penalty == 1.0 {
            model.clone()
        } else {
            log_softmax(&penalise_repeats(logits, history, self.repetition_penalty))
        };
        let eos = self.eos as usize;
        let eos_score = search[eos];
        if history.len() < self.min_new_tokens {
            search[eos] = f32::NEG_INFINITY;
        }
        for token in ngram_completions(history, self.no_repeat_ngram) {
            search[token as usize] = f32::NEG_INFINITY;
        }
        // When the n-gram rule leaves nothing, ending beats stopping mid-way.
        if search.iter().all(|s| *s == f32::NEG_INFINITY) {
            search[eos] = eos_score;
        }
        StepScores { search, model }
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    logits.iter().map(|&l| l - max - log_sum).collect()
}

fn penalise_repeats(logits: &[f32], history: &[u32], penalty: f32) -> Vec<f32> {
    let mut seen = vec![false; logits.len()];
    let mut out = logits.to_vec();
    for &token in history {
        let t = token as usize;
        if t < out.len() && !seen[t] {
            seen[t] = true;
            out[t] = if out[t] > 0.0 {
                out[t] / penalty
            } else {
                out[t] * penalty
            };
        }
    }
    out
}

/// Tokens that would repeat an n-gram of `history` if generated next.
fn ngram_completions(history: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || history.len() < n {
        return Vec::new();
    }
    let prefix = &history[history.len() + 1 - n..];
    history
        .windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_completions_find_every_repeat() {
        assert_eq!(ngram_completions(&[5, 6, 5], 2), vec![6]);
        assert_eq!(ngram_completions(&[5, 6, 7, 5], 2), vec![6]);
        assert_eq!(ngram_completions(&[5, 6, 7], 3), Vec::<u32>::new());
        assert_eq!(ngram_completions(&[5, 6, 9, 5, 6], 3), vec![9]);
        assert_eq!(ngram_completions(&[4, 7], 1), vec![4, 7]);
        assert!(ngram_completions(&[5], 2).is_empty());
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens_only() {
        let out = penalise_repeats(&[2.0, -2.0, 1.0], &[0, 1, 1], 2.0);
        assert_eq!(out, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
