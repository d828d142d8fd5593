//! `fusecap compare`: evaluate several models on exactly the same records and
//! print them side by side.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::common::{check_counts, check_limit, exit_code, refuse_renamed, warn_problems, Notes};
use super::model_args::{
    model_dir, parse_device, refuse_fusion_as_model, shipped_model, InferenceThreads, FUSION_MODELS,
};
use crate::data::manifest::{load_manifest, Task};
use crate::generate::DEFAULT_MAX_NEW_TOKENS;
use crate::model::dir::{load_config, CONFIG_FILE};
use crate::pipeline::DEFAULT_BATCH_SIZE;
use crate::report::compare::{compare, plot_accuracy, CompareOptions};
use crate::report::compare_markdown::render_markdown;
use crate::report::evaluation::EvalOptions;
use crate::report::records::select_records;
use crate::report::write::write_json;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap compare --data data/scenes/manifest.jsonl
  fusecap compare --model runs/concat runs/gated --data data/easy-vqa/manifest.jsonl --limit 1000 --json cmp.json --plot cmp.png
  fusecap compare --model scenes-concat --model pretrained-concat --data data/scenes/manifest.jsonl --disagreements 10 --plot cmp.svg

Without --model it compares the three shipped fusions, pretrained-concat, pretrained-separate and
pretrained-gated, which need the pretrained encoders (`fusecap encoders import --help`).
Prints one Markdown table, one row per model: fusion, parameter counts, caption metrics,
VQA accuracy overall and per question type, ms/image at batch 1 and at --batch-size,
the process's peak memory, for concat models the share of cross-attention on image vs
text tokens per question type, and for gated models the learned gates per layer. Then up
to --disagreements records where the models' outputs differ, with each model's output.
--plot draws VQA accuracy per question type per model (PNG, or SVG by extension).

Exit codes: 0 compared, 1 some images could not be read (scored as empty outputs), 2 fatal error.")]
pub struct CompareArgs {
    /// Model directories to compare, or names of shipped models; repeat the
    /// flag or list several after it. Default: the three shipped fusions (pretrained-*).
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "DIR|NAME")]
    pub model: Vec<PathBuf>,
    /// Earlier ways of naming the models, refused with a message naming --model.
    #[arg(long = "models", num_args = 1.., value_name = "DIR|NAME", hide = true)]
    pub retired_models: Vec<PathBuf>,
    #[arg(long = "fusion", value_name = "FUSION", hide = true)]
    pub retired_fusion: Option<String>,
    /// The manifest holding the references (JSONL).
    #[arg(long, value_name = "MANIFEST")]
    pub data: PathBuf,
    /// Compare on the records of this split (records without a split count as "train").
    #[arg(long, default_value = "test", value_name = "NAME")]
    pub split: String,
    /// Compare on only the first N records of the split.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also write the whole comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw VQA accuracy per question type per model to FILE (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Draw each model's validation accuracy against the training step, from
    /// the training.jsonl in its directory, to FILE (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub curves: Option<PathBuf>,
    /// Show up to N records on which the models disagree.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub disagreements: usize,
    /// Records per forward pass (also the batch size of the batched speed).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Records timed, one at a time and in batches, for the speed columns (the first ones).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub speed_samples: usize,
    /// Longest output, in tokens.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub threads: InferenceThreads,
    /// No progress bars and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    check_counts(&[
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
        ("--speed-samples", args.speed_samples),
    ])?;
    check_limit(args.limit)?;
    args.threads.apply()?;
    let device = parse_device(&args.device)?;
    let dirs = model_dirs(&args)?;
    // A record whose image is missing is scored as a failure, not dropped.
    let manifest = load_manifest(&args.data)?.with_missing_images();
    warn_problems(&args.data, &manifest.problems);
    let records = select_records(&manifest, &args.data, &args.split, args.limit)?;
    if args.plot.is_some() && !records.iter().any(|r| matches!(r.task, Task::Vqa { .. })) {
        bail!(
            "--plot draws VQA accuracy, but split \"{}\" of {} has no question records; drop --plot or pick a split with questions",
            args.split,
            args.data.display()
        );
    }
    let opts = CompareOptions {
        eval: EvalOptions {
            batch_size: args.batch_size,
            max_new_tokens: args.max_new_tokens,
            modality_share: true,
        },
        speed_samples: args.speed_samples,
        disagreements: args.disagreements,
    };
    if let Some(path) = &args.curves {
        plot_curves(&dirs, path)?;
    }
    let notes = Notes { quiet: args.quiet };
    let report = compare(
        &dirs,
        &records,
        &opts,
        &device,
        &args.data,
        &args.split,
        &notes,
    )?;
    print!("{}", render_markdown(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        plot_accuracy(&report, path)?;
    }
    let failed = report.models.iter().map(|m| m.failed).max().unwrap_or(0);
    Ok(exit_code(failed))
}

fn plot_curves(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let mut logs = Vec::new();
    for dir in dirs {
        let log = dir.join(crate::train::LOG_FILE);
        if !log.is_file() {
            bail!(
                "--curves needs {}, the training log; models trained by `fusecap train` have one",
                log.display()
            );
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        logs.push((name, log));
    }
    crate::train::log::val_accuracy_curves(&logs, out)
}

/// `--model` as given, or the three shipped fusions.
fn model_dirs(args: &CompareArgs) -> Result<Vec<PathBuf>> {
    refuse_renamed("--models", "--model", !args.retired_models.is_empty())?;
    refuse_fusion_as_model(args.retired_fusion.as_deref())?;
    let dirs = if args.model.is_empty() {
        FUSION_MODELS
            .iter()
            .map(|name| shipped_model(name))
            .collect::<Result<Vec<_>>>()?
    } else {
        args.model.iter().map(|m| model_dir(m)).collect()
    };
    // Check every model before spending time on the first.
    for dir in &dirs {
        if !dir.is_dir() {
            bail!("model directory {} does not exist; check --model (each a folder with config.json, model.safetensors, tokenizer.json, or a shipped model's name)", dir.display());
        }
        load_config(&dir.join(CONFIG_FILE))?;
    }
    Ok(dirs)
}
