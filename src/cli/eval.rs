//! `fusecap eval`: run one model over a manifest's records and report every metric.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::common::{
    check_counts, check_limit, exit_code, progress_bar, warn_failures, warn_problems,
};
use super::model_args::ModelArgs;
use crate::data::manifest::load_manifest;
use crate::generate::DEFAULT_MAX_NEW_TOKENS;
use crate::pipeline::DEFAULT_BATCH_SIZE;
use crate::report::eval_report::EvalReport;
use crate::report::evaluation::{evaluate, EvalOptions};
use crate::report::records::select_records;
use crate::report::write::write_json;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap eval --model models/pretrained-gated --data data/scenes/manifest.jsonl
  fusecap eval --model scenes-concat --data data/easy-vqa/manifest.jsonl --limit 500 --json eval.json
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
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Longest output, in tokens.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// How many of the worst answers and of the worst captions to show.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub worst: usize,
    /// No progress bar and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
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
    let report = EvalReport::new(
        &md,
        &args.data,
        &args.split,
        records.len(),
        evaluation,
        args.worst,
        args.max_new_tokens,
    )?;
    print!("{}", report.render());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        if !args.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(exit_code(report.failed))
}
