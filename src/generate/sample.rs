//! One token per row per step: greedy search and seeded sampling.
use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::options::{GenerateOptions, SamplingOptions};
use super::step::{argmax, Generated, OnToken, Stepper, TokenRules};
use crate::model::{FusionModel, Memory};

/// Decodes `opts.num_return` rows per input (image-major), choosing each token
/// by argmax (`sampling` None, or temperature 0) or by a seeded draw.
pub(super) fn decode_rows(
    model: &FusionModel,
    memory: &Memory,
    opts: &GenerateOptions,
    sampling: Option<&SamplingOptions>,
    mut on_token: Option<&mut OnToken>,
) -> Result<Vec<Vec<Generated>>> {
    let eos = model.cfg.eos_id;
    let per_input = opts.num_return;
    let rows = memory.vision.dim(0)? * per_input;
    let rules = TokenRules::new(model, opts);
    let mut chooser = Chooser::new(sampling, rows);
    let mut stepper = Stepper::new(model, memory, opts.cache_cross_kv)?;
    let mut out = vec![Generated::default(); rows];
    let mut finished = vec![false; rows];
    let mut next = vec![model.cfg.bos_id; rows];
    for _ in 0..opts.max_steps(model) {
        let logits = stepper.step(&next)?;
        for row in 0..rows {
            if finished[row] {
                next[row] = eos;
                continue;
            }
            let scores = rules.scores(&logits[row], &out[row].tokens);
            let token = chooser.choose(row, &scores.search);
            out[row].logprob += scores.model[token as usize];
            if token == eos {
                finished[row] = true;
            } else {
                out[row].tokens.push(token);
                if let Some(callback) = on_token.as_deref_mut() {
                    callback(row, token)?;
                }
            }
            next[row] = token;
        }
        if finished.iter().all(|&f| f) {
            break;
        }
    }
    Ok(out
        .chunks(per_input)
        .map(|samples| {
            let mut samples = samples.to_vec();
            samples.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            samples
        })
        .collect())
}

/// Picks the next token of a row from its scores.
enum Chooser {
    Argmax,
    /// One generator per row, so a row's draws do not depend on when others finish.
    Sample {
        options: SamplingOptions,
        rngs: Vec<StdRng>,
    },
}

impl Chooser {
    fn new(sampling: Option<&SamplingOptions>, rows: usize) -> Self {
        match sampling {
            Some(options) if options.temperature > 0.0 => {
                let mut seeder = StdRng::seed_from_u64(options.seed);
                let rngs = (0..rows)
                    .map(|_| StdRng::seed_from_u64(seeder.next_u64()))
                    .collect();
                Chooser::Sample {
                    options: options.clone(),
                    rngs,
                }
            }
            _ => Chooser::Argmax,
        }
    }

    fn choose(&mut self, row: usize, scores: &[f32]) -> u32 {
        match self {
            Chooser::Argmax => argmax(scores, |_| true),
            Chooser::Sample { options, rngs } => {
                let candidates = truncated_distribution(scores, options);
                draw(&candidates, rngs[row].random::<f64>())
            }
        }
    }
}

/// The tokens left after temperature, top-k and top-p, with their unnormalised
/// probabilities, most likely first. Never empty while some score is finite.
fn truncated_distribution(scores: &[f32], options: &SamplingOptions) -> Vec<(u32, f64)> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let temperature = f64::from(options.temperature);
    let mut candidates: Vec<(u32, f64)> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .map(|(t, &s)| (t as u32, (f64::from(s - max) / temperature).exp()))
        .collect();
    // Stable: equal probabilities keep token order, so top-k 1 agrees with argmax.
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = options.top_k {
        candidates.truncate(k.max(1));
    }
    if options.top_p < 1.0 {
        let total: f64 = candidates.iter().map(|c| c.1).sum();
        let mut cumulative = 0.0;
        let keep = candidates
            .iter()
            .position(|c| {
                cumulative += c.1 / total;
                cumulative >= f64::from(options.top_p)
            })
            .map_or(candidates.len(), |i| i + 1);
        candidates.truncate(keep);
    }
    candidates
}

/// The token whose cumulative-probability interval contains `u` ∈ [0, 1).
fn draw(candidates: &[(u32, f64)], u: f64) -> u32 {
    let total: f64 = candidates.iter().map(|c| c.1).sum();
    let mut remaining = u * total;
    for &(token, p) in candidates {
        if remaining < p {
            return token;
        }
        remaining -= p;
    }
    candidates.last().map_or(0, |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(top_k: Option<usize>, top_p: f32) -> SamplingOptions {
        SamplingOptions {
            top_k,
            top_p,
            ..SamplingOptions::default()
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        let scores: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let kept = |p| {
            truncated_distribution(&scores, &options(None, p))
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(0.5), vec![0]);
        assert_eq!(kept(0.79), vec![0, 1]);
        assert_eq!(kept(0.81), vec![0, 1, 2]);
        assert_eq!(kept(1.0), vec![0, 1, 2, 3]);
    }

    #[test]
    fn top_k_and_forbidden_tokens() {
        let scores = [-1.0, f32::NEG_INFINITY, -0.5, -3.0];
        let kept: Vec<u32> = truncated_distribution(&scores, &options(Some(2), 1.0))
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(kept, vec![2, 0]);
    }

    #[test]
    fn draw_follows_the_cumulative_distribution() {
        let candidates = [(7, 0.5), (8, 0.25), (9, 0.25)];
        assert_eq!(draw(&candidates, 0.0), 7);
        assert_eq!(draw(&candidates, 0.49), 7);
        assert_eq!(draw(&candidates, 0.6), 8);
        assert_eq!(draw(&candidates, 0.99), 9);
    }
}
