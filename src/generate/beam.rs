//! Batched beam search: K hypotheses per input, rows ordered b·K + k.
use std::cmp::Ordering;

use anyhow::Result;

use super::options::GenerateOptions;
use super::step::{Generated, Stepper, TokenRules};
use crate::model::{FusionModel, Memory};

/// A live hypothesis. `score` sums the search scores, `logprob` the model's.
#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    score: f32,
    logprob: f32,
}

impl Beam {
    /// A placeholder row: never extended, because nothing beats -inf.
    fn dead() -> Self {
        Beam {
            tokens: Vec::new(),
            score: f32::NEG_INFINITY,
            logprob: 0.0,
        }
    }

    fn is_live(&self) -> bool {
        self.score.is_finite()
    }
}

/// A finished hypothesis and its length-normalised score.
#[derive(Debug, Clone)]
struct Hypothesis {
    generated: Generated,
    score: f32,
    /// Ended with EOS, rather than cut off at the length limit.
    complete: bool,
}

impl Hypothesis {
    /// A hypothesis that ended with EOS; `length` counts it.
    fn ended(tokens: Vec<u32>, logprob: f32, score: f32, length_penalty: f32) -> Self {
        let length = tokens.len() + 1;
        Self::new(tokens, logprob, score, length, length_penalty, true)
    }

    /// A live beam cut off at the length limit.
    fn cut_off(beam: &Beam, length_penalty: f32) -> Self {
        let length = beam.tokens.len();
        Self::new(
            beam.tokens.clone(),
            beam.logprob,
            beam.score,
            length,
            length_penalty,
            false,
        )
    }

    fn new(
        tokens: Vec<u32>,
        logprob: f32,
        score: f32,
        length: usize,
        length_penalty: f32,
        complete: bool,
    ) -> Self {
        let normalised = score / (length.max(1) as f32).powf(length_penalty);
        Hypothesis {
            generated: Generated { tokens, logprob },
            score: normalised,
            complete,
        }
    }
}

/// One extension of a beam by one token.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    logprob: f32,
    beam: usize,
    token: u32,
}

/// Best first; ties go to the lower beam, then the lower token, as in greedy argmax.
fn best_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.beam.cmp(&b.beam))
        .then(a.token.cmp(&b.token))
}

/// Beam search with `opts.beams` beams per input of `memory`. Returns up to
/// `opts.num_return` hypotheses per input, ranked by
/// `score / length^length_penalty`; those cut off at the length limit rank
/// after every one that ended, since a penalty above 0 would otherwise favour
/// an output that never ends. An input stops as soon as it has `beams`
/// finished hypotheses (early stopping), so one beam equals greedy search.
pub fn beam_search(
    model: &FusionModel,
    memory: &Memory,
    opts: &GenerateOptions,
) -> Result<Vec<Vec<Generated>>> {
    opts.validate()?;
    let k = opts.beams;
    let batch = memory.vision.dim(0)?;
    let rules = TokenRules::new(model, opts);
    let mut stepper = Stepper::new(model, memory, opts.cache_cross_kv)?;
    // Every beam starts as the empty sequence; only the first of each input is
    // live, or step 0 would pick the same token K times.
    let mut beams: Vec<Beam> = (0..batch * k)
        .map(|row| {
            if row % k == 0 {
                Beam {
                    tokens: Vec::new(),
                    score: 0.0,
                    logprob: 0.0,
                }
            } else {
                Beam::dead()
            }
        })
        .collect();
    let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); batch];
    let mut done = vec![false; batch];
    let mut next = vec![model.cfg.bos_id; batch * k];
    for _ in 0..opts.max_steps(model) {
        let logits = stepper.step(&next)?;
        let mut parents: Vec<u32> = (0..(batch * k) as u32).collect();
        for b in 0..batch {
            if done[b] {
                continue;
            }
            let rows = b * k..(b + 1) * k;
            let selected = select(
                &beams[rows.clone()],
                &logits[rows.clone()],
                &rules,
                opts,
                &mut finished[b],
            );
            for (row, (parent, beam)) in rows.zip(selected) {
                parents[row] = (b * k + parent) as u32;
                next[row] = beam.tokens.last().copied().unwrap_or(rules.eos);
                beams[row] = beam;
            }
            done[b] = finished[b].len() >= k;
        }
        if done.iter().all(|&d| d) {
            break;
        }
        stepper.reorder(&parents)?;
    }
    for b in (0..batch).filter(|&b| !done[b]) {
        for beam in beams[b * k..(b + 1) * k]
            .iter()
            .filter(|beam| beam.is_live())
        {
            finished[b].push(Hypothesis::cut_off(beam, opts.length_penalty));
        }
    }
    Ok(finished
        .into_iter()
        .map(|hyps| best_hypotheses(hyps, opts.num_return))
        .collect())
}

/// Extends the K beams of one input by one token. EOS candidates ranked in the
/// top K become finished hypotheses; the best K others become the new beams,
/// returned with the index of the beam they extend (padded with dead beams).
fn select(
    beams: &[Beam],
    logits: &[Vec<f32>],
    rules: &TokenRules,
    opts: &GenerateOptions,
    finished: &mut Vec<Hypothesis>,
) -> Vec<(usize, Beam)> {
    let k = beams.len();
    let mut candidates = candidates(beams, logits, rules);
    // Each beam yields at most one EOS, so the best 2K hold at least K others.
    if candidates.len() > 2 * k {
        candidates.select_nth_unstable_by(2 * k - 1, best_first);
        candidates.truncate(2 * k);
    }
    candidates.sort_unstable_by(best_first);
    let mut selected = Vec::with_capacity(k);
    for (rank, c) in candidates.into_iter().enumerate() {
        if selected.len() == k {
            break;
        }
        let parent = &beams[c.beam];
        if c.token == rules.eos {
            if rank < k {
                finished.push(Hypothesis::ended(
                    parent.tokens.clone(),
                    c.logprob,
                    c.score,
                    opts.length_penalty,
                ));
            }
            continue;
        }
        let mut tokens = parent.tokens.clone();
        tokens.push(c.token);
        selected.push((
            c.beam,
            Beam {
                tokens,
                score: c.score,
                logprob: c.logprob,
            },
        ));
    }
    selected.resize_with(k, || (0, Beam::dead()));
    selected
}

/// Every allowed one-token extension of the live beams.
fn candidates(beams: &[Beam], logits: &[Vec<f32>], rules: &TokenRules) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (i, beam) in beams.iter().enumerate().filter(|(_, b)| b.is_live()) {
        let scores = rules.scores(&logits[i], &beam.tokens);
        for (token, &s) in scores
            .search
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_finite())
        {
            out.push(Candidate {
                score: beam.score + s,
                logprob: beam.logprob + scores.model[token],
                beam: i,
                token: token as u32,
            });
        }
    }
    out
}

fn best_hypotheses(mut hyps: Vec<Hypothesis>, n: usize) -> Vec<Generated> {
    // Stable, so equal scores keep the order they finished in.
    hyps.sort_by(|a, b| {
        b.complete
            .cmp(&a.complete)
            .then(b.score.total_cmp(&a.score))
    });
    hyps.into_iter().take(n).map(|h| h.generated).collect()
}
