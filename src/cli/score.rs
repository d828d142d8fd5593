//! `fusecap score`: score predictions from any system against a manifest
//! (see `report::score` for how predictions are matched to records).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::common::warn_problems;
use crate::data::manifest::{load_manifest, Record};
use crate::report::metrics_table::metrics_table;
use crate::report::records::select_records;
use crate::report::score::{match_records, read_predictions, score_report, Matching, Predictions};
use crate::report::write::write_json;

/// How many examples of each kind of problem to print.
const SHOW: usize = 3;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap caption data/images --format jsonl > preds.jsonl
  fusecap score --predictions preds.jsonl --data data/manifest.jsonl --split test
  fusecap score --predictions answers.jsonl --data data/vqa.jsonl --json scores.json

Captions get BLEU-1..4, CIDEr-D, ROUGE-L (as pycocoevalcap computes them) and
exact match; questions get VQA accuracy (the official 10-answer rule when a
record has several human answers), overall and per question type.

Exit codes: 0 scored (unmatched lines are reported on stderr), 2 nothing matched or fatal error.")]
pub struct ScoreArgs {
    /// Predictions, JSONL: one {"image": PATH, "output": TEXT, "question": TEXT (VQA only)} per line.
    /// Image paths are relative to the current directory.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// The manifest holding the references.
    #[arg(long, value_name = "MANIFEST")]
    pub data: PathBuf,
    /// Score only the manifest records of this split (records without one count as "train").
    /// Default: all records.
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
    /// Also write the full scores as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No notes on stderr (warnings and errors still go there).
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ScoreArgs) -> Result<ExitCode> {
    let manifest = load_manifest(&args.data)?;
    warn_problems(&args.data, &manifest.problems);
    let predictions = read_predictions(&args.predictions)?;
    warn_problems(&args.predictions, &predictions.problems);
    let records: Vec<&Record> = match &args.split {
        Some(split) => select_records(&manifest, &args.data, split, None)?,
        None => manifest.records.iter().collect(),
    };
    let matching = match_records(&records, &predictions.lines);
    report_matching(&args, &records, &predictions, &matching);
    if matching.pairs.is_empty() {
        bail!(
            "none of the {} predictions in {} matches one of the {} records of {}{}: \
             prediction image paths must be relative to the current directory (or absolute) \
             and name the same files as the manifest, and VQA predictions need the same question",
            predictions.lines.len(),
            args.predictions.display(),
            records.len(),
            args.data.display(),
            args.split
                .as_ref()
                .map(|s| format!(" (split \"{s}\")"))
                .unwrap_or_default()
        );
    }
    let report = score_report(
        &args.predictions,
        &args.data,
        args.split.as_deref(),
        &records,
        &predictions,
        &matching,
    );
    print!("{}", metrics_table(&report.metrics).trim_start());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_matching(
    args: &ScoreArgs,
    records: &[&Record],
    predictions: &Predictions,
    matching: &Matching,
) {
    if !args.quiet {
        eprintln!(
            "matched {} of {} manifest record(s) with {} prediction line(s)",
            matching.pairs.len(),
            records.len(),
            predictions.lines.len()
        );
    }
    if !matching.unused.is_empty() {
        eprintln!(
            "warning: {} prediction(s) in {} match no manifest record{}:",
            matching.unused.len(),
            args.predictions.display(),
            args.split
                .as_ref()
                .map(|s| format!(" of split \"{s}\""))
                .unwrap_or_default()
        );
        for &i in matching.unused.iter().take(SHOW) {
            let p = &predictions.lines[i];
            let question = p
                .key
                .question
                .as_deref()
                .map(|q| format!(" \"{q}\""))
                .unwrap_or_default();
            eprintln!(
                "  {}:{}: {}{question}",
                args.predictions.display(),
                p.line,
                p.image
            );
        }
    }
    if let Some(&first) = matching.duplicates.first() {
        eprintln!(
            "warning: {} prediction(s) in {} repeat an earlier image/question and were ignored (first: {}:{})",
            matching.duplicates.len(),
            args.predictions.display(),
            args.predictions.display(),
            predictions.lines[first].line
        );
    }
    if !matching.missing.is_empty() {
        eprintln!(
            "warning: {} manifest record(s) have no prediction:",
            matching.missing.len()
        );
        for &r in matching.missing.iter().take(SHOW) {
            eprintln!("  {}: {}", records[r].source, records[r].image.display());
        }
    }
    let errors = matching
        .pairs
        .iter()
        .filter(|&&(_, p)| predictions.lines[p].is_error)
        .count();
    if errors > 0 && !args.quiet {
        eprintln!("note: {errors} matched prediction(s) were errors and count as empty outputs");
    }
}
