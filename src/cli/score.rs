//! `fusecap score`: score predictions from any system against a manifest.
//!
//! Predictions are JSONL, one `{"image", "output", "question"?}` object per line
//! (what `fusecap caption/ask --format jsonl` writes; other fields are ignored).
//! A line with an `"error"` and no `"output"` is scored as an empty prediction.
//! A prediction matches a manifest record by image path (both sides made
//! absolute and canonical) and, for VQA, by question text (case and spacing
//! ignored).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::data::manifest::{load_manifest, parse_object, Record, Task};
use crate::metrics::{caption_scores, vqa_scores, CaptionScores, VqaItem, VqaScores};

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

/// Everything `score` found, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub predictions: String,
    pub manifest: String,
    pub split: Option<String>,
    /// Manifest records that got a prediction.
    pub matched: usize,
    /// Prediction lines that match no manifest record (or could not be read).
    pub unmatched_predictions: usize,
    /// Manifest records (in the split) without a prediction.
    pub missing_predictions: usize,
    /// Matched predictions that were errors, scored as empty.
    pub error_predictions: usize,
    pub caption: Option<CaptionScores>,
    pub vqa: Option<VqaScores>,
}

pub fn run(args: ScoreArgs) -> Result<ExitCode> {
    let manifest = load_manifest(&args.data)?;
    report_problems("manifest", &args.data, &manifest.problems);
    let predictions = read_predictions(&args.predictions)?;
    report_problems("predictions", &args.predictions, &predictions.problems);

    let records: Vec<&Record> = match &args.split {
        Some(split) => manifest
            .records
            .iter()
            .filter(|r| r.in_split(split))
            .collect(),
        None => manifest.records.iter().collect(),
    };
    if records.is_empty() {
        if let Some(split) = &args.split {
            bail!(
                "manifest {} has no records in split \"{split}\": check --split (records without a split count as \"train\")",
                args.data.display()
            );
        }
    }

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

    let report = build_report(&args, &records, &predictions, &matching);
    print!("{}", render_table(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- predictions

/// One line of the predictions file, as far as scoring cares.
#[derive(Deserialize)]
struct PredictionLine {
    image: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

struct Prediction {
    key: Key,
    image: String,
    output: String,
    is_error: bool,
    line: usize,
}

struct Predictions {
    lines: Vec<Prediction>,
    problems: Vec<String>,
}

/// Reads the predictions file; lines that cannot be used become problems.
fn read_predictions(path: &Path) -> Result<Predictions> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read predictions {}: check the path (write it with `fusecap caption ... --format jsonl > FILE`)",
            path.display()
        )
    })?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut out = Predictions {
        lines: Vec::new(),
        problems: Vec::new(),
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_prediction(line, index + 1, &cwd) {
            Ok(p) => out.lines.push(p),
            Err(message) => {
                out.problems
                    .push(format!("{}:{}: {message}", path.display(), index + 1))
            }
        }
    }
    if out.lines.is_empty() {
        let first = out
            .problems
            .first()
            .map(String::as_str)
            .unwrap_or("the file is empty");
        bail!(
            "predictions {} hold no usable line ({first}); each line must be a JSON object with \"image\" and \"output\"",
            path.display()
        );
    }
    Ok(out)
}

fn parse_prediction(line: &str, line_no: usize, cwd: &Path) -> Result<Prediction, String> {
    let parsed: PredictionLine = parse_object(line).map_err(|e| {
        format!("not a prediction record ({e}); expected {{\"image\": ..., \"output\": ...}}")
    })?;
    let is_error = parsed.output.is_none() && parsed.error.is_some();
    if parsed.output.is_none() && !is_error {
        return Err("has neither \"output\" nor \"error\"".to_string());
    }
    Ok(Prediction {
        key: Key::new(
            &canonical(Path::new(&parsed.image), cwd),
            parsed.question.as_deref(),
        ),
        image: parsed.image,
        output: parsed.output.unwrap_or_default(),
        is_error,
        line: line_no,
    })
}

// ---------------------------------------------------------------- matching

/// What identifies a prediction: the image and, for VQA, the question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    image: PathBuf,
    question: Option<String>,
}

impl Key {
    fn new(image: &Path, question: Option<&str>) -> Self {
        let question = question.map(|q| {
            q.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        });
        Key {
            image: image.to_path_buf(),
            question,
        }
    }

    fn of_record(record: &Record, cwd: &Path) -> Self {
        let question = match &record.task {
            Task::Caption { .. } => None,
            Task::Vqa { question, .. } => Some(question.as_str()),
        };
        Key::new(&canonical(&record.image, cwd), question)
    }
}

/// The file's canonical path if it exists, else `path` made absolute against
/// `cwd` with `.` and `..` resolved lexically.
fn canonical(path: &Path, cwd: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let mut out = PathBuf::new();
    for component in cwd.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

struct Matching {
    /// (record index, prediction index)
    pairs: Vec<(usize, usize)>,
    /// Record indices without a prediction.
    missing: Vec<usize>,
    /// Prediction indices that no record used.
    unused: Vec<usize>,
    /// Prediction indices that repeat an earlier prediction's key.
    duplicates: Vec<usize>,
}

fn match_records(records: &[&Record], predictions: &[Prediction]) -> Matching {
    let mut by_key: HashMap<&Key, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (i, p) in predictions.iter().enumerate() {
        if by_key.contains_key(&p.key) {
            duplicates.push(i);
        } else {
            by_key.insert(&p.key, i);
        }
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut used = vec![false; predictions.len()];
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (r, record) in records.iter().enumerate() {
        match by_key.get(&Key::of_record(record, &cwd)) {
            Some(&p) => {
                used[p] = true;
                pairs.push((r, p));
            }
            None => missing.push(r),
        }
    }
    duplicates.iter().for_each(|&i| used[i] = true);
    let unused = (0..predictions.len()).filter(|&i| !used[i]).collect();
    Matching {
        pairs,
        missing,
        unused,
        duplicates,
    }
}

// ---------------------------------------------------------------- scoring

fn build_report(
    args: &ScoreArgs,
    records: &[&Record],
    predictions: &Predictions,
    matching: &Matching,
) -> ScoreReport {
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    let mut items = Vec::new();
    let mut error_predictions = 0;
    for &(r, p) in &matching.pairs {
        let prediction = &predictions.lines[p];
        error_predictions += usize::from(prediction.is_error);
        match &records[r].task {
            Task::Caption { captions } => {
                hyps.push(prediction.output.clone());
                refs.push(captions.clone());
            }
            Task::Vqa {
                answer,
                answers,
                question_type,
                ..
            } => items.push(VqaItem {
                prediction: prediction.output.clone(),
                answer: answer.clone(),
                answers: answers.clone(),
                question_type: question_type.clone(),
            }),
        }
    }
    ScoreReport {
        predictions: args.predictions.display().to_string(),
        manifest: args.data.display().to_string(),
        split: args.split.clone(),
        matched: matching.pairs.len(),
        unmatched_predictions: matching.unused.len()
            + matching.duplicates.len()
            + predictions.problems.len(),
        missing_predictions: matching.missing.len(),
        error_predictions,
        caption: (!hyps.is_empty()).then(|| caption_scores(&hyps, &refs)),
        vqa: (!items.is_empty()).then(|| vqa_scores(&items)),
    }
}

// ---------------------------------------------------------------- output

fn report_problems(what: &str, path: &Path, problems: &[impl std::fmt::Display]) {
    if problems.is_empty() {
        return;
    }
    eprintln!(
        "warning: skipped {} unreadable line(s) in {what} {}:",
        problems.len(),
        path.display()
    );
    for p in problems.iter().take(SHOW) {
        eprintln!("  {p}");
    }
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

/// The human-readable summary printed on stdout.
fn render_table(report: &ScoreReport) -> String {
    let mut out = String::new();
    if let Some(c) = &report.caption {
        let _ = writeln!(out, "captions (n = {})", c.n);
        for (k, b) in c.bleu.iter().enumerate() {
            let _ = writeln!(out, "  {:<14}{b:.4}", format!("BLEU-{}", k + 1));
        }
        let _ = writeln!(out, "  {:<14}{:.4}", "CIDEr-D", c.cider_d);
        let _ = writeln!(out, "  {:<14}{:.4}", "ROUGE-L", c.rouge_l);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", c.exact_match);
    }
    if let Some(v) = &report.vqa {
        let _ = writeln!(out, "VQA (n = {})", v.n);
        let _ = writeln!(out, "  {:<14}{:.4}", "accuracy", v.accuracy);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", v.exact_match);
        if !v.per_type.is_empty() {
            let width = v.per_type.keys().map(String::len).max().unwrap_or(0).max(4);
            let _ = writeln!(out, "  per question type:");
            let _ = writeln!(out, "    {:<width$}  accuracy  n", "type");
            for (kind, (acc, n)) in &v.per_type {
                let _ = writeln!(out, "    {kind:<width$}  {acc:<8.4}  {n}");
            }
        }
    }
    out
}

fn write_json(path: &Path, report: &ScoreReport) -> Result<()> {
    let text = serde_json::to_string_pretty(report).context("cannot serialise the scores")?;
    std::fs::write(path, text + "\n").with_context(|| {
        format!(
            "cannot write scores to {}: check that its folder exists and is writable",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{canonical, Key};
    use std::path::Path;

    #[test]
    fn canonical_resolves_dots_for_missing_files() {
        let cwd = Path::new("/no/such/dir");
        assert_eq!(
            canonical(Path::new("./a/../b/c.png"), cwd),
            Path::new("/no/such/dir/b/c.png")
        );
        assert_eq!(
            canonical(Path::new("/x/./y.png"), cwd),
            Path::new("/x/y.png")
        );
    }

    #[test]
    fn question_keys_ignore_case_and_spacing() {
        let a = Key::new(Path::new("/i.png"), Some("What  color is it?"));
        let b = Key::new(Path::new("/i.png"), Some(" what color is it? "));
        assert_eq!(a, b);
        assert_ne!(a, Key::new(Path::new("/i.png"), None));
    }
}
