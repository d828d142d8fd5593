//! Helpers shared by several test files.
pub mod cli;
pub mod samples;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use fusecap::data::batch::Dataset;
use fusecap::model::Config;
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{LogRecord, Outcome, TrainOptions, TrainRun};

/// Trains in-process into `out` on `threads` workers, with f32 weights and
/// `stop_after` (a step) standing in for Ctrl-C.
#[allow(clippy::too_many_arguments, dead_code)]
pub fn train_in_process(
    out: &Path,
    cfg: Config,
    tokenizer: TextTokenizer,
    (train, val): (&Dataset, &Dataset),
    options: TrainOptions,
    resume: bool,
    threads: usize,
    stop_after: Option<usize>,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let mut on_step = |r: &LogRecord| {
        if Some(r.step) == stop_after {
            stop.store(true, Ordering::SeqCst);
        }
    };
    TrainRun {
        out: out.to_path_buf(),
        cfg,
        tokenizer,
        train,
        val,
        options,
        resume,
        save_dtype: DType::F32,
        stop: &stop,
        on_step: &mut on_step,
        threads,
        device: Device::Cpu,
    }
    .run()
    .expect("train")
}

/// The largest absolute difference between two tensors of one shape.
#[allow(dead_code)]
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("max abs difference")
}

/// The sum of squares of a tensor's elements.
#[allow(dead_code)]
pub fn squared_norm(t: &Tensor) -> f32 {
    t.sqr()
        .and_then(|s| s.sum_all())
        .and_then(|s| s.to_scalar::<f32>())
        .expect("squared norm")
}
