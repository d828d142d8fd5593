//! `fusecap ask`: answer questions about one image.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::decode::DecodeArgs;
use super::common::{exit_code, progress_bar, ModelArgs, OutputArgs, OutputRecord, Printer};
use crate::data::image::Preprocess;
use crate::generate::{answer_batch, Query};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap ask samples/red-circle.png \"what color is the shape?\"
  fusecap ask samples/scene-1.png --questions samples/questions.txt --format jsonl
  fusecap ask img.png \"is there a star?\" --fusion concat")]
pub struct AskArgs {
    /// The image to ask about.
    pub image: PathBuf,
    /// The question.
    #[arg(required_unless_present = "questions", conflicts_with = "questions")]
    pub question: Option<String>,
    /// A file with one question per line (empty lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub questions: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

pub fn read_questions(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the questions file", path.display()))?;
    let questions: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if questions.is_empty() {
        bail!("{}: no questions (write one per line)", path.display());
    }
    Ok(questions)
}

pub fn run(args: AskArgs) -> Result<ExitCode> {
    if args.decode.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let questions = match (&args.question, &args.questions) {
        (Some(q), _) => vec![q.clone()],
        (None, Some(file)) => read_questions(file)?,
        (None, None) => bail!("give a question or --questions FILE"),
    };
    let (md, device) = args.model.load()?;
    let image = args.image.display().to_string();
    let base = OutputRecord { image: image.clone(), task: "vqa", fusion: md.model.cfg.fusion.to_string(), model: md.name.clone(), ..Default::default() };
    let mut printer = Printer::new(args.output.format);
    let progress = progress_bar(questions.len(), args.output.quiet);
    let pixels = match Preprocess::from_config(&md.model.cfg).load(&args.image) {
        Ok(p) => p,
        Err(e) => {
            printer.print(&OutputRecord { error: Some(format!("{e:#}")), ..base }, &progress)?;
            return Ok(exit_code(1));
        }
    };
    let opts = args.decode.options();
    for chunk in questions.chunks(args.decode.batch_size) {
        let queries: Vec<Query> = chunk.iter().map(|q| Query { pixels: pixels.clone(), text: q.clone() }).collect();
        let start = Instant::now();
        let answers = answer_batch(&md, &queries, &opts, &device)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0 / answers.len() as f64;
        for (question, answer) in chunk.iter().zip(answers) {
            let record = OutputRecord {
                question: Some(question.clone()),
                output: Some(answer.text),
                logprob: Some(answer.logprob),
                ms: Some(ms),
                ..base.clone()
            };
            printer.print(&record, &progress)?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(exit_code(printer.failures))
}
