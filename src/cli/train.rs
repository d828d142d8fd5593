//! `fusecap train`: train a model of one fusion strategy on manifests.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::DType;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::common::refuse_renamed;
use crate::cli::model_args::parse_device;
use crate::cli::recipe::{load_architecture, parse_type_weight, TrainingArgs};
use crate::data::batch::{Dataset, Sampler};
use crate::data::manifest::load_manifests;
use crate::data::split::{split_records, training_texts};
use crate::data::stream::{self, StreamOptions};
use crate::model::dir::{parameter_count, TOKENIZER_FILE};
use crate::model::{Config, Fusion};
use crate::pipeline::load_model;
use crate::tokenizer::TextTokenizer;
use crate::train::{
    AdamW, LogRecord, Outcome, TrainOptions, TrainRun, CHECKPOINT_FILE, LOG_FILE, STATE_FILE,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap train --data data/scenes/manifest.jsonl --fusion concat --out runs/concat --steps 2000
  fusecap train --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl --fusion gated --out runs/gated --epochs 3
  fusecap train --data data/scenes/manifest.jsonl --fusion gated --out runs/gated --steps 2000 --resume
  fusecap train --data my/manifest.jsonl --fusion concat --from models/scenes-concat --out runs/tuned --steps 1000 --lr 3e-4

Writes a usable model directory to --out at every checkpoint, plus training.jsonl,
loss.png, checkpoint.safetensors (weights + optimiser) and train_state.json.
Ctrl-C saves a checkpoint and stops; --resume continues exactly where it stopped.")]
pub struct TrainArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    #[arg(long, value_enum)]
    pub fusion: Fusion,
    /// Output model directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Fine-tune: start from this model directory's weights, with its
    /// architecture and tokenizer, instead of a random initialisation. The
    /// optimiser and the learning-rate schedule start afresh; --fusion must
    /// be the model's.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub from: Option<PathBuf>,
    /// Earlier spellings of --from, refused with a message naming it.
    #[arg(long = "init", value_name = "DIR", hide = true)]
    pub renamed_init: Option<PathBuf>,
    #[arg(long = "finetune", value_name = "DIR", hide = true)]
    pub renamed_finetune: Option<PathBuf>,
    /// Optimiser steps.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<usize>,
    /// Passes over the training examples (alternative to --steps).
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// The gated strategy's gates learn at this multiple of --lr (Adam moves
    /// a scalar by about its rate per step).
    #[arg(long, default_value_t = AdamW::DEFAULT_GATE_LR_SCALE, value_name = "FACTOR")]
    pub gate_lr_scale: f64,
    /// Random shift of up to this many pixels (augmentation; 0 = off).
    #[arg(long, default_value_t = 0)]
    pub augment_shift: i64,
    /// Gaussian pixel noise, as a fraction of the pixel range (augmentation; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub augment_noise: f32,
    /// Share of each batch that is multi-object scenes drawn afresh for every
    /// step (seeded by --seed, so a resume sees the same ones); 0 = off.
    /// Half the validation examples are then scenes from another stream.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub stream_share: f64,
    /// Draw the streamed scenes from a pool of N, each shown again with new
    /// questions, so that a frozen pretrained encoder's features can be
    /// cached (default: every scene is new).
    #[arg(long, value_name = "N", requires = "stream_share")]
    pub stream_pool: Option<u64>,
    /// Draw streamed questions of one type this many times as often as the
    /// others, e.g. `--stream-type-weight relation=3` (repeatable; types:
    /// color, shape, size, count, exist, position, relation). Validation
    /// scenes stay balanced.
    #[arg(long, value_name = "TYPE=FACTOR", requires = "stream_share", value_parser = parse_type_weight)]
    pub stream_type_weight: Vec<(String, f32)>,
    /// A curriculum: the streamed scenes hold one object for the first third
    /// of STEPS steps, up to two in the second, up to three in the last, and
    /// the full 1–4 from then on. Validation scenes always hold 1–4.
    #[arg(long, value_name = "STEPS", requires = "stream_share")]
    pub stream_ramp: Option<u64>,
    /// Validate every N steps.
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// Checkpoint every N steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Train into a non-empty --out anyway, replacing the model and the run
    /// there (other files in it are kept).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Store model.safetensors as f16 (half the size) or f32.
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    pub save_dtype: String,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    refuse_renamed("--init", "--from", args.renamed_init.is_some())?;
    refuse_renamed("--finetune", "--from", args.renamed_finetune.is_some())?;
    check_out(&args)?;
    let threads = args.training.threads.apply()?;
    let device = parse_device(&args.training.device)?;
    if args.training.batch_size == 0
        || args.training.batching.group_size == 0
        || args.eval_every == 0
        || args.checkpoint_every == 0
    {
        bail!("--batch-size, --group-size, --eval-every and --checkpoint-every must be at least 1");
    }
    if !(args.gate_lr_scale.is_finite() && args.gate_lr_scale > 0.0) {
        bail!(
            "--gate-lr-scale {} must be a positive number (default {})",
            args.gate_lr_scale,
            AdamW::DEFAULT_GATE_LR_SCALE
        );
    }
    let stream_options = (args.stream_share != 0.0).then_some(StreamOptions {
        seed: args.training.seed,
        share: args.stream_share,
        pool: args.stream_pool,
        type_weights: args
            .stream_type_weight
            .iter()
            .map(|(name, factor)| (name.clone(), f64::from(*factor)))
            .collect(),
        ramp_steps: args.stream_ramp,
    });
    if let Some(s) = &stream_options {
        s.validate().map_err(|e| {
            anyhow::anyhow!(
                "--stream-share / --stream-pool / --stream-type-weight / --stream-ramp: {e}"
            )
        })?;
    }
    let manifest = load_manifests(&args.training.data)?;
    for problem in &manifest.problems {
        eprintln!("warning: {problem}");
    }
    if !manifest.problems.is_empty() {
        eprintln!(
            "skipped {} bad manifest line(s); training on the {} good ones",
            manifest.problems.len(),
            manifest.records.len()
        );
    }
    let splits = split_records(&manifest.records, args.training.val_percent);
    let (train_records, val_records) = (splits.train, splits.val);
    if train_records.is_empty() {
        bail!(
            "no training records (split \"train\" or no split) in {}",
            args.training
                .data
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Loaded whole, so a broken directory is refused before the images are decoded.
    let init = match &args.from {
        Some(dir) => Some(load_model(dir, &device)?),
        None => None,
    };
    if let Some(init) = &init {
        let fusion = init.model.cfg.fusion;
        if fusion != args.fusion {
            bail!(
                "{} is a {fusion} model; pass --fusion {fusion} to fine-tune it",
                init.path.display()
            );
        }
    }
    let tokenizer_path = args.out.join(TOKENIZER_FILE);
    let tokenizer = match &init {
        Some(init) => init.tokenizer.clone(),
        None if args.resume && tokenizer_path.is_file() => TextTokenizer::load(&tokenizer_path)?,
        None => {
            let mut texts = training_texts(&train_records);
            if stream_options.is_some() {
                texts.extend(stream::vocabulary_texts());
            }
            TextTokenizer::train(texts.iter().map(String::as_str), 1)?
        }
    };
    let vocab = tokenizer.vocab_size();
    let cfg = match (&init, &args.training.config) {
        (Some(init), _) => Config {
            inference: false,
            ..init.model.cfg.clone()
        },
        (None, Some(path)) => load_architecture(path, args.fusion, vocab)?,
        (None, None) => Config::small(args.fusion, vocab),
    };

    let (mut train, mut problems) = Dataset::build(&train_records, &tokenizer, &cfg)?;
    let (manifest_val, val_problems) = Dataset::build(&val_records, &tokenizer, &cfg)?;
    let val = match &stream_options {
        None => manifest_val,
        Some(s) => {
            let half = TrainOptions::default().val_examples / 2;
            let mut val = stream::validation_set(s, half, &tokenizer, &cfg)?;
            val.append(manifest_val);
            val
        }
    };
    problems.extend(val_problems);
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    if train.examples.is_empty() {
        bail!("none of the training records could be loaded (see the warnings above)");
    }
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => {
            let per_epoch = Sampler::new(
                &train,
                args.training.batch_size,
                args.training.batching.group_size,
                args.training.seed,
            )
            .batches_per_epoch();
            (e * per_epoch as f64).ceil() as usize
        }
        (None, None) => TrainOptions::default().steps,
    }
    .max(1);
    let options = args.training.batching.apply(TrainOptions {
        steps,
        batch_size: args.training.batch_size,
        lr: args.training.lr,
        warmup_steps: args.training.warmup.min(steps),
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        gate_lr_scale: args.gate_lr_scale,
        seed: args.training.seed,
        init_seed: args.training.init_seed,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        augment_shift: args.augment_shift,
        augment_noise: args.augment_noise,
        init_from: args.from.clone(),
        stream: stream_options,
        ..TrainOptions::default()
    });
    options.weigh_examples(&mut train)?;
    let params = {
        let (_, varmap) = crate::model::dir::init_model_with_words(
            &cfg,
            &tokenizer.words(),
            0,
            &candle_core::Device::Cpu,
        )?;
        parameter_count(&varmap, |_| true)
    };
    if !args.quiet {
        eprintln!(
            "training {} ({} parameters, {} tokens) on {} examples from {} images, validating on {} examples; {} steps of {}",
            cfg.fusion,
            params,
            vocab,
            train.examples.len(),
            train.images.len(),
            val.examples.len(),
            steps,
            args.training.batch_size
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst)) {
        eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr())
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}") {
        bar.set_style(style);
    }
    let mut last_val = String::new();
    let mut on_step = |r: &LogRecord| {
        if let (Some(l), acc) = (r.val_loss, r.val_accuracy) {
            last_val = format!(
                " val_loss {l:.3}{}",
                acc.map(|a| format!(" val_acc {:.1}%", 100.0 * a))
                    .unwrap_or_default()
            );
            if !bar.is_hidden() {
                bar.println(format!("step {}: loss {:.4}{last_val}", r.step, r.loss));
            }
        }
        bar.set_position(r.step as u64);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} samples/s{last_val}",
            r.loss, r.lr, r.samples_per_sec
        ));
    };
    let outcome = TrainRun {
        out: args.out.clone(),
        cfg,
        tokenizer,
        train: &train,
        val: &val,
        options,
        resume: args.resume,
        save_dtype: if args.save_dtype == "f32" {
            DType::F32
        } else {
            DType::F16
        },
        stop: &stop,
        on_step: &mut on_step,
        threads,
        device,
    }
    .run()?;
    bar.finish_and_clear();
    match outcome {
        Outcome::Finished => {
            if !args.quiet {
                eprintln!(
                    "done: model in {}, log in {}",
                    args.out.display(),
                    args.out.join(LOG_FILE).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { step } => {
            eprintln!("interrupted at step {step}; checkpoint saved. Continue with the same command plus --resume");
            Ok(ExitCode::from(130))
        }
    }
}

/// Refuses to train into a non-empty --out unless the run continues there
/// (--resume) or replaces it (--force), which also drops the old run's
/// checkpoint, so that a later --resume cannot pick it up.
fn check_out(args: &TrainArgs) -> Result<()> {
    let out = &args.out;
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {} is a file: give a folder for the model",
            out.display()
        );
    }
    if args.resume {
        return Ok(());
    }
    let mut entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read --out {}", out.display())),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !args.force {
        bail!(
            "--out {} is not empty (it may hold a model or a run): pass --resume to continue the run in it, --force to replace it, or choose another --out",
            out.display()
        );
    }
    for stale in [CHECKPOINT_FILE, STATE_FILE] {
        match std::fs::remove_file(out.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", out.join(stale).display()))
            }
            _ => {}
        }
    }
    Ok(())
}
