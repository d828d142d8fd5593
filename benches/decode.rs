//! Decoding speed of a model of the shipped size (random weights), as a table.
//!
//! `FUSECAP_BENCH_THREADS=1 cargo bench --bench decode` measures what
//! `--threads 1` does: that many inference workers, candle on one thread each
//! (RAYON_NUM_THREADS, if set, overrides the latter). Cases are interleaved
//! and each is the median of FUSECAP_BENCH_REPS runs (default 15), so the
//! ratios compare numbers measured under the same background load.
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use fusecap::generate::{every_core, generate, GenerateOptions, Workers};
use fusecap::model::dir::{inference_model, init_model, save_model_dir, ModelDir};
use fusecap::model::{Config, Fusion, FusionModel};
use fusecap::tokenizer::TextTokenizer;
use rand::{Rng, SeedableRng};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VOCAB: usize = 80;
const TOKENS: usize = 20;
/// Images captioned one at a time per batch-1 measurement.
const SINGLES: usize = 8;
const BATCH: usize = 32;

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Greedy,
    GreedyNoCrossCache,
    Beam3,
}

impl Strategy {
    const ALL: [Strategy; 3] = [
        Strategy::Greedy,
        Strategy::GreedyNoCrossCache,
        Strategy::Beam3,
    ];

    /// Exactly TOKENS tokens per caption, whatever the random model prefers.
    fn options(self) -> GenerateOptions {
        let base = GenerateOptions {
            max_new_tokens: TOKENS,
            min_new_tokens: TOKENS,
            ..Default::default()
        };
        match self {
            Strategy::Greedy => base,
            Strategy::GreedyNoCrossCache => GenerateOptions {
                cache_cross_kv: false,
                ..base
            },
            Strategy::Beam3 => GenerateOptions { beams: 3, ..base },
        }
    }
}

struct Inputs {
    images: Tensor,
    text_ids: Tensor,
    text_valid: Tensor,
}

impl Inputs {
    fn random(cfg: &Config, batch: usize) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = batch * 3 * cfg.image_size * cfg.image_size;
        let pixels: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let images = Tensor::from_vec(
            pixels,
            (batch, 3, cfg.image_size, cfg.image_size),
            &Device::Cpu,
        )?;
        // The caption prompt is one token.
        let text_ids = Tensor::full(4u32, (batch, 1), &Device::Cpu)?;
        let text_valid = Tensor::ones((batch, 1), DType::F32, &Device::Cpu)?;
        Ok(Inputs {
            images,
            text_ids,
            text_valid,
        })
    }

    fn slice(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Inputs {
            images: self.images.narrow(0, start, len)?,
            text_ids: self.text_ids.narrow(0, start, len)?,
            text_valid: self.text_valid.narrow(0, start, len)?,
        })
    }
}

/// Milliseconds per image to encode `inputs` and, unless `strategy` is None,
/// caption them, the batch split across `workers` as `answer_queries` does.
fn ms_per_image(
    workers: &Workers,
    model: &FusionModel,
    inputs: &Inputs,
    strategy: Option<Strategy>,
) -> Result<f64> {
    let batch = inputs.images.dim(0)?;
    let start = Instant::now();
    workers.map_shards(batch, |rows| {
        encode_and_caption(model, &inputs.slice(rows.start, rows.len())?, strategy)?;
        Ok(Vec::<()>::new())
    })?;
    Ok(start.elapsed().as_secs_f64() * 1000.0 / batch as f64)
}

fn encode_and_caption(
    model: &FusionModel,
    inputs: &Inputs,
    strategy: Option<Strategy>,
) -> anyhow::Result<()> {
    let memory = model.encode(&inputs.images, &inputs.text_ids, &inputs.text_valid)?;
    match strategy {
        Some(s) => {
            let out = generate(model, &memory, &s.options(), None)?;
            assert!(
                out.iter().all(|seqs| seqs[0].tokens.len() == TOKENS),
                "every caption must be {TOKENS} tokens"
            );
        }
        None => {
            memory.vision.to_vec3::<f32>()?;
        }
    }
    Ok(())
}

/// One timing of batch 1 (SINGLES images, one at a time) or batch 32.
fn measure(
    workers: &Workers,
    model: &FusionModel,
    inputs: &Inputs,
    batch: usize,
    strategy: Option<Strategy>,
) -> Result<f64> {
    if batch == 1 {
        let mut total = 0.0;
        for i in 0..SINGLES {
            total += ms_per_image(workers, model, &inputs.slice(i, 1)?, strategy)?;
        }
        Ok(total / SINGLES as f64)
    } else {
        ms_per_image(workers, model, inputs, strategy)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Medians per (fusion, batch, strategy), strategy None = encoders only.
type Timings = Vec<(Fusion, usize, Option<Strategy>, f64)>;

fn decoding_timings(workers: &Workers, reps: usize) -> Result<Timings> {
    let models: Vec<(Fusion, FusionModel)> = Fusion::ALL
        .iter()
        .map(|&f| {
            let cfg = Config::small(f, VOCAB);
            let (_, varmap) = init_model(&cfg, 0, &Device::Cpu)?;
            Ok((f, inference_model(&cfg, &[], &varmap, &Device::Cpu)?))
        })
        .collect::<Result<_>>()?;
    let inputs = Inputs::random(&models[0].1.cfg, BATCH)?;
    let strategies: Vec<Option<Strategy>> = std::iter::once(None)
        .chain(Strategy::ALL.map(Some))
        .collect();
    let cases: Vec<(usize, usize, Option<Strategy>)> = (0..models.len())
        .flat_map(|m| {
            [1, BATCH].into_iter().flat_map({
                let s = strategies.clone();
                move |b| s.clone().into_iter().map(move |s| (m, b, s))
            })
        })
        .collect();
    // One untimed pass warms the allocator and caches.
    for &(m, b, s) in &cases {
        measure(workers, &models[m].1, &inputs, b, s)?;
    }
    let mut samples = vec![Vec::new(); cases.len()];
    for rep in 0..reps {
        eprintln!("rep {}/{reps}", rep + 1);
        for (i, &(m, b, s)) in cases.iter().enumerate() {
            samples[i].push(measure(workers, &models[m].1, &inputs, b, s)?);
        }
    }
    Ok(cases
        .into_iter()
        .zip(samples)
        .map(|((m, b, s), v)| (models[m].0, b, s, median(v)))
        .collect())
}

/// Median milliseconds of `ModelDir::load` on a saved model directory.
fn load_ms(reps: usize) -> Result<(f64, usize)> {
    let dir = tempfile::tempdir()?;
    let words: Vec<String> = (0..VOCAB - 4).map(|i| format!("w{i}")).collect();
    let tokenizer = TextTokenizer::train(std::iter::once(words.join(" ").as_str()), 1)?;
    let cfg = Config::small(Fusion::Separate, tokenizer.vocab_size());
    let (_, varmap) = init_model(&cfg, 0, &Device::Cpu)?;
    save_model_dir(dir.path(), &cfg, &varmap, &tokenizer, DType::F32)?;
    let bytes =
        std::fs::metadata(dir.path().join(fusecap::model::dir::WEIGHTS_FILE))?.len() as usize;
    let mut times = Vec::new();
    for _ in 0..reps.max(5) {
        let start = Instant::now();
        ModelDir::load(dir.path(), &Device::Cpu)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(times), bytes))
}

fn lookup(t: &Timings, fusion: Fusion, batch: usize, strategy: Option<Strategy>) -> f64 {
    t.iter()
        .find(|r| r.0 == fusion && r.1 == batch && r.2 == strategy)
        .map_or(f64::NAN, |r| r.3)
}

fn print_table(t: &Timings) {
    println!("ms per image, encode + {TOKENS}-token caption (median); ratios from the same run");
    println!();
    println!("| fusion | batch | encode only | greedy | greedy, cross K/V recomputed | recomputed / cached | greedy decode-only ratio | beam 3 | beam 3 / greedy |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for fusion in Fusion::ALL {
        for batch in [1, BATCH] {
            let enc = lookup(t, fusion, batch, None);
            let greedy = lookup(t, fusion, batch, Some(Strategy::Greedy));
            let nocache = lookup(t, fusion, batch, Some(Strategy::GreedyNoCrossCache));
            let beam = lookup(t, fusion, batch, Some(Strategy::Beam3));
            println!(
                "| {fusion} | {batch} | {enc:.2} | {greedy:.2} | {nocache:.2} | {:.2}× | {:.2}× | {beam:.2} | {:.2}× |",
                nocache / greedy,
                (nocache - enc) / (greedy - enc),
                beam / greedy
            );
        }
    }
}

fn main() -> Result<()> {
    fusecap::allocator::keep_freed_memory();
    // `cargo bench` passes --bench; there are no other arguments to read.
    let reps: usize = std::env::var("FUSECAP_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1);
    // As `--threads N` does: N workers, candle on one thread each (unless
    // RAYON_NUM_THREADS says otherwise).
    let workers: usize = std::env::var("FUSECAP_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(every_core);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    let workers = Workers::new(workers)?;
    let settings = format!("RAYON_NUM_THREADS={threads}, {} workers", workers.threads());
    eprintln!("decode bench: {reps} reps, {settings}");
    let start = Instant::now();
    let timings = decoding_timings(&workers, reps)?;
    let (load, bytes) = load_ms(reps)?;
    println!("{settings}, {reps} interleaved reps, Config::small(fusion, {VOCAB}), random weights");
    println!();
    print_table(&timings);
    println!();
    println!(
        "ModelDir::load (separate, {:.1} MB of f32 weights): {load:.1} ms (median)",
        bytes as f64 / 1e6
    );
    println!("total bench time: {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
