//! One decoding step for every row: the decoder with its caches, and the
//! rules (length, repeats) every strategy applies to its scores.
use anyhow::Result;
use candle_core::{Device, Tensor};

use super::options::GenerateOptions;
use crate::model::{CrossKv, FusionModel, Memory, SelfCache};

/// One generated sequence: tokens without BOS/EOS, and its total log-probability
/// under the model (the EOS token included when it was produced).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub logprob: f32,
}

/// Called with (row, token) for each token as it is chosen; row = input · num_return + n.
pub type OnToken<'a> = dyn FnMut(usize, u32) -> Result<()> + Send + 'a;

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
pub(super) struct Stepper<'a> {
    model: &'a FusionModel,
    memory: &'a Memory,
    cross: Vec<CrossKv>,
    cache: SelfCache,
    cache_cross_kv: bool,
    device: Device,
}

impl<'a> Stepper<'a> {
    pub(super) fn new(
        model: &'a FusionModel,
        memory: &'a Memory,
        cache_cross_kv: bool,
    ) -> Result<Self> {
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
    pub(super) fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
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
    pub(super) fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        if parents.iter().enumerate().all(|(i, &p)| p as usize == i) {
            return Ok(());
        }
        let index = Tensor::from_vec(parents.to_vec(), parents.len(), &self.device)?;
        Ok(self.cache.select(&index)?)
    }
}

/// The per-step rules every strategy applies to the model's distribution.
pub(super) struct TokenRules {
    pub(super) eos: u32,
    min_new_tokens: usize,
    no_repeat_ngram: usize,
    repetition_penalty: f32,
}

/// One row's next-token scores.
pub(super) struct StepScores {
    /// What the strategy chooses by: log-probabilities after the repetition
    /// penalty, with forbidden tokens at -inf.
    pub(super) search: Vec<f32>,
    /// The model's own log-probabilities, summed into `Generated::logprob`.
    pub(super) model: Vec<f32>,
}

impl TokenRules {
    pub(super) fn new(model: &FusionModel, opts: &GenerateOptions) -> Self {
        TokenRules {
            eos: model.cfg.eos_id,
            min_new_tokens: opts.min_new_tokens,
            no_repeat_ngram: opts.no_repeat_ngram,
            repetition_penalty: opts.repetition_penalty,
        }
    }

    /// Scores for the token after `history` (the tokens generated so far).
    pub(super) fn scores(&self, logits: &[f32], history: &[u32]) -> StepScores {
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
