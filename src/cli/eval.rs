//! `fusecap eval`: run one model over a manifest's records and report every metric.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::common::{
    check_counts, check_limit, exit_code, progress_bar, warn_failures, warn_problems, ModelArgs,
};
use crate::data::manifest::load_manifest;
use crate::model::Fusion;
use crate::report::binding::{binding_report, scenes_beside, BindingReport, Share};
use crate::report::evaluation::{evaluate, EvalOptions};
use crate::report::facts::parameter_counts;
use crate::report::metrics::{metrics, worst, Metrics};
use crate::report::prediction::Prediction;
use crate::report::records::select_records;
use crate::report::text::{quoted_list, thousands};
use crate::report::write::write_json;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap eval --model models/scenes-gated --data data/scenes/manifest.jsonl
  fusecap eval --fusion concat --data data/easy-vqa/manifest.jsonl --limit 500 --json eval.json
  fusecap eval --model runs/gated --data data/scenes/manifest.jsonl --split val --quiet

Prints, on stdout, caption metrics (BLEU-1..4, CIDEr-D, ROUGE-L, exact match) over the
caption records and VQA accuracy and exact match over the questions, overall and per
question type; the five worst answers and captions (lowest score, most confident first);
and the decoding speed in ms per image (greedy, encoder included, file reading excluded).
--json writes the same report plus every prediction.

Exit codes: 0 evaluated, 1 some images could not be read (scored as empty outputs), 2 fatal error.")]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The manifest holding the references (JSONL, as `fusecap data` writes).
    #[arg(long, value_name = "MANIFEST")]
    pub data: PathBuf,
    /// Evaluate the records of this split (records without a split count as "train").
    /// "val" in a manifest without "val" records is what `train` holds out from "train".
    #[arg(long, default_value = "test", value_name = "NAME")]
    pub split: String,
    /// Evaluate only the first N records of the split.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also write the report and every prediction as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Records per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Longest output, in tokens.
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: usize,
    /// How many of the worst answers and of the worst captions to show.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub worst: usize,
    /// No progress bar and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `eval` reports; `--json` writes exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub path: String,
    pub fusion: Fusion,
    pub parameters: usize,
    pub manifest: String,
    pub split: String,
    pub records: usize,
    /// Records whose image could not be read (scored as empty outputs).
    pub failed: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Accuracy by object count, where the manifest has a `scenes.jsonl` beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingReport>,
    /// Mean encode + greedy decode time per image.
    pub ms_per_image: f64,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub worst_answers: Vec<Prediction>,
    pub worst_captions: Vec<Prediction>,
    pub predictions: Vec<Prediction>,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    check_counts(&[
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
    ])?;
    check_limit(args.limit)?;
    let (md, device) = args.model.load()?;
    super::decode::warn_truncation(&md, &[], args.max_new_tokens)?;
    // A record whose image is missing is scored as a failure, not dropped.
    let manifest = load_manifest(&args.data)?.with_missing_images();
    warn_problems(&args.data, &manifest.problems);
    let records = select_records(&manifest, &args.data, &args.split, args.limit)?;
    if !args.quiet {
        eprintln!(
            "evaluating {} ({} fusion) on {} record(s) of {}",
            md.name,
            md.model.cfg.fusion,
            records.len(),
            args.data.display()
        );
    }
    let opts = EvalOptions {
        batch_size: args.batch_size,
        max_new_tokens: args.max_new_tokens,
        modality_share: false,
    };
    let bar = progress_bar(records.len(), args.quiet);
    let evaluation = evaluate(&md, &records, &opts, &device, &bar)?;
    bar.finish_and_clear();
    warn_failures(&evaluation.predictions);
    let failed = evaluation.failures();
    let binding = scenes_beside(&args.data)?
        .and_then(|scenes| binding_report(&evaluation.predictions, &scenes));
    let report = EvalReport {
        model: md.name.clone(),
        path: md.path.display().to_string(),
        fusion: md.model.cfg.fusion,
        parameters: parameter_counts(&md).0,
        manifest: args.data.display().to_string(),
        split: args.split.clone(),
        records: records.len(),
        failed,
        metrics: metrics(&evaluation.predictions),
        binding,
        ms_per_image: evaluation.ms_per_image(),
        batch_size: args.batch_size,
        max_new_tokens: args.max_new_tokens,
        worst_answers: worst(&evaluation.predictions, "vqa", args.worst),
        worst_captions: worst(&evaluation.predictions, "caption", args.worst),
        predictions: evaluation.predictions,
    };
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        if !args.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(exit_code(failed))
}

/// The human-readable report printed on stdout.
pub fn render(report: &EvalReport) -> String {
    let mut out = String::new();
    let questions = report.predictions.iter().filter(|p| p.is_vqa()).count();
    let _ = writeln!(
        out,
        "model  {} ({} fusion, {} parameters)",
        report.model,
        report.fusion,
        thousands(report.parameters)
    );
    let _ = writeln!(
        out,
        "data   {}, split \"{}\": {} record(s), {} question(s), {} caption(s){}",
        report.manifest,
        report.split,
        report.records,
        questions,
        report.records - questions,
        if report.failed > 0 {
            format!("; {} image(s) unreadable, scored as empty", report.failed)
        } else {
            String::new()
        }
    );
    render_metrics(&mut out, &report.metrics);
    if let Some(binding) = &report.binding {
        render_binding(&mut out, binding);
    }
    let _ = writeln!(
        out,
        "\nspeed: {:.2} ms/image (batch {}, greedy, up to {} tokens, encoders included)",
        report.ms_per_image, report.batch_size, report.max_new_tokens
    );
    render_worst(&mut out, "answers", &report.worst_answers, "accuracy");
    render_worst(&mut out, "captions", &report.worst_captions, "CIDEr-D");
    out
}

fn render_binding(out: &mut String, b: &BindingReport) {
    let cell = |s: &Share| {
        if s.n == 0 {
            "-".to_string()
        } else {
            format!("{:.4} ({})", s.accuracy, s.n)
        }
    };
    let _ = writeln!(out, "\nby objects in the scene (accuracy, n)");
    let _ = writeln!(out, "    {:<10}  {:<14}  2 or more", "type", "1 object");
    for (kind, (one, several)) in &b.per_type {
        let _ = writeln!(out, "    {kind:<10}  {:<14}  {}", cell(one), cell(several));
    }
    let _ = writeln!(
        out,
        "  \"is there a <color> <shape>?\" with the colour and the shape on different objects: {}",
        cell(&b.split_conjunctions)
    );
}

fn render_metrics(out: &mut String, m: &Metrics) {
    if let Some(c) = &m.caption {
        let _ = writeln!(out, "\ncaptions (n = {})", c.n);
        for (k, b) in c.bleu.iter().enumerate() {
            let _ = writeln!(out, "  {:<14}{b:.4}", format!("BLEU-{}", k + 1));
        }
        let _ = writeln!(out, "  {:<14}{:.4}", "CIDEr-D", c.cider_d);
        let _ = writeln!(out, "  {:<14}{:.4}", "ROUGE-L", c.rouge_l);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", c.exact_match);
    }
    if let Some(v) = &m.vqa {
        let _ = writeln!(out, "\nVQA (n = {})", v.n);
        let _ = writeln!(out, "  {:<14}{:.4}", "accuracy", v.accuracy);
        let _ = writeln!(out, "  {:<14}{:.4}", "exact match", v.exact_match);
    }
    if !m.vqa_per_type.is_empty() {
        let width = m
            .vqa_per_type
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(out, "  per question type:");
        let _ = writeln!(out, "    {:<width$}  accuracy  exact match  n", "type");
        for (kind, s) in &m.vqa_per_type {
            let _ = writeln!(
                out,
                "    {kind:<width$}  {:<8.4}  {:<11.4}  {}",
                s.accuracy, s.exact_match, s.n
            );
        }
    }
}

fn render_worst(out: &mut String, what: &str, worst: &[Prediction], score: &str) {
    if worst.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{} worst {what}:", worst.len());
    for (i, p) in worst.iter().enumerate() {
        let question = p
            .question
            .as_deref()
            .map(|q| format!(" \"{q}\""))
            .unwrap_or_default();
        let expected = quoted_list(&p.references, if p.is_vqa() { 3 } else { 1 });
        let error = p
            .error
            .as_deref()
            .map(|e| format!(" [error: {e}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}. {}{question} -> \"{}\" (expected {expected}; {score} {:.2}){error}",
            i + 1,
            p.image,
            p.output,
            p.score
        );
    }
}
