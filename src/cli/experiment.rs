//! `fusecap experiment`: train several fusion strategies under one budget
//! (same seed, data order, steps and batch size), then compare them on the
//! test split and say which won where.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use indicatif::ProgressBar;

use super::common::{check_counts, check_limit, progress_bar, warn_problems, Notes};
use super::fusion_arg::FusionList;
use super::model_args::parse_device;
use crate::cli::recipe::{load_architecture, TrainingArgs};
use crate::data::batch::Dataset;
use crate::data::manifest::{load_manifests, Record};
use crate::data::split::{split_records, training_texts, Splits};
use crate::model::{Config, Fusion};
use crate::pipeline::DEFAULT_BATCH_SIZE;
use crate::plot::Series;
use crate::report::compare::{compare, plot_accuracy, CompareOptions};
use crate::report::compare_markdown::render_markdown;
use crate::report::evaluation::EvalOptions;
use crate::report::summary::{final_vals, fusion_names, render_summary, Curve, Summary};
use crate::report::verdict::verdicts;
use crate::report::write::{write_json, write_text};
use crate::tokenizer::TextTokenizer;
use crate::train::log::{val_accuracy_chart, val_accuracy_points};
use crate::train::{LogRecord, Outcome, TrainOptions, TrainRun, TrainState, LOG_FILE, STATE_FILE};

/// Files written into --out, beside one folder per strategy.
pub const COMPARE_MD: &str = "compare.md";
pub const COMPARE_JSON: &str = "compare.json";
pub const SUMMARY_MD: &str = "summary.md";
pub const SUMMARY_JSON: &str = "summary.json";
pub const VAL_PLOT: &str = "val_accuracy.png";
pub const ACCURACY_PLOT: &str = "accuracy.png";

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap experiment --data data/scenes/manifest.jsonl --steps 2000 --out runs/exp1
  fusecap experiment --fusion concat,gated --data data/easy-vqa/manifest.jsonl data/scenes/manifest.jsonl --steps 3000 --out runs/exp2 --seed 3
  fusecap init --fusion concat --size tiny --out /tmp/tiny && \\
    fusecap experiment --data data/scenes/manifest.jsonl --steps 20 --batch-size 8 --config /tmp/tiny/config.json --out /tmp/exp
  fusecap experiment --data data/scenes/manifest.jsonl --steps 2000 --out runs/exp1 --resume   # after Ctrl-C

Trains every strategy into OUT/FUSION/ with the same seed, data order and budget, then
evaluates them on the \"test\" split and writes into OUT:
  compare.md, compare.json   the side-by-side comparison (as `fusecap compare`)
  val_accuracy.png           validation accuracy against the step, one line per strategy
  accuracy.png               test accuracy per question type (when the test split has questions)
  summary.md, summary.json   which strategy won each question type, and by how much
Results go to stdout as well. Records split \"train\" (or none) train, \"val\" validates
(or --val-percent of the training images when there is no \"val\" split), \"test\" compares.

Exit codes: 0 done, 130 interrupted (continue with --resume), 2 fatal error.")]
pub struct ExperimentArgs {
    /// Strategies to train: "all", or a comma-separated list.
    #[arg(long, default_value = "all", value_name = "all|LIST")]
    pub fusion: FusionList,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Optimiser steps per strategy.
    #[arg(long)]
    pub steps: usize,
    /// Output folder: one model directory per strategy, plus the reports.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validate every N steps (default: a tenth of --steps).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Compare on only the first N test records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Records on which the strategies disagree to show in the comparison.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub disagreements: usize,
    /// Keep the strategies already trained in --out and continue an interrupted one.
    #[arg(long)]
    pub resume: bool,
    /// No progress bars and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ExperimentArgs) -> Result<ExitCode> {
    args.training.threads.apply()?;
    check_args(&args)?;
    let device = parse_device(&args.training.device)?;
    let manifest = load_manifests(&args.training.data)?;
    for path in &args.training.data {
        let own: Vec<_> = manifest
            .problems
            .iter()
            .filter(|p| &p.file == path)
            .cloned()
            .collect();
        warn_problems(path, &own);
    }
    let splits = split_records(&manifest.records, args.training.val_percent);
    check_splits(&splits, &args.training.data)?;
    let options = train_options(&args);
    let mut data = TrainingData::build(&splits, args.training.config.as_deref(), &args.fusion.0)?;
    options.weigh_examples(&mut data.train)?;
    if !args.quiet {
        eprintln!(
            "experiment: {} for {} steps of {} (seed {}) on {} training and {} validation examples; comparing on {} test record(s)",
            fusion_names(&args.fusion.0),
            options.steps,
            options.batch_size,
            options.seed,
            data.train.examples.len(),
            data.val.examples.len(),
            args.limit.map_or(splits.test.len(), |l| l.min(splits.test.len()))
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| {
        format!(
            "cannot create {}: check the path and permissions",
            args.out.display()
        )
    })?;
    if let Some(code) = train_all(&args, &data, &options, &device)? {
        return Ok(code);
    }
    report(&args, &splits.test, &options, &device)?;
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &ExperimentArgs) -> Result<()> {
    check_counts(&[
        ("--steps", args.steps),
        ("--batch-size", args.training.batch_size),
        ("--group-size", args.training.batching.group_size),
    ])?;
    check_limit(args.limit)?;
    if args.eval_every == Some(0) {
        bail!("--eval-every must be at least 1 (got 0)");
    }
    Ok(())
}

/// Trains each strategy in turn; `Some(exit code)` when Ctrl-C stopped one.
fn train_all(
    args: &ExperimentArgs,
    data: &TrainingData,
    options: &TrainOptions,
    device: &Device,
) -> Result<Option<ExitCode>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
    }
    for &fusion in &args.fusion.0 {
        let job = TrainJob {
            args,
            cfg: Config {
                fusion,
                ..data.base.clone()
            },
            data,
            options,
            stop: &stop,
            device,
        };
        if let Outcome::Interrupted { step } = job.run()? {
            eprintln!(
                "interrupted while training {fusion} at step {step}; checkpoint saved. Continue with the same command plus --resume"
            );
            return Ok(Some(ExitCode::from(130)));
        }
    }
    Ok(None)
}

fn train_options(args: &ExperimentArgs) -> TrainOptions {
    args.training.batching.apply(TrainOptions {
        steps: args.steps,
        batch_size: args.training.batch_size,
        lr: args.training.lr,
        warmup_steps: args.training.warmup.min(args.steps),
        seed: args.training.seed,
        init_seed: args.training.init_seed,
        eval_every: args.eval_every.unwrap_or((args.steps / 10).max(1)),
        ..TrainOptions::default()
    })
}

// ---------------------------------------------------------------- data

fn check_splits(splits: &Splits, data: &[PathBuf]) -> Result<()> {
    let files = data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if splits.train.is_empty() {
        bail!("no training records (split \"train\" or no split) in {files}");
    }
    if splits.test.is_empty() {
        bail!("no test records (split \"test\") in {files}: the experiment compares the strategies on them; add some, e.g. with `fusecap data`");
    }
    Ok(())
}

/// What every strategy trains on: one tokenizer, one architecture (but for
/// the fusion), one set of examples in one order.
struct TrainingData {
    tokenizer: TextTokenizer,
    base: Config,
    train: Dataset,
    val: Dataset,
}

impl TrainingData {
    /// `fusions` are the strategies to train; the shared base configuration
    /// takes the first, and each run sets its own.
    fn build(splits: &Splits, config: Option<&Path>, fusions: &[Fusion]) -> Result<Self> {
        let texts = training_texts(&splits.train);
        let tokenizer = TextTokenizer::train(texts.iter().map(String::as_str), 1)?;
        let vocab_size = tokenizer.vocab_size();
        let fusion = fusions.first().copied().unwrap_or(Fusion::ALL[0]);
        let base = match config {
            Some(path) => load_architecture(path, fusion, vocab_size)?,
            None => Config::small(fusion, vocab_size),
        };
        let (train, mut problems) = Dataset::build(&splits.train, &tokenizer, &base)?;
        let (val, val_problems) = Dataset::build(&splits.val, &tokenizer, &base)?;
        problems.extend(val_problems);
        for p in &problems {
            eprintln!("warning: {p}");
        }
        if train.examples.is_empty() {
            bail!("none of the training records could be loaded (see the warnings above)");
        }
        Ok(TrainingData {
            tokenizer,
            base,
            train,
            val,
        })
    }
}

// ---------------------------------------------------------------- training

/// Training one strategy into OUT/FUSION.
struct TrainJob<'a> {
    args: &'a ExperimentArgs,
    device: &'a Device,
    cfg: Config,
    data: &'a TrainingData,
    options: &'a TrainOptions,
    stop: &'a AtomicBool,
}

/// What is already in a strategy's folder.
#[derive(Debug, PartialEq)]
enum Existing {
    Nothing,
    Unfinished,
    Finished,
}

impl TrainJob<'_> {
    fn dir(&self) -> PathBuf {
        self.args.out.join(self.cfg.fusion.name())
    }

    fn run(self) -> Result<Outcome> {
        let dir = self.dir();
        let existing = existing_run(&dir, self.options, self.data.train.examples.len())?;
        match (&existing, self.args.resume) {
            (Existing::Finished, true) => {
                if !self.args.quiet {
                    eprintln!("{}: already trained; kept", dir.display());
                }
                return Ok(Outcome::Finished);
            }
            (Existing::Nothing, _) | (_, true) => {}
            (_, false) => bail!(
                "{} already holds a training run; pass --resume to keep or continue it, or choose another --out",
                dir.display()
            ),
        }
        if !self.args.quiet {
            eprintln!("training {} into {}", self.cfg.fusion, dir.display());
        }
        let bar = progress_bar(self.options.steps, self.args.quiet);
        let mut on_step = |r: &LogRecord| step_progress(&bar, r);
        let outcome = TrainRun {
            out: dir,
            cfg: self.cfg,
            tokenizer: self.data.tokenizer.clone(),
            train: &self.data.train,
            val: &self.data.val,
            options: self.options.clone(),
            resume: existing == Existing::Unfinished,
            save_dtype: DType::F32,
            stop: self.stop,
            on_step: &mut on_step,
            threads: self.args.training.threads.count()?,
            device: self.device.clone(),
        }
        .run()?;
        bar.finish_and_clear();
        Ok(outcome)
    }
}

fn step_progress(bar: &ProgressBar, r: &LogRecord) {
    bar.set_position(r.step as u64);
    let val = r
        .val_accuracy
        .map(|a| format!(" val_acc {:.1}%", 100.0 * a))
        .unwrap_or_default();
    bar.set_message(format!("loss {:.4}{val}", r.loss));
}

/// Reads a strategy folder's train_state.json; a finished or unfinished run
/// must have used the same options and data.
fn existing_run(dir: &Path, options: &TrainOptions, examples: usize) -> Result<Existing> {
    let path = dir.join(STATE_FILE);
    if !path.is_file() {
        return Ok(Existing::Nothing);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let state: TrainState = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: corrupt training state; delete {} to retrain it",
            path.display(),
            dir.display()
        )
    })?;
    if state.options != *options || state.train_examples != examples {
        bail!(
            "{} was trained with other options or data ({} examples, {:?}); delete it or choose another --out",
            dir.display(),
            state.train_examples,
            state.options
        );
    }
    Ok(if state.step >= options.steps {
        Existing::Finished
    } else {
        Existing::Unfinished
    })
}

// ---------------------------------------------------------------- report

/// Compares the trained strategies on the test split and writes every report.
fn report(
    args: &ExperimentArgs,
    test: &[&Record],
    options: &TrainOptions,
    device: &Device,
) -> Result<()> {
    let dirs: Vec<PathBuf> = args
        .fusion
        .0
        .iter()
        .map(|f| args.out.join(f.name()))
        .collect();
    let records: Vec<&Record> = test
        .iter()
        .copied()
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    let opts = CompareOptions {
        eval: EvalOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            modality_share: true,
            ..EvalOptions::default()
        },
        speed_samples: 32,
        disagreements: args.disagreements,
    };
    let manifests = args
        .training
        .data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    let comparison = compare(
        &dirs,
        &records,
        &opts,
        device,
        Path::new(&manifests),
        "test",
        &Notes { quiet: args.quiet },
    )?;
    let markdown = render_markdown(&comparison);
    write_text(&args.out.join(COMPARE_MD), &markdown)?;
    write_json(&args.out.join(COMPARE_JSON), &comparison)?;

    let curves = val_curves(args)?;
    let summary = Summary {
        strategies: args.fusion.0.clone(),
        steps: options.steps,
        batch_size: options.batch_size,
        seed: options.seed,
        test_records: records.len(),
        verdicts: verdicts(&comparison.models),
        final_val_accuracy: final_vals(&curves),
    };
    let summary_md = render_summary(&summary, &comparison);
    write_text(&args.out.join(SUMMARY_MD), &summary_md)?;
    write_json(&args.out.join(SUMMARY_JSON), &summary)?;
    plot_curves(args, curves)?;
    if comparison.questions > 0 {
        plot_accuracy(&comparison, &args.out.join(ACCURACY_PLOT))?;
    }
    print!("{markdown}\n{summary_md}");
    if !args.quiet {
        eprintln!(
            "wrote {COMPARE_MD}, {COMPARE_JSON}, {SUMMARY_MD}, {SUMMARY_JSON}, {VAL_PLOT}{} to {}",
            if comparison.questions > 0 {
                format!(", {ACCURACY_PLOT}")
            } else {
                String::new()
            },
            args.out.display()
        );
    }
    Ok(())
}

/// Each strategy's (step, validation accuracy) points from its training.jsonl.
fn val_curves(args: &ExperimentArgs) -> Result<Vec<Curve>> {
    args.fusion
        .0
        .iter()
        .map(|&f| {
            let log = args.out.join(f.name()).join(LOG_FILE);
            Ok((f, val_accuracy_points(&log)?))
        })
        .collect()
}

fn plot_curves(args: &ExperimentArgs, curves: Vec<Curve>) -> Result<()> {
    if curves.iter().all(|(_, p)| p.is_empty()) {
        eprintln!(
            "note: no validation accuracy was logged (the validation set has no questions); {VAL_PLOT} has no lines"
        );
    }
    let series: Vec<Series> = curves
        .into_iter()
        .map(|(f, points)| Series {
            name: f.name().to_string(),
            points,
        })
        .collect();
    val_accuracy_chart(&series, &args.out.join(VAL_PLOT))
}
