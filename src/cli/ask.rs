//! `fusecap ask`: answer questions about one image.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::common::{exit_code, progress_bar};
use super::decode::{print_ranked, run_queries, warn_truncation, DecodeArgs};
use super::model_args::ModelArgs;
use super::output::{OutputArgs, OutputRecord, Printer};
use crate::pipeline::{image_pixels, Query};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap ask samples/red-circle.png \"what color is the shape?\"
  fusecap ask samples/scene-1.png --questions samples/questions.txt --format jsonl
  fusecap ask img.png \"is there a star?\" --model scenes-concat
  fusecap ask img.png \"what shape is it?\" --beams 3 --num-return 3 --format jsonl
  fusecap ask img.png \"what color is it?\" --temperature 0.7 --top-k 5 --seed 1
  fusecap ask img.png --questions samples/questions.txt --stream
  fusecap ask img.png \"what is in the image?\" --no-repeat-ngram 2 --max-new-tokens 8

With --num-return N, each question gets N records (rank 1 = best).")]
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
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the questions file", path.display()))?;
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
    args.decode.check(args.output.format)?;
    let questions = match (&args.question, &args.questions) {
        (Some(q), _) => vec![q.clone()],
        (None, Some(file)) => read_questions(file)?,
        (None, None) => bail!("give a question or --questions FILE"),
    };
    let (md, device) = args.model.load()?;
    warn_truncation(&md, &questions, args.decode.max_new_tokens)?;
    let image = args.image.display().to_string();
    let base = OutputRecord {
        image: image.clone(),
        ..OutputRecord::of_model("vqa", &md)
    };
    let format = args.output.format;
    let mut printer = Printer::new(format);
    let progress = progress_bar(questions.len(), args.output.quiet);
    let pixels = match image_pixels(&md, &args.image) {
        Ok(p) => p,
        Err(e) => {
            printer.print(
                &OutputRecord {
                    error: Some(format!("{e:#}")),
                    ..base
                },
                &progress,
            )?;
            return Ok(exit_code(1));
        }
    };
    let opts = args.decode.options();
    // Streaming shows one answer at a time, so it asks one question at a time.
    let batch_size = if args.decode.stream {
        1
    } else {
        args.decode.batch_size
    };
    for chunk in questions.chunks(batch_size) {
        let queries: Vec<Query> = chunk
            .iter()
            .map(|q| Query {
                pixels: pixels.clone(),
                text: q.clone(),
            })
            .collect();
        let start = Instant::now();
        let prefix = args
            .decode
            .stream
            .then(|| format!("{image}\t{}\t", chunk[0]));
        let results = run_queries(&md, &queries, &opts, &device, prefix)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0 / results.len() as f64;
        for (question, answers) in chunk.iter().zip(results) {
            if !args.decode.stream {
                for (i, answer) in answers.into_iter().enumerate() {
                    let record = OutputRecord {
                        question: Some(question.clone()),
                        output: Some(answer.text),
                        logprob: Some(answer.logprob),
                        ms: Some(ms),
                        ..base.clone()
                    };
                    let rank = (opts.num_return > 1).then_some(i + 1);
                    print_ranked(&mut printer, format, &record, rank, &progress)?;
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(exit_code(printer.failures))
}
