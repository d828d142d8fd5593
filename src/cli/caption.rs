//! `fusecap caption`: caption image files and folders.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::common::{exit_code, progress_bar};
use super::decode::{print_ranked, run_queries, warn_truncation, DecodeArgs};
use super::model_args::ModelArgs;
use super::output::{OutputArgs, OutputRecord, Printer};
use crate::data::walk::{collect_images, Inputs};
use crate::pipeline::{image_pixels, Answer, Query, IMAGE_EXTENSIONS};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap caption samples/scene-1.png
  fusecap caption photos/ --format jsonl > captions.jsonl
  fusecap caption dataset/ --sidecar --skip-existing --quiet
  fusecap caption dataset/ --shard 0/4 --sidecar     # first of 4 machines
  fusecap caption img.png --model pretrained-gated --max-new-tokens 16
  fusecap caption img.png --beams 4 --length-penalty 0.8 --no-repeat-ngram 2
  fusecap caption img.png --beams 5 --num-return 3 --format jsonl   # 3 best beams, with rank
  fusecap caption img.png --temperature 0.8 --top-p 0.9 --seed 7 --num-return 5
  fusecap caption img.png --top-k 5 --repetition-penalty 1.3 --min-new-tokens 4
  fusecap caption img.png --stream                 # print words as they are generated

With --num-return N, each image gets N records (rank 1 = best) and --sidecar
writes the N captions one per line. The sidecar of x.png is x.txt; when x.png and
x.jpg (or any images differing only in extension) are both inputs, neither gets a
sidecar and each is reported as an error naming the other, so no caption
overwrites another; rename one of them.")]
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
    /// Write IMAGE.txt (same name, .txt extension) next to each image. Images
    /// that would share one (x.png and x.jpg) get none, and an error naming them.
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
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("shard index '{k}' is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("shard count '{n}' is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("shard {k}/{n}: need 0 ≤ K < N"));
    }
    Ok((k, n))
}

pub fn sidecar_path(image: &Path) -> PathBuf {
    image.with_extension("txt")
}

/// The images of `files` that share their sidecar with another image
/// (`x.png` and `x.jpg` both write `x.txt`), each with the error to report.
fn sidecar_collisions(files: &[PathBuf]) -> HashMap<PathBuf, String> {
    let mut by_sidecar: HashMap<PathBuf, Vec<&PathBuf>> = HashMap::new();
    for file in files {
        by_sidecar.entry(sidecar_path(file)).or_default().push(file);
    }
    let mut collisions = HashMap::new();
    for (sidecar, images) in by_sidecar.into_iter().filter(|(_, v)| v.len() > 1) {
        let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
        for image in images {
            collisions.insert(
                image.clone(),
                format!(
                    "{}: no sidecar written, because {} would all write {}; rename all but one of them",
                    image.display(),
                    names.join(" and "),
                    sidecar.display()
                ),
            );
        }
    }
    collisions
}

pub fn run(args: CaptionArgs) -> Result<ExitCode> {
    args.decode.check(args.output.format)?;
    let Inputs {
        mut files,
        problems,
    } = collect_images(&args.inputs);
    // Over every input, before sharding: two machines must not share a sidecar either.
    let collisions = if args.sidecar || args.skip_existing {
        sidecar_collisions(&files)
    } else {
        HashMap::new()
    };
    if let Some((k, n)) = args.shard {
        files = files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k)
            .map(|(_, f)| f)
            .collect();
    }
    let total = files.len();
    if args.skip_existing {
        files.retain(|f| collisions.contains_key(f) || !sidecar_path(f).exists());
        if !args.output.quiet && files.len() < total {
            eprintln!(
                "skipping {} image(s) that already have a sidecar",
                total - files.len()
            );
        }
    }
    if args.decode.stream && files.len() + problems.len() != 1 {
        bail!(
            "--stream prints one caption as it is generated, so it needs exactly one image (got {}); drop --stream to caption several",
            files.len() + problems.len()
        );
    }
    let (md, device) = args.model.load()?;
    warn_truncation(&md, &[], args.decode.max_new_tokens)?;
    let base = OutputRecord::of_model("caption", &md);
    let format = args.output.format;
    let mut printer = Printer::new(format);
    let progress = progress_bar(files.len(), args.output.quiet);
    for problem in &problems {
        printer.print(
            &OutputRecord {
                image: problem.path.display().to_string(),
                error: Some(problem.to_string()),
                ..base.clone()
            },
            &progress,
        )?;
    }
    let opts = args.decode.options();
    for chunk in files.chunks(args.decode.batch_size) {
        let mut queries = Vec::new();
        let mut loaded = Vec::new();
        for path in chunk {
            match image_pixels(&md, path) {
                Ok(pixels) => {
                    queries.push(Query {
                        pixels,
                        text: md.model.cfg.caption_prompt.clone(),
                    });
                    loaded.push(path);
                }
                Err(e) => {
                    let record = OutputRecord {
                        image: path.display().to_string(),
                        error: Some(format!("{e:#}")),
                        ..base.clone()
                    };
                    printer.print(&record, &progress)?;
                    progress.inc(1);
                }
            }
        }
        if queries.is_empty() {
            continue;
        }
        let start = Instant::now();
        let prefix = args
            .decode
            .stream
            .then(|| format!("{}\t", loaded[0].display()));
        let results = run_queries(&md, &queries, &opts, &device, prefix)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0 / results.len() as f64;
        for (path, answers) in loaded.into_iter().zip(results) {
            let mut error = None;
            if args.sidecar {
                error = match collisions.get(path) {
                    Some(collision) => Some(collision.clone()),
                    None => write_sidecar(path, &answers)
                        .err()
                        .map(|e| format!("{e:#}")),
                };
            }
            for (i, answer) in answers.iter().enumerate() {
                let mut record = OutputRecord {
                    image: path.display().to_string(),
                    output: Some(answer.text.clone()),
                    logprob: Some(answer.logprob),
                    ms: Some(ms),
                    error: if i == 0 { error.clone() } else { None },
                    ..base.clone()
                };
                if args.decode.stream {
                    // The text is on screen already; only an error remains to report.
                    if record.error.is_none() {
                        continue;
                    }
                    record.output = None;
                }
                let rank = (opts.num_return > 1).then_some(i + 1);
                print_ranked(&mut printer, format, &record, rank, &progress)?;
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if !args.output.quiet && printer.failures > 0 {
        eprintln!(
            "{} of {} input(s) failed",
            printer.failures,
            files.len() + problems.len()
        );
    }
    if files.is_empty() && problems.is_empty() && total == 0 {
        return Err(anyhow!(
            "no image files found in the given inputs (known extensions: {})",
            IMAGE_EXTENSIONS.join(", ")
        ));
    }
    Ok(exit_code(printer.failures))
}

/// Writes the outputs for `image`, best first, one per line.
fn write_sidecar(image: &Path, answers: &[Answer]) -> Result<()> {
    let sidecar = sidecar_path(image);
    let text: String = answers.iter().map(|a| format!("{}\n", a.text)).collect();
    std::fs::write(&sidecar, text)
        .with_context(|| format!("{}: cannot write the sidecar", sidecar.display()))
}
