//! `fusecap explain`: draw where the decoder's cross-attention looked for each
//! generated token, over the image patches and over the question's tokens.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::common::EXIT_SOME_FAILED;
use super::decode::warn_truncation;
use super::model_args::ModelArgs;
use crate::generate::DEFAULT_MAX_NEW_TOKENS;
use crate::pipeline::{decode_rgb, ModelDir};
use crate::report::attention::Layers;
use crate::report::explain::{explain, ExplainInput, GRID_FILE, JSON_FILE};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fusecap explain samples/scene-1.png --out explain/scene-1
  fusecap explain samples/red-circle.png --question \"what color is the shape?\" --out explain/q --model scenes-concat
  fusecap explain img.png --question \"is there a star?\" --model runs/gated --layer 1 --out explain/g

Writes into --out, for each generated token N (the last step is the end token):
  NN-TOKEN.png        the cross-attention over the image patches (mean over heads; the
                      layer chosen by --layer, else the mean of the layers), upsampled
                      and laid over the image; the hottest patch is red
  NN-TOKEN-text.png   a bar chart of the attention over the question's (or prompt's) tokens
and grid.png (every token's heat map and bars), attention.json (every weight drawn).
concat models attend to image and text in one softmax: the image/text share of each token
is printed and stored. separate and gated models attend to each modality separately, so
each map sums to 1 on its own; gated models' gates tanh(alpha) are printed and stored.")]
pub struct ExplainArgs {
    /// The image to explain.
    pub image: PathBuf,
    /// Ask this question (default: caption the image).
    #[arg(long)]
    pub question: Option<String>,
    /// Folder for the pictures and attention.json (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Draw this decoder layer's attention (0-based; default: the mean over layers).
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,
    /// Longest output, in tokens.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// No notes on stderr (warnings and errors still go there).
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let (md, device) = args.model.load()?;
    let questions: Vec<String> = args.question.iter().cloned().collect();
    warn_truncation(&md, &questions, args.max_new_tokens)?;
    let layers = check_layer(&md, args.layer)?;
    // As in `ask` and `caption`: an unreadable input is a failed input (exit
    // 1), not a fatal error of the run.
    let original = match decode_rgb(&args.image) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_SOME_FAILED));
        }
    };
    let input = ExplainInput {
        path: &args.image,
        image: &original,
        question: args.question.as_deref(),
    };
    let report = explain(&md, &input, layers, args.max_new_tokens, &args.out, &device)?;
    print!("{}", report.render());
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "wrote {n} heat maps, {n} bar charts, {GRID_FILE} and {JSON_FILE} to {}",
        args.out.display(),
        n = report.steps.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--layer` as a [`Layers`] choice, checked against the model.
fn check_layer(md: &ModelDir, layer: Option<usize>) -> Result<Layers> {
    let n = md.model.cfg.decoder_layers;
    match layer {
        None => Ok(Layers::Mean),
        Some(l) if l < n => Ok(Layers::Layer(l)),
        Some(l) => bail!(
            "--layer {l} does not exist: {} has {n} decoder layers; pass 0 to {} or leave --layer out for their mean",
            md.path.display(),
            n.saturating_sub(1)
        ),
    }
}
