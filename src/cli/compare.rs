//! `fusecap compare`: evaluate several models on exactly the same records and
//! print them side by side.
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use serde::Serialize;

use super::common::{
    check_counts, check_limit, exit_code, parse_device, progress_bar, shipped_model, warn_failures,
    warn_problems,
};
use super::fusion_arg::FusionList;
use crate::data::manifest::{load_manifest, Record, Task};
use crate::model::dir::{load_config, ModelDir, CONFIG_FILE};
use crate::plot::{grouped_bars, BarSeries};
use crate::report::comparison::{
    disagreements, measure_speed, model_report, Disagreement, ModelReport,
};
use crate::report::evaluation::{evaluate, EvalOptions};
use crate::report::records::select_records;
use crate::report::text::{quoted_list, thousands};
use crate::report::write::write_json;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap compare --fusion all --data data/scenes/manifest.jsonl
  fusecap compare --models runs/concat runs/gated --data data/easy-vqa/manifest.jsonl --limit 1000 --json cmp.json --plot cmp.png
  fusecap compare --fusion concat,gated --data data/scenes/manifest.jsonl --disagreements 10 --plot cmp.svg

Prints one Markdown table, one row per model: fusion, parameter counts, caption metrics,
VQA accuracy overall and per question type, ms/image at batch 1 and at --batch-size,
the process's peak memory, for concat models the share of cross-attention on image vs
text tokens per question type, and for gated models the learned gates per layer. Then up
to --disagreements records where the models' outputs differ, with each model's output.
--plot draws VQA accuracy per question type per model (PNG, or SVG by extension).

Exit codes: 0 compared, 1 some images could not be read (scored as empty outputs), 2 fatal error.")]
pub struct CompareArgs {
    /// Model directories to compare.
    #[arg(long, num_args = 1.., value_name = "DIR", required_unless_present = "fusion", conflicts_with = "fusion")]
    pub models: Vec<PathBuf>,
    /// Compare the shipped models (models/scenes-FUSION): "all", or a comma-separated list such as concat,gated.
    #[arg(long, value_name = "all|LIST")]
    pub fusion: Option<FusionList>,
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
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Records timed, one at a time and in batches, for the speed columns (the first ones).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub speed_samples: usize,
    /// Longest output, in tokens.
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: usize,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How `compare` runs each model.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub eval: EvalOptions,
    pub speed_samples: usize,
    pub disagreements: usize,
    pub quiet: bool,
}

/// Everything `compare` found; `--json` writes exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub manifest: String,
    pub split: String,
    pub records: usize,
    pub questions: usize,
    pub captions: usize,
    pub models: Vec<ModelReport>,
    /// Records on which the models' normalised outputs differ.
    pub disagreement_count: usize,
    /// The first of them (those where the scores differ come first).
    pub disagreements: Vec<Disagreement>,
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    check_counts(&[
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
        ("--speed-samples", args.speed_samples),
    ])?;
    check_limit(args.limit)?;
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
        quiet: args.quiet,
    };
    if let Some(path) = &args.curves {
        plot_curves(&dirs, path)?;
    }
    let report = compare(&dirs, &records, &opts, &device, &args.data, &args.split)?;
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
    crate::train::curves::val_accuracy_curves(&logs, out)
}

/// `--models` as given, or the shipped models of `--fusion`.
fn model_dirs(args: &CompareArgs) -> Result<Vec<PathBuf>> {
    let dirs = match &args.fusion {
        Some(list) => list
            .0
            .iter()
            .map(|f| shipped_model(&format!("scenes-{f}")))
            .collect::<Result<Vec<_>>>()?,
        None => args.models.clone(),
    };
    if dirs.is_empty() {
        bail!("nothing to compare: pass --models DIR... or --fusion all");
    }
    // Check every model before spending time on the first.
    for dir in &dirs {
        if !dir.is_dir() {
            bail!("model directory {} does not exist; check --models (each a folder with config.json, model.safetensors, tokenizer.json)", dir.display());
        }
        load_config(&dir.join(CONFIG_FILE))?;
    }
    Ok(dirs)
}

/// Evaluates each model in turn on the same records and puts the results together.
pub fn compare(
    dirs: &[PathBuf],
    records: &[&Record],
    opts: &CompareOptions,
    device: &Device,
    manifest: &Path,
    split: &str,
) -> Result<CompareReport> {
    let mut models: Vec<ModelReport> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let md = ModelDir::load(dir, device)?;
        let taken: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let name = unique_name(&md.name, dir, &taken);
        models.push(run_model(&md, name, records, opts, device)?);
    }
    let all = disagreements(&models);
    let questions = records
        .iter()
        .filter(|r| matches!(r.task, Task::Vqa { .. }))
        .count();
    Ok(CompareReport {
        manifest: manifest.display().to_string(),
        split: split.to_string(),
        records: records.len(),
        questions,
        captions: records.len() - questions,
        models,
        disagreement_count: all.len(),
        disagreements: all.into_iter().take(opts.disagreements).collect(),
    })
}

/// The directory's name, or its whole path when another model already has that name.
fn unique_name(name: &str, dir: &Path, taken: &[&str]) -> String {
    if !taken.contains(&name) {
        return name.to_string();
    }
    let path = dir.display().to_string();
    if !taken.contains(&path.as_str()) {
        return path;
    }
    (2..)
        .map(|i| format!("{name}#{i}"))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_else(|| name.to_string())
}

/// One model: the batched run (predictions, metrics, attention shares),
/// then the speed at batch 1 and batched on the first records.
fn run_model(
    md: &ModelDir,
    name: String,
    records: &[&Record],
    opts: &CompareOptions,
    device: &Device,
) -> Result<ModelReport> {
    if !opts.quiet {
        eprintln!(
            "evaluating {name} ({} fusion) on {} record(s)",
            md.model.cfg.fusion,
            records.len()
        );
    }
    let bar = progress_bar(records.len(), opts.quiet);
    let evaluation = evaluate(md, records, &opts.eval, device, &bar)?;
    bar.finish_and_clear();
    if !opts.quiet {
        warn_failures(&evaluation.predictions);
    }
    let samples = opts.speed_samples.min(records.len());
    let speed = measure_speed(md, &records[..samples], &opts.eval, device)?;
    model_report(md, name, evaluation, speed)
}

// ---------------------------------------------------------------- Markdown

/// The comparison as Markdown: the table, notes on what its columns mean, and
/// the disagreements.
pub fn render_markdown(report: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Comparison on {} (split \"{}\"): {} record(s), {} question(s), {} caption(s)\n",
        report.manifest, report.split, report.records, report.questions, report.captions
    );
    render_table(&mut out, report);
    render_notes(&mut out, report);
    render_disagreements(&mut out, report);
    out
}

/// The question types, in order, that any model has a per-type score for.
fn question_types(models: &[ModelReport]) -> Vec<(String, usize)> {
    let mut types: BTreeSet<(String, usize)> = BTreeSet::new();
    for m in models {
        for (k, s) in &m.metrics.vqa_per_type {
            types.insert((k.clone(), s.n));
        }
    }
    let mut seen = BTreeSet::new();
    types
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

/// Which optional columns the table has.
struct Columns {
    /// Question types with their counts.
    types: Vec<(String, usize)>,
    vqa: bool,
    captions: bool,
    concat: bool,
    gates: bool,
}

impl Columns {
    fn of(models: &[ModelReport]) -> Self {
        Columns {
            types: question_types(models),
            vqa: models.iter().any(|m| m.metrics.vqa.is_some()),
            captions: models.iter().any(|m| m.metrics.caption.is_some()),
            concat: models.iter().any(|m| m.modality_share.is_some()),
            gates: models.iter().any(|m| m.gate_values.is_some()),
        }
    }

    fn header(&self, models: &[ModelReport]) -> Vec<String> {
        let mut header: Vec<String> = ["model", "fusion", "parameters", "cross-attn parameters"]
            .map(String::from)
            .to_vec();
        if self.vqa {
            let n = models
                .iter()
                .find_map(|m| m.metrics.vqa.as_ref())
                .map_or(0, |v| v.n);
            header.push(format!("VQA accuracy (n={n})"));
            header.extend(self.types.iter().map(|(k, n)| format!("{k} (n={n})")));
        }
        if self.captions {
            header
                .extend(["BLEU-4", "CIDEr-D", "ROUGE-L", "caption exact match"].map(String::from));
        }
        let batch = models.first().map_or(0, |m| m.batch_size);
        header.extend([
            "ms/image, batch 1".to_string(),
            format!("ms/image, batch {batch}"),
            "process peak memory".into(),
        ]);
        if self.concat {
            header.push("attention image / text / sink (concat)".into());
        }
        if self.gates {
            header.push("gates vision / text per layer".into());
        }
        header
    }

    fn row(&self, m: &ModelReport) -> Vec<String> {
        const NONE: &str = "–";
        let mut row = vec![
            m.name.clone(),
            m.fusion.to_string(),
            thousands(m.parameters),
            thousands(m.cross_attention_parameters),
        ];
        if self.vqa {
            row.push(
                m.metrics
                    .vqa
                    .as_ref()
                    .map_or(NONE.into(), |v| percent(v.accuracy)),
            );
            for (kind, _) in &self.types {
                let score = m.metrics.vqa_per_type.get(kind);
                row.push(score.map_or(NONE.into(), |s| percent(s.accuracy)));
            }
        }
        if self.captions {
            match &m.metrics.caption {
                Some(c) => row.extend([
                    format!("{:.3}", c.bleu[3]),
                    format!("{:.3}", c.cider_d),
                    format!("{:.3}", c.rouge_l),
                    percent(c.exact_match),
                ]),
                None => row.extend(vec![NONE.to_string(); 4]),
            }
        }
        row.push(format!("{:.2}", m.ms_per_image_batch1));
        row.push(format!("{:.2}", m.ms_per_image_batched));
        row.push(
            m.process_peak_memory_bytes
                .map_or("unknown".into(), mebibytes),
        );
        if self.concat {
            row.push(m.modality_share.as_ref().map_or(NONE.into(), |shares| {
                let parts: Vec<String> = shares
                    .iter()
                    .map(|(k, s)| {
                        format!(
                            "{k} {:.0}/{:.0}/{:.0}%",
                            100.0 * s.image,
                            100.0 * s.text,
                            100.0 * s.sink
                        )
                    })
                    .collect();
                parts.join("; ")
            }));
        }
        if self.gates {
            row.push(m.gate_values.as_ref().map_or(NONE.into(), |gates| {
                let parts: Vec<String> = gates
                    .iter()
                    .map(|g| format!("L{} {:.3} / {:.3}", g.layer, g.vision, g.text))
                    .collect();
                parts.join("; ")
            }));
        }
        row
    }
}

fn render_table(out: &mut String, report: &CompareReport) {
    let columns = Columns::of(&report.models);
    let header = columns.header(&report.models);
    write_row(out, &header);
    write_row(out, &vec!["---".to_string(); header.len()]);
    for m in &report.models {
        write_row(out, &columns.row(m));
    }
}

fn write_row(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| escape_cell(c)).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

/// Keeps a table cell on one line and its pipes literal.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render_notes(out: &mut String, report: &CompareReport) {
    let samples = report.models.first().map_or(0, |m| m.speed_samples);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- ms/image: greedy decoding with the encoders (image files already read), timed after the evaluation run on the same first {samples} record(s), one at a time and in batches."
    );
    let _ = writeln!(
        out,
        "- process peak memory: VmHWM of the whole fusecap process after that model ran; the models run one after another in one process, so it never decreases and is not a per-model figure."
    );
    if report.models.iter().any(|m| m.modality_share.is_some()) {
        let _ = writeln!(
            out,
            "- attention image / text / sink: mean share of the cross-attention mass on image keys, text keys and the attention sink (the learned key a query can fall back on when nothing matches), over heads, layers and decoding steps, per question type (\"caption\" = caption records)."
        );
    }
    if report.models.iter().any(|m| m.gate_values.is_some()) {
        let _ = writeln!(out, "- gates: tanh(alpha) of each decoder layer's vision and text cross-attention (0 = closed).");
    }
    if report.models.iter().any(|m| m.metrics.caption.is_some()) {
        let _ = writeln!(out, "- CIDEr-D is on pycocoevalcap's scale (×10).");
    }
    let failed: usize = report.models.iter().map(|m| m.failed).max().unwrap_or(0);
    if failed > 0 {
        let _ = writeln!(
            out,
            "- {failed} record(s) could not be read and count as empty outputs for every model."
        );
    }
}

fn render_disagreements(out: &mut String, report: &CompareReport) {
    if report.models.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Disagreements ({} of {} shown)\n",
        report.disagreements.len(),
        report.disagreement_count
    );
    if report.disagreement_count == 0 {
        let _ = writeln!(out, "The models' outputs agree on every record.");
    }
    for (i, d) in report.disagreements.iter().enumerate() {
        let question = d
            .question
            .as_deref()
            .map(|q| format!(" — {q}"))
            .unwrap_or_default();
        let show = if d.task == "vqa" { 3 } else { 1 };
        let _ = writeln!(
            out,
            "{}. `{}`{question} (expected {})",
            i + 1,
            d.image,
            quoted_list(&d.references, show)
        );
        for o in &d.outputs {
            let _ = writeln!(
                out,
                "   - {}: \"{}\" (score {:.2})",
                o.model, o.output, o.score
            );
        }
    }
}

// ---------------------------------------------------------------- plot

/// Grouped bars: VQA accuracy per question type (and over all questions), one bar per model.
pub fn plot_accuracy(report: &CompareReport, path: &Path) -> Result<()> {
    let types = question_types(&report.models);
    let mut groups = vec!["all questions".to_string()];
    groups.extend(types.iter().map(|(k, _)| k.clone()));
    let series: Vec<BarSeries> = report
        .models
        .iter()
        .map(|m| {
            let mut values = vec![m.metrics.vqa.as_ref().map(|v| v.accuracy)];
            values.extend(
                types
                    .iter()
                    .map(|(k, _)| m.metrics.vqa_per_type.get(k).map(|s| s.accuracy)),
            );
            BarSeries {
                name: m.name.clone(),
                values,
            }
        })
        .collect();
    grouped_bars(
        path,
        "VQA accuracy per question type",
        "accuracy",
        &groups,
        &series,
        1.0,
    )
}

#[cfg(test)]
mod tests {
    use super::unique_name;
    use std::path::Path;

    #[test]
    fn repeated_model_names_fall_back_to_paths() {
        assert_eq!(unique_name("m", Path::new("a/m"), &[]), "m");
        assert_eq!(unique_name("m", Path::new("a/m"), &["m"]), "a/m");
        assert_eq!(unique_name("m", Path::new("a/m"), &["m", "a/m"]), "m#2");
    }
}
