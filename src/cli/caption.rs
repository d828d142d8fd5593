//! `fusecap caption`: caption image files and folders.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::common::{exit_code, progress_bar, ModelArgs, OutputArgs, OutputRecord, Printer};
use crate::data::image::{has_image_extension, Preprocess};
use super::decode::DecodeArgs;
use crate::generate::{answer_batch, Query};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap caption samples/scene-1.png
  fusecap caption photos/ --format jsonl > captions.jsonl
  fusecap caption dataset/ --sidecar --skip-existing --quiet
  fusecap caption dataset/ --shard 0/4 --sidecar     # first of 4 machines
  fusecap caption img.png --fusion gated --max-new-tokens 16")]
pub struct CaptionArgs {
    /// Image files and folders (searched recursively for known image extensions).
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Write IMAGE.txt (same name, .txt extension) next to each image.
    #[arg(long)]
    pub sidecar: bool,
    /// Skip images whose sidecar .txt already exists (resume an interrupted run).
    #[arg(long)]
    pub skip_existing: bool,
    /// Process only slice K of N (0-based) of the sorted input list, e.g. 2/8.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

fn parse_shard(value: &str) -> Result<(usize, usize), String> {
    let (k, n) = value.split_once('/').ok_or("expected K/N, e.g. 0/4")?;
    let k: usize = k.trim().parse().map_err(|_| format!("shard index '{k}' is not a number"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("shard count '{n}' is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("shard {k}/{n}: need 0 ≤ K < N"));
    }
    Ok((k, n))
}

pub fn sidecar_path(image: &Path) -> PathBuf {
    image.with_extension("txt")
}

/// Expands folders into their image files; returns the sorted, de-duplicated
/// list and the inputs that do not exist.
pub fn collect_images(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut files);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            missing.push(input.clone());
        }
    }
    files.sort();
    files.dedup();
    (files, missing)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if has_image_extension(&path) {
            files.push(path);
        }
    }
}

pub fn run(args: CaptionArgs) -> Result<ExitCode> {
    if args.decode.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let (md, device) = args.model.load()?;
    let (mut files, missing) = collect_images(&args.inputs);
    if let Some((k, n)) = args.shard {
        files = files.into_iter().enumerate().filter(|(i, _)| i % n == k).map(|(_, f)| f).collect();
    }
    let total = files.len();
    if args.skip_existing {
        files.retain(|f| !sidecar_path(f).exists());
        if !args.output.quiet && files.len() < total {
            eprintln!("skipping {} image(s) that already have a sidecar", total - files.len());
        }
    }
    let base = OutputRecord { task: "caption", fusion: md.model.cfg.fusion.to_string(), model: md.name.clone(), ..Default::default() };
    let mut printer = Printer::new(args.output.format);
    let progress = progress_bar(files.len(), args.output.quiet);
    for path in &missing {
        let error = format!("{}: no such file or folder", path.display());
        printer.print(&OutputRecord { image: path.display().to_string(), error: Some(error), ..base.clone() }, &progress)?;
    }
    let preprocess = Preprocess::from_config(&md.model.cfg);
    let opts = args.decode.options();
    for chunk in files.chunks(args.decode.batch_size) {
        let mut queries = Vec::new();
        let mut loaded = Vec::new();
        for path in chunk {
            match preprocess.load(path) {
                Ok(pixels) => {
                    queries.push(Query { pixels, text: md.model.cfg.caption_prompt.clone() });
                    loaded.push(path);
                }
                Err(e) => {
                    let record = OutputRecord { image: path.display().to_string(), error: Some(format!("{e:#}")), ..base.clone() };
                    printer.print(&record, &progress)?;
                    progress.inc(1);
                }
            }
        }
        if queries.is_empty() {
            continue;
        }
        let start = Instant::now();
        let answers = answer_batch(&md, &queries, &opts, &device)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0 / answers.len() as f64;
        for (path, answer) in loaded.into_iter().zip(answers) {
            let mut record = OutputRecord {
                image: path.display().to_string(),
                output: Some(answer.text.clone()),
                logprob: Some(answer.logprob),
                ms: Some(ms),
                ..base.clone()
            };
            if args.sidecar {
                let sidecar = sidecar_path(path);
                if let Err(e) = std::fs::write(&sidecar, format!("{}\n", answer.text)).with_context(|| format!("{}: cannot write the sidecar", sidecar.display())) {
                    record.error = Some(format!("{e:#}"));
                }
            }
            printer.print(&record, &progress)?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if !args.output.quiet && printer.failures > 0 {
        eprintln!("{} of {} input(s) failed", printer.failures, files.len() + missing.len());
    }
    if files.is_empty() && missing.is_empty() && total == 0 {
        return Err(anyhow!("no image files found in the given inputs (known extensions: {})", crate::data::image::IMAGE_EXTENSIONS.join(", ")));
    }
    Ok(exit_code(printer.failures))
}
