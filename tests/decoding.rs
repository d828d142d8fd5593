//! Properties of the decoding strategies (greedy, beam search, sampling) on
//! tiny randomly initialised models of every fusion kind, plus the decoding
//! flags of `caption` and `ask` as a user runs them.

mod common;

use common::cli::fusecap;
use std::path::Path;
use std::process::Output;

use candle_core::{Device, Tensor, D};
use fusecap::generate::{
    beam_search, generate, greedy, GenerateOptions, Generated, SamplingOptions, Workers,
};
use fusecap::model::dir::init_model;
use fusecap::model::{pad_tokens, Config, Fusion, FusionModel, Memory};
use rand::{Rng, SeedableRng};

const VOCAB: usize = 40;

fn tiny(fusion: Fusion, vocab: usize, seed: u64) -> FusionModel {
    init_model(&Config::tiny(fusion, vocab), seed, &Device::Cpu)
        .expect("init")
        .0
}

/// A batch of random images with questions of different lengths (so some
/// are padded): images, question ids and their validity mask.
fn inputs(model: &FusionModel, batch: usize, seed: u64) -> [Tensor; 3] {
    let cfg = &model.cfg;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = batch * 3 * cfg.image_size * cfg.image_size;
    let pixels: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let images = Tensor::from_vec(
        pixels,
        (batch, 3, cfg.image_size, cfg.image_size),
        &Device::Cpu,
    )
    .expect("images");
    let questions: Vec<Vec<u32>> = (0..batch)
        .map(|i| {
            (0..1 + (i * 2) % 5)
                .map(|_| rng.random_range(4..cfg.vocab_size as u32))
                .collect()
        })
        .collect();
    let (ids, valid) =
        pad_tokens(&questions, cfg.pad_id, cfg.max_text_len, &Device::Cpu).expect("pad");
    [images, ids, valid]
}

fn memory(model: &FusionModel, batch: usize, seed: u64) -> Memory {
    let [images, ids, valid] = inputs(model, batch, seed);
    model.encode(&images, &ids, &valid).expect("encode")
}

/// Input `i` of a batch, alone.
fn row(memory: &Memory, i: usize) -> Memory {
    let take = |t: &Tensor| t.narrow(0, i, 1).expect("narrow");
    Memory {
        vision: take(&memory.vision),
        text: take(&memory.text),
        text_valid: take(&memory.text_valid),
    }
}

/// The model's log-probability of `tokens` (then EOS if `ended`), by teacher forcing.
fn teacher_forced_logprob(
    model: &FusionModel,
    memory: &Memory,
    tokens: &[u32],
    ended: bool,
) -> f32 {
    step_logprobs(model, memory, tokens, ended)
        .iter()
        .map(|(lp, target)| lp[*target as usize])
        .sum()
}

/// For each generated position: the model's log-probabilities and the token taken.
fn step_logprobs(
    model: &FusionModel,
    memory: &Memory,
    tokens: &[u32],
    ended: bool,
) -> Vec<(Vec<f32>, u32)> {
    let mut targets = tokens.to_vec();
    if ended {
        targets.push(model.cfg.eos_id);
    }
    let mut input = vec![model.cfg.bos_id];
    input.extend(&targets[..targets.len() - 1]);
    let input = Tensor::from_vec(input, (1, targets.len()), &Device::Cpu).expect("input");
    let cross = model.cross_kv(memory).expect("cross kv");
    let logits = model
        .decoder
        .forward(&input, &cross, None, None)
        .expect("forward");
    let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .expect("log_softmax")
        .get(0)
        .expect("row");
    logprobs
        .to_vec2::<f32>()
        .expect("vec")
        .into_iter()
        .zip(targets)
        .collect()
}

fn options(max: usize, min: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: max,
        min_new_tokens: min,
        ..Default::default()
    }
}

fn sampling(
    temperature: f32,
    top_k: Option<usize>,
    top_p: f32,
    seed: u64,
) -> Option<SamplingOptions> {
    Some(SamplingOptions {
        temperature,
        top_k,
        top_p,
        seed,
    })
}

fn best(per_input: Vec<Vec<Generated>>) -> Vec<Generated> {
    per_input
        .into_iter()
        .map(|mut seqs| seqs.remove(0))
        .collect()
}

fn assert_same(a: &[Generated], b: &[Generated], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: number of outputs");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.tokens, y.tokens, "{what}: input {i} tokens differ");
        assert!(
            (x.logprob - y.logprob).abs() < 1e-4,
            "{what}: input {i} log-prob {} vs {}",
            x.logprob,
            y.logprob
        );
    }
}

fn repeats_a_bigram(tokens: &[u32]) -> bool {
    let mut seen = std::collections::HashSet::new();
    tokens.windows(2).any(|w| !seen.insert((w[0], w[1])))
}

#[test]
fn one_beam_equals_greedy_token_for_token() {
    for fusion in Fusion::ALL {
        for seed in 0..3 {
            let model = tiny(fusion, VOCAB, seed);
            let memory = memory(&model, 4, seed + 100);
            let rules = [
                options(12, 0),
                options(12, 12),
                GenerateOptions {
                    no_repeat_ngram: 2,
                    ..options(16, 16)
                },
            ];
            for opts in rules {
                let want = greedy(&model, &memory, &opts).expect("greedy");
                let one_beam = GenerateOptions {
                    beams: 1,
                    ..opts.clone()
                };
                let got = best(beam_search(&model, &memory, &one_beam).expect("beam search"));
                assert_same(&got, &want, &format!("{fusion} seed {seed} {opts:?}"));
                let dispatched =
                    best(generate(&model, &memory, &one_beam, None).expect("generate"));
                assert_same(
                    &dispatched,
                    &want,
                    &format!("{fusion} seed {seed}: generate with --beams 1"),
                );
            }
        }
    }
}

/// Not a theorem: a beam can drop the prefix that greedy keeps, and on these
/// untrained, nearly uniform distributions that happens for some inputs: 2% of
/// them with the first model (e.g. concat, seed 2, input 0: 2–4 beams end at
/// -34.30, greedy at -34.25, 6 beams at -34.21), 8 of 72 once the text encoder
/// attended to the image. So: not worse on at least 80%, better on average, and
/// every reported log-probability is the model's. The exact oracle is
/// `wide_beam_search_finds_the_exact_best_sequences`.
#[test]
fn beam_search_scores_at_least_greedy_on_most_inputs_and_better_on_average() {
    let (mut inputs, mut not_worse, mut gain) = (0, 0, 0.0f32);
    for fusion in Fusion::ALL {
        for seed in 0..4 {
            let model = tiny(fusion, VOCAB, seed);
            let memory = memory(&model, 3, seed + 200);
            // Fixed length (every candidate equally long), and free length ranked by log-probability alone.
            for (opts, penalty) in [(options(10, 10), 1.0), (options(10, 0), 0.0)] {
                let greedy_out = greedy(&model, &memory, &opts).expect("greedy");
                let beam_opts = GenerateOptions {
                    beams: 3,
                    length_penalty: penalty,
                    ..opts
                };
                let beam_out = best(beam_search(&model, &memory, &beam_opts).expect("beam search"));
                for (i, (b, g)) in beam_out.iter().zip(&greedy_out).enumerate() {
                    inputs += 1;
                    not_worse += usize::from(b.logprob >= g.logprob - 1e-4);
                    gain += b.logprob - g.logprob;
                    let rescored = teacher_forced_logprob(
                        &model,
                        &row(&memory, i),
                        &b.tokens,
                        b.tokens.len() < 10,
                    );
                    assert!((b.logprob - rescored).abs() < 1e-3, "{fusion} seed {seed} input {i}: reported {} but the sequence scores {rescored}", b.logprob);
                }
            }
        }
    }
    assert!(
        not_worse * 10 >= inputs * 8,
        "beam search fell below greedy on {} of {inputs} inputs",
        inputs - not_worse
    );
    assert!(
        gain > 0.0,
        "beam search is not better than greedy on average (total gain {gain})"
    );
}

/// With as many beams as sequences, beam search is exhaustive: it must return
/// every sequence, ranked as a brute-force enumeration scored by teacher
/// forcing ranks them. A beam that continues the wrong cache row fails this.
#[test]
fn wide_beam_search_finds_the_exact_ranking_with_cut_off_outputs_last() {
    let (vocab, max) = (6usize, 3usize);
    for fusion in Fusion::ALL {
        let model = tiny(fusion, vocab, 7);
        let memory = memory(&model, 2, 300);
        let eos = model.cfg.eos_id;
        let words: Vec<u32> = (0..vocab as u32).filter(|&t| t != eos).collect();
        // Every sequence of ≤ max tokens: those ended by EOS, and those cut at max.
        let mut sequences: Vec<(Vec<u32>, bool)> = Vec::new();
        let mut prefixes: Vec<Vec<u32>> = vec![vec![]];
        for len in 0..=max {
            sequences.extend(prefixes.iter().map(|p| (p.clone(), len < max)));
            prefixes = prefixes
                .iter()
                .flat_map(|p| words.iter().map(move |&w| [p.clone(), vec![w]].concat()))
                .collect();
        }
        let n = sequences.len();
        let opts = GenerateOptions {
            beams: n,
            num_return: n,
            length_penalty: 0.0,
            ..options(max, 0)
        };
        let found = beam_search(&model, &memory, &opts).expect("beam search");
        for (i, hyps) in found.iter().enumerate() {
            let alone = row(&memory, i);
            // Those that ended first, then those cut off; each by log-prob.
            let mut want: Vec<(bool, f32)> = sequences
                .iter()
                .map(|(s, ended)| (*ended, teacher_forced_logprob(&model, &alone, s, *ended)))
                .collect();
            want.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
            let want: Vec<f32> = want.into_iter().map(|(_, lp)| lp).collect();
            assert_eq!(
                hyps.len(),
                n,
                "{fusion} input {i}: expected all {n} sequences"
            );
            for (rank, (h, w)) in hyps.iter().zip(&want).enumerate() {
                let rescored =
                    teacher_forced_logprob(&model, &alone, &h.tokens, h.tokens.len() < max);
                assert!((h.logprob - rescored).abs() < 1e-4, "{fusion} input {i} rank {rank} {:?}: reported {} but the sequence scores {rescored}", h.tokens, h.logprob);
                assert!(
                    (h.logprob - w).abs() < 1e-4,
                    "{fusion} input {i} rank {rank}: beam {} vs exhaustive {w}",
                    h.logprob
                );
            }
        }
    }
}

#[test]
fn batched_beam_search_equals_one_input_at_a_time() {
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 11);
        let memory = memory(&model, 4, 400);
        for opts in [
            GenerateOptions {
                beams: 3,
                num_return: 3,
                ..options(10, 0)
            },
            GenerateOptions {
                beams: 4,
                num_return: 2,
                no_repeat_ngram: 2,
                length_penalty: 0.5,
                ..options(10, 3)
            },
        ] {
            let batched = beam_search(&model, &memory, &opts).expect("batched");
            for (i, want) in batched.iter().enumerate() {
                let alone = beam_search(&model, &row(&memory, i), &opts).expect("alone");
                assert_same(&alone[0], want, &format!("{fusion} input {i} {opts:?}"));
            }
        }
    }
}

#[test]
fn a_batch_split_across_workers_decodes_as_the_whole_batch() {
    let workers = Workers::new(3).expect("workers");
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 12);
        let all = inputs(&model, 7, 500);
        for opts in [
            options(12, 0),
            GenerateOptions {
                beams: 3,
                num_return: 2,
                ..options(12, 2)
            },
        ] {
            let [images, ids, valid] = &all;
            let memory = model.encode(images, ids, valid).expect("encode");
            let whole = generate(&model, &memory, &opts, None).expect("whole batch");
            let sharded = workers
                .map_shards(7, |rows| {
                    let take = |t: &Tensor| t.narrow(0, rows.start, rows.len());
                    let memory = model.encode(&take(images)?, &take(ids)?, &take(valid)?)?;
                    generate(&model, &memory, &opts, None)
                })
                .expect("sharded");
            assert_eq!(sharded.len(), whole.len(), "{fusion}: one result per input");
            for (i, (a, b)) in whole.iter().zip(&sharded).enumerate() {
                assert_same(a, b, &format!("{fusion} input {i} {opts:?}"));
            }
        }
    }
}

#[test]
fn beam_search_with_cached_cross_kv_equals_recomputing_it() {
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 12);
        let memory = memory(&model, 3, 500);
        let cached = GenerateOptions {
            beams: 3,
            num_return: 3,
            ..options(8, 0)
        };
        let recomputed = GenerateOptions {
            cache_cross_kv: false,
            ..cached.clone()
        };
        let a = beam_search(&model, &memory, &cached).expect("cached");
        let b = beam_search(&model, &memory, &recomputed).expect("recomputed");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_same(x, y, &format!("{fusion} input {i}"));
        }
    }
}

#[test]
fn beams_are_distinct_and_ranked() {
    let model = tiny(Fusion::Separate, VOCAB, 13);
    let memory = memory(&model, 2, 600);
    let opts = GenerateOptions {
        beams: 4,
        num_return: 4,
        length_penalty: 0.0,
        ..options(8, 0)
    };
    for (i, hyps) in beam_search(&model, &memory, &opts)
        .expect("beam search")
        .iter()
        .enumerate()
    {
        assert_eq!(hyps.len(), 4, "input {i}");
        let distinct: std::collections::HashSet<_> =
            hyps.iter().map(|h| h.tokens.clone()).collect();
        assert_eq!(
            distinct.len(),
            4,
            "input {i}: returned beams repeat a sequence"
        );
        assert!(
            hyps.windows(2).all(|w| w[0].logprob >= w[1].logprob),
            "input {i}: not ranked by log-probability"
        );
    }
}

#[test]
fn sampling_with_a_fixed_seed_is_reproducible() {
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 21);
        let memory = memory(&model, 3, 700);
        let opts = |seed| GenerateOptions {
            sampling: sampling(1.0, None, 1.0, seed),
            num_return: 4,
            ..options(10, 0)
        };
        let first = generate(&model, &memory, &opts(5), None).expect("sample");
        let again = generate(&model, &memory, &opts(5), None).expect("sample");
        let other = generate(&model, &memory, &opts(6), None).expect("sample");
        assert_eq!(
            first, again,
            "{fusion}: the same seed gave different samples"
        );
        assert_ne!(
            first, other,
            "{fusion}: seeds 5 and 6 gave the same samples"
        );
        for samples in &first {
            assert_eq!(samples.len(), 4, "{fusion}: asked for 4 samples");
            assert!(
                samples.windows(2).all(|w| w[0].logprob >= w[1].logprob),
                "{fusion}: samples not ranked"
            );
            let distinct: std::collections::HashSet<_> =
                samples.iter().map(|s| s.tokens.clone()).collect();
            assert!(
                distinct.len() > 1,
                "{fusion}: 4 samples at temperature 1 were identical"
            );
        }
    }
}

#[test]
fn zero_temperature_top_k_one_and_tiny_top_p_equal_greedy() {
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 31);
        let memory = memory(&model, 3, 800);
        let want = greedy(&model, &memory, &options(12, 2)).expect("greedy");
        for (name, s) in [
            ("temperature 0", sampling(0.0, None, 1.0, 1)),
            ("top-k 1", sampling(1.0, Some(1), 1.0, 2)),
            ("top-k 1 at temperature 2", sampling(2.0, Some(1), 1.0, 3)),
            ("top-p 1e-6", sampling(1.0, None, 1e-6, 4)),
        ] {
            let got = best(
                generate(
                    &model,
                    &memory,
                    &GenerateOptions {
                        sampling: s,
                        ..options(12, 2)
                    },
                    None,
                )
                .expect("sample"),
            );
            assert_same(&got, &want, &format!("{fusion} {name}"));
        }
    }
}

#[test]
fn top_k_samples_only_among_the_k_most_likely_and_reports_the_model_logprob() {
    let k = 3;
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 41);
        let memory = memory(&model, 2, 900);
        let opts = GenerateOptions {
            sampling: sampling(1.5, Some(k), 1.0, 9),
            num_return: 3,
            ..options(10, 0)
        };
        for (i, samples) in generate(&model, &memory, &opts, None)
            .expect("sample")
            .iter()
            .enumerate()
        {
            let alone = row(&memory, i);
            for s in samples {
                let ended = s.tokens.len() < 10;
                let steps = step_logprobs(&model, &alone, &s.tokens, ended);
                for (pos, (lp, token)) in steps.iter().enumerate() {
                    let above = lp.iter().filter(|&&p| p > lp[*token as usize]).count();
                    assert!(above < k, "{fusion} input {i} position {pos}: token {token} has {above} more likely tokens");
                }
                let rescored: f32 = steps.iter().map(|(lp, t)| lp[*t as usize]).sum();
                assert!(
                    (s.logprob - rescored).abs() < 1e-4,
                    "{fusion}: reported {} vs teacher-forced {rescored}",
                    s.logprob
                );
            }
        }
    }
}

#[test]
fn no_repeat_ngram_2_never_repeats_a_bigram() {
    let mut repeats_without_rule = 0;
    for fusion in Fusion::ALL {
        for seed in 0..2 {
            let model = tiny(fusion, VOCAB, 50 + seed);
            let memory = memory(&model, 3, 1000 + seed);
            let base = options(30, 30);
            repeats_without_rule += greedy(&model, &memory, &base)
                .expect("greedy")
                .iter()
                .filter(|g| repeats_a_bigram(&g.tokens))
                .count();
            let strategies = [
                GenerateOptions {
                    no_repeat_ngram: 2,
                    ..base.clone()
                },
                GenerateOptions {
                    no_repeat_ngram: 2,
                    beams: 3,
                    num_return: 3,
                    ..base.clone()
                },
                GenerateOptions {
                    no_repeat_ngram: 2,
                    sampling: sampling(0.7, None, 1.0, seed),
                    num_return: 2,
                    ..base.clone()
                },
            ];
            for opts in strategies {
                for seqs in generate(&model, &memory, &opts, None).expect("generate") {
                    for s in seqs {
                        assert_eq!(
                            s.tokens.len(),
                            30,
                            "{fusion}: min-new-tokens 30 not honoured"
                        );
                        assert!(
                            !repeats_a_bigram(&s.tokens),
                            "{fusion} seed {seed} {opts:?}: {:?} repeats a bigram",
                            s.tokens
                        );
                    }
                }
            }
        }
    }
    assert!(
        repeats_without_rule > 0,
        "no output repeated a bigram even without the rule; the test proves nothing"
    );
}

#[test]
fn min_new_tokens_and_max_new_tokens_bound_every_strategy() {
    let model = tiny(Fusion::Concat, VOCAB, 61);
    let memory = memory(&model, 3, 1100);
    for opts in [
        GenerateOptions {
            beams: 3,
            num_return: 3,
            ..options(7, 4)
        },
        GenerateOptions {
            sampling: sampling(1.0, None, 0.9, 3),
            num_return: 3,
            ..options(7, 4)
        },
        options(7, 4),
    ] {
        for s in generate(&model, &memory, &opts, None)
            .expect("generate")
            .into_iter()
            .flatten()
        {
            assert!(
                (4..=7).contains(&s.tokens.len()),
                "{opts:?}: {} tokens",
                s.tokens.len()
            );
        }
    }
}

#[test]
fn repetition_penalty_reduces_repeated_tokens() {
    let mut plain = 0;
    let mut penalised = 0;
    let distinct_shortfall = |gs: &[Generated]| {
        gs.iter()
            .map(|g| {
                g.tokens.len()
                    - g.tokens
                        .iter()
                        .collect::<std::collections::HashSet<_>>()
                        .len()
            })
            .sum::<usize>()
    };
    for fusion in Fusion::ALL {
        let model = tiny(fusion, VOCAB, 71);
        let memory = memory(&model, 3, 1200);
        plain += distinct_shortfall(&greedy(&model, &memory, &options(20, 20)).expect("greedy"));
        let opts = GenerateOptions {
            repetition_penalty: 5.0,
            ..options(20, 20)
        };
        penalised += distinct_shortfall(&greedy(&model, &memory, &opts).expect("greedy"));
    }
    assert!(
        penalised < plain,
        "repeated tokens: {penalised} with the penalty, {plain} without"
    );
}

#[test]
fn streamed_tokens_are_the_returned_tokens() {
    let model = tiny(Fusion::Gated, VOCAB, 81);
    let memory = memory(&model, 2, 1300);
    let opts = GenerateOptions {
        sampling: sampling(1.0, None, 1.0, 4),
        num_return: 2,
        ..options(10, 0)
    };
    let mut streamed = vec![Vec::new(); 4];
    let mut on_token = |row: usize, token: u32| -> anyhow::Result<()> {
        streamed[row].push(token);
        Ok(())
    };
    let out = generate(&model, &memory, &opts, Some(&mut on_token)).expect("generate");
    for (b, samples) in out.iter().enumerate() {
        let mut got: Vec<Vec<u32>> = streamed[b * 2..b * 2 + 2].to_vec();
        let mut want: Vec<Vec<u32>> = samples.iter().map(|s| s.tokens.clone()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "input {b}");
    }
    let beams = GenerateOptions {
        beams: 2,
        ..options(5, 0)
    };
    let mut ignore = |_: usize, _: u32| -> anyhow::Result<()> { Ok(()) };
    assert!(
        generate(&model, &memory, &beams, Some(&mut ignore)).is_err(),
        "beam search cannot stream"
    );
}

#[test]
fn invalid_options_are_rejected_by_name() {
    let bad = [
        (
            GenerateOptions {
                beams: 0,
                ..Default::default()
            },
            "beams",
        ),
        (
            GenerateOptions {
                num_return: 3,
                beams: 2,
                ..Default::default()
            },
            "num_return 3",
        ),
        (
            GenerateOptions {
                min_new_tokens: 9,
                max_new_tokens: 4,
                ..Default::default()
            },
            "min_new_tokens 9",
        ),
        (
            GenerateOptions {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            "repetition_penalty",
        ),
        (
            GenerateOptions {
                beams: 2,
                sampling: sampling(1.0, None, 1.0, 0),
                ..Default::default()
            },
            "beams 2",
        ),
        (
            GenerateOptions {
                sampling: sampling(-1.0, None, 1.0, 0),
                ..Default::default()
            },
            "temperature",
        ),
        (
            GenerateOptions {
                sampling: sampling(1.0, Some(0), 1.0, 0),
                ..Default::default()
            },
            "top_k 0",
        ),
        (
            GenerateOptions {
                sampling: sampling(1.0, None, 0.0, 0),
                ..Default::default()
            },
            "top_p 0",
        ),
    ];
    for (opts, field) in bad {
        let err = opts.validate().expect_err(field);
        assert!(
            err.to_string().starts_with(field),
            "error for {field} does not name it: {err}"
        );
        assert!(!err.to_string().contains("--"), "speaks in flags: {err}");
    }
}

// ---- the command line ----

/// A temporary folder with a tiny random model in `model/` and two images.
fn cli_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for name in ["red-circle.png", "scene-1.png"] {
        std::fs::copy(samples.join(name), dir.path().join(name)).expect("copy sample");
    }
    let out = fusecap(
        dir.path(),
        &[
            "init", "--fusion", "concat", "--size", "tiny", "--out", "model", "--seed", "3",
        ],
    );
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn jsonl(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Both fixture images captioned by the fixture's model, as JSON lines.
const CAPTION_BOTH: [&str; 8] = [
    "caption",
    "red-circle.png",
    "scene-1.png",
    "--model",
    "model",
    "--format",
    "jsonl",
    "-q",
];

#[test]
fn cli_num_return_gives_ranked_records() {
    let dir = cli_fixture();
    let args = [&CAPTION_BOTH[..], &["--max-new-tokens", "6"]].concat();
    let beams = fusecap(
        dir.path(),
        &[
            &args[..],
            &["--beams", "3", "--num-return", "3", "--length-penalty", "0"],
        ]
        .concat(),
    );
    assert!(
        beams.status.success(),
        "{}",
        String::from_utf8_lossy(&beams.stderr)
    );
    let records = jsonl(&beams);
    assert_eq!(records.len(), 6, "2 images × 3 beams");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["rank"], serde_json::json!(i % 3 + 1), "record {i}");
        for field in [
            "image", "task", "output", "logprob", "fusion", "model", "ms",
        ] {
            assert!(r.get(field).is_some(), "record {i} lacks {field}: {r}");
        }
    }
    for image in records.chunks(3) {
        let lps: Vec<f64> = image
            .iter()
            .map(|r| r["logprob"].as_f64().expect("logprob"))
            .collect();
        assert!(
            lps.windows(2).all(|w| w[0] >= w[1]),
            "ranks not ordered by log-probability: {lps:?}"
        );
    }
    let sampled = fusecap(
        dir.path(),
        &[
            &args[..],
            &["--temperature", "0.9", "--seed", "4", "--num-return", "2"],
        ]
        .concat(),
    );
    assert_eq!(jsonl(&sampled).len(), 4, "2 images × 2 samples");
    let again = fusecap(
        dir.path(),
        &[
            &args[..],
            &["--temperature", "0.9", "--seed", "4", "--num-return", "2"],
        ]
        .concat(),
    );
    let outputs = |o: &Output| {
        jsonl(o)
            .iter()
            .map(|r| r["output"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outputs(&sampled),
        outputs(&again),
        "--seed 4 twice gave different samples"
    );
    let single = fusecap(dir.path(), &args);
    assert!(
        jsonl(&single).iter().all(|r| r.get("rank").is_none()),
        "one output per image needs no rank"
    );
}

#[test]
fn cli_captions_are_the_same_at_any_thread_count() {
    let dir = cli_fixture();
    let captions = |threads: &str| {
        let out = fusecap(
            dir.path(),
            &[&CAPTION_BOTH[..], &["--threads", threads]].concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        jsonl(&out)
    };
    let (one, three) = (captions("1"), captions("3"));
    assert_eq!(one.len(), 2);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a["output"], b["output"], "{a} vs {b}");
        let lp = |r: &serde_json::Value| r["logprob"].as_f64().unwrap_or(f64::NAN);
        assert!((lp(a) - lp(b)).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn cli_stream_prints_the_same_caption_and_refuses_several_images() {
    let dir = cli_fixture();
    let plain = fusecap(
        dir.path(),
        &[
            "caption",
            "red-circle.png",
            "--model",
            "model",
            "--max-new-tokens",
            "8",
        ],
    );
    let streamed = fusecap(
        dir.path(),
        &[
            "caption",
            "red-circle.png",
            "--model",
            "model",
            "--max-new-tokens",
            "8",
            "--stream",
        ],
    );
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    let two = fusecap(
        dir.path(),
        &[
            "caption",
            "red-circle.png",
            "scene-1.png",
            "--model",
            "model",
            "--stream",
        ],
    );
    assert_eq!(two.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&two.stderr).contains("exactly one image (got 2)"),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    let jsonl = fusecap(
        dir.path(),
        &[
            "ask",
            "red-circle.png",
            "what color?",
            "--model",
            "model",
            "--stream",
            "--format",
            "jsonl",
        ],
    );
    assert_eq!(jsonl.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&jsonl.stderr).contains("--stream"),
        "{}",
        String::from_utf8_lossy(&jsonl.stderr)
    );
}

#[test]
fn cli_rejects_conflicting_decoding_flags() {
    let dir = cli_fixture();
    for (extra, expect) in [
        (&["--seed", "3"][..], "--seed only affects sampling"),
        (&["--beams", "2", "--num-return", "3"][..], "--num-return 3"),
        (&["--beams", "3", "--temperature", "0.5"][..], "--beams 3"),
        (&["--top-p", "1.5"][..], "--top-p 1.5"),
    ] {
        let out = fusecap(
            dir.path(),
            &[
                &["ask", "red-circle.png", "what color?", "--model", "model"][..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expect),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
