//! What a decoding run may do: search or sample, how long, how many
//! sequences, and the rules on repeats; checked before anything runs.
use anyhow::{bail, Result};

use crate::model::{Config, FusionModel};

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

/// The longest output, in tokens, when nothing else is asked for.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 40;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
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
    pub(super) fn max_steps(&self, model: &FusionModel) -> usize {
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

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// Divides the logits; below 1 sharpens the distribution, 0 picks the most likely token.
    pub temperature: f32,
    /// Draw only among the k most likely tokens.
    pub top_k: Option<usize>,
    /// Draw only among the fewest most likely tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// The same seed and options give the same samples.
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    pub fn validate(&self) -> std::result::Result<(), InvalidOption> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(InvalidOption::new(
                "temperature",
                self.temperature,
                "give a number ≥ 0 (0 = greedy, 1 = the model's distribution)",
            ));
        }
        if self.top_k == Some(0) {
            return Err(InvalidOption::new(
                "top_k",
                0,
                "keep at least 1 token, or leave it unset to keep all",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(InvalidOption::new(
                "top_p",
                self.top_p,
                "give a probability in (0, 1], e.g. 0.9",
            ));
        }
        Ok(())
    }
}
