//! `fusecap init`: write a randomly initialised model directory.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;

use super::recipe::load_architecture;
use crate::model::dir::{init_model_with_words, parameter_count, save_model_dir, CONFIG_FILE};
use crate::model::{Config, Fusion};
use crate::tokenizer::TextTokenizer;

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Size {
    /// For tests: d 32, 16×16 images.
    Tiny,
    /// The shipped size: d 128, 64×64 images, 16×16 patches.
    Small,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap init --fusion concat --out runs/untrained
  fusecap init --fusion gated --out runs/g --vocab-from data/scenes/manifest.jsonl --seed 7
  fusecap init --fusion separate --out runs/s --config my-config.json")]
pub struct InitArgs {
    #[arg(long, value_enum)]
    pub fusion: Fusion,
    /// The model directory to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Vocabulary source: a tokenizer.json, a JSONL manifest, or a plain text file.
    #[arg(long, value_name = "FILE")]
    pub vocab_from: Option<PathBuf>,
    /// Seed for the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Architecture preset (ignored with --config).
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// A config.json to take the architecture from (fusion and vocab_size
    /// come from --fusion and the tokenizer, so the file may leave them out).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overwrite an existing model directory.
    #[arg(long)]
    pub force: bool,
    /// No notes on stderr (warnings and errors still go there).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Builds a tokenizer from a tokenizer.json, a JSONL manifest (every text field) or plain text.
pub fn tokenizer_from(path: &Path) -> Result<TextTokenizer> {
    if path.extension().is_some_and(|e| e == "json") {
        return TextTokenizer::load(path);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the vocabulary source", path.display()))?;
    let mut texts: Vec<String> = Vec::new();
    if path.extension().is_some_and(|e| e == "jsonl") {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
            collect_text(&value, &mut texts);
        }
    } else {
        texts.push(text);
    }
    texts.push(crate::tokenizer::DEFAULT_WORDS.to_string());
    TextTokenizer::train(texts.iter().map(String::as_str), 1)
}

/// Every string in a manifest record that is text the model reads or writes.
fn collect_text(value: &serde_json::Value, out: &mut Vec<String>) {
    const NOT_TEXT: [&str; 4] = ["image", "split", "task", "question_type"];
    if let serde_json::Value::Object(map) = value {
        for (key, v) in map {
            match v {
                serde_json::Value::String(s) if !NOT_TEXT.contains(&key.as_str()) => {
                    out.push(s.clone())
                }
                serde_json::Value::Array(items) => {
                    out.extend(items.iter().filter_map(|i| i.as_str().map(String::from)))
                }
                _ => {}
            }
        }
    }
}

pub fn run(args: InitArgs) -> Result<ExitCode> {
    if args.out.join(CONFIG_FILE).exists() && !args.force {
        bail!(
            "{} already holds a model; pass --force to overwrite it",
            args.out.display()
        );
    }
    let tokenizer = match &args.vocab_from {
        Some(path) => tokenizer_from(path)?,
        None => TextTokenizer::default_vocabulary()?,
    };
    let vocab = tokenizer.vocab_size();
    let cfg = match (&args.config, args.size) {
        (Some(path), _) => load_architecture(path, args.fusion, vocab)?,
        (None, Size::Tiny) => Config::tiny(args.fusion, vocab),
        (None, Size::Small) => Config::small(args.fusion, vocab),
    };
    let (_, varmap) = init_model_with_words(&cfg, &tokenizer.words(), args.seed, &Device::Cpu)?;
    save_model_dir(&args.out, &cfg, &varmap, &tokenizer, DType::F32)?;
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "wrote {} ({} fusion, {} parameters, {} tokens, untrained)",
        args.out.display(),
        cfg.fusion,
        parameter_count(&varmap, |_| true),
        vocab
    );
    Ok(ExitCode::SUCCESS)
}
