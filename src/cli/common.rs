//! Options, checks and output shared by several commands.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::model::dir::{load_config, ModelDir, CONFIG_FILE};
use crate::model::Fusion;
use crate::report::compare::CompareProgress;
use crate::report::prediction::Prediction;

/// Exit code when some inputs failed but the others were processed.
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit code for an error that stopped the whole run (bad model, bad arguments).
pub const EXIT_FATAL: u8 = 2;

/// The shipped model used when neither `--model` nor `--fusion` is given.
pub const DEFAULT_MODEL: &str = "scenes-separate";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Use the shipped model of this fusion strategy (models/scenes-FUSION).
    #[arg(long, value_enum)]
    pub fusion: Option<Fusion>,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl ModelArgs {
    /// Resolves `--model` / `--fusion` to a directory and loads it.
    pub fn load(&self) -> Result<(ModelDir, Device)> {
        let device = parse_device(&self.device)?;
        let dir = match (&self.model, self.fusion) {
            (Some(dir), Some(fusion)) => {
                let cfg = load_config(&dir.join(CONFIG_FILE))?;
                if cfg.fusion != fusion {
                    bail!(
                        "--model {} uses fusion '{}' but --fusion says '{}'; drop one of the two options",
                        dir.display(),
                        cfg.fusion,
                        fusion
                    );
                }
                dir.clone()
            }
            (Some(dir), None) => dir.clone(),
            (None, Some(fusion)) => shipped_model(&format!("scenes-{fusion}"))?,
            (None, None) => shipped_model(DEFAULT_MODEL)?,
        };
        Ok((ModelDir::load(&dir, &device)?, device))
    }
}

/// Finds a shipped model: under $FUSECAP_MODELS, ./models, or the source tree's models/.
pub fn shipped_model(name: &str) -> Result<PathBuf> {
    let mut roots = Vec::new();
    if let Some(root) = std::env::var_os("FUSECAP_MODELS") {
        roots.push(PathBuf::from(root));
    }
    roots.push(PathBuf::from("models"));
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    roots
        .iter()
        .map(|root| root.join(name))
        .find(|dir| dir.join(CONFIG_FILE).is_file())
        .ok_or_else(|| {
            anyhow!(
                "no shipped model '{name}' found in {}; name a model directory with --model (--models for compare), set FUSECAP_MODELS, or create one with `fusecap init`",
                roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })
}

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(0)?),
        "metal" if candle_core::utils::metal_is_available() => Ok(Device::new_metal(0)?),
        "cuda" | "metal" => bail!("this build of fusecap has no {name} support; rebuild with `cargo build --release --features {name}` or use --device cpu"),
        other => bail!("unknown device '{other}'; use cpu, cuda or metal"),
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    Csv,
}

#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One output line: a result, or the error for one input.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutputRecord {
    pub image: String,
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    pub fusion: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes records to stdout in the chosen format, and errors to stderr.
pub struct Printer {
    format: Format,
    wrote_header: bool,
    pub failures: usize,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer {
            format,
            wrote_header: false,
            failures: 0,
        }
    }

    pub fn print(&mut self, record: &OutputRecord, progress: &ProgressBar) -> Result<()> {
        if let Some(error) = &record.error {
            self.failures += 1;
            progress.suspend(|| eprintln!("error: {error}"));
        }
        let line = match self.format {
            Format::Jsonl => Some(serde_json::to_string(record)?),
            Format::Csv => {
                let mut line = String::new();
                if !self.wrote_header {
                    line.push_str("image,task,question,output,logprob,fusion,model,ms,error\n");
                    self.wrote_header = true;
                }
                let fields = [
                    record.image.clone(),
                    record.task.to_string(),
                    record.question.clone().unwrap_or_default(),
                    record.output.clone().unwrap_or_default(),
                    record
                        .logprob
                        .map(|l| format!("{l:.4}"))
                        .unwrap_or_default(),
                    record.fusion.clone(),
                    record.model.clone(),
                    record.ms.map(|m| format!("{m:.2}")).unwrap_or_default(),
                    record.error.clone().unwrap_or_default(),
                ];
                line.push_str(
                    &fields
                        .iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                Some(line)
            }
            Format::Text => match (&record.output, &record.question) {
                (Some(out), Some(q)) => Some(format!("{}\t{q}\t{out}", record.image)),
                (Some(out), None) => Some(format!("{}\t{out}", record.image)),
                (None, _) => None,
            },
        };
        if let Some(line) = line {
            progress.suspend(|| -> Result<()> {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")?;
                Ok(stdout.flush()?)
            })?;
        }
        Ok(())
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal or with --quiet.
pub fn progress_bar(len: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() || len < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Exit code for a run where `failures` inputs failed.
pub fn exit_code(failures: usize) -> std::process::ExitCode {
    if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EXIT_SOME_FAILED)
    }
}

/// Refuses a flag under its earlier name, naming the one that replaced it.
pub fn refuse_renamed(old: &str, new: &str, given: bool) -> Result<()> {
    if given {
        bail!("{old} was renamed {new}: use {new} with the same value");
    }
    Ok(())
}

/// Errs naming the option when a count is 0.
pub fn check_counts(counts: &[(&str, usize)]) -> Result<()> {
    for (name, value) in counts {
        if *value == 0 {
            bail!("{name} must be at least 1 (got 0)");
        }
    }
    Ok(())
}

pub fn check_limit(limit: Option<usize>) -> Result<()> {
    if limit == Some(0) {
        bail!("--limit must be at least 1 (got 0); leave it out to evaluate every record");
    }
    Ok(())
}

/// Reports unreadable lines of a manifest or predictions file on stderr (the first three of them).
pub fn warn_problems(path: &Path, problems: &[impl std::fmt::Display]) {
    if problems.is_empty() {
        return;
    }
    eprintln!(
        "warning: skipped {} unreadable line(s) in {}:",
        problems.len(),
        path.display()
    );
    for p in problems.iter().take(3) {
        eprintln!("  {p}");
    }
}

/// Reports records whose image could not be read (the first three of them).
pub fn warn_failures(predictions: &[Prediction]) {
    let failed: Vec<&Prediction> = predictions.iter().filter(|p| p.error.is_some()).collect();
    if failed.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} record(s) could not be run and count as empty outputs:",
        failed.len()
    );
    for p in failed.iter().take(3) {
        eprintln!("  {}: {}", p.source, p.error.as_deref().unwrap_or_default());
    }
}

/// Notes on stderr while a comparison runs: which model, a progress bar, and
/// the records that could not be run; only the last with `quiet`.
pub struct Notes {
    pub quiet: bool,
}

impl CompareProgress for Notes {
    fn model_started(&self, name: &str, fusion: Fusion, records: usize) -> ProgressBar {
        if !self.quiet {
            eprintln!("evaluating {name} ({fusion} fusion) on {records} record(s)");
        }
        progress_bar(records, self.quiet)
    }

    fn model_evaluated(&self, predictions: &[Prediction]) {
        if !self.quiet {
            warn_failures(predictions);
        }
    }
}
