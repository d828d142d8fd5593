//! Helpers shared by several test files.
pub mod cli;
pub mod samples;
pub mod wheels;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use fusecap::data::batch::Dataset;
use fusecap::model::Config;
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{LogRecord, Outcome, TrainOptions, TrainRun, LOG_FILE};

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

/// Back-propagates the cross-entropy of `logits` [B, T, V] against `target`
/// [B, T] and asserts that every one of `vars` gets a finite, non-zero gradient.
#[allow(dead_code)]
pub fn assert_gradients_reach(
    logits: &Tensor,
    target: &Tensor,
    vars: &[(String, candle_core::Var)],
    what: &str,
) {
    let loss = candle_nn::loss::cross_entropy(
        &logits.flatten_to(1).expect("flat"),
        &target.flatten_all().expect("flat"),
    )
    .expect("loss");
    let grads = loss.backward().expect("backward");
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {name}"));
        let norm = squared_norm(g);
        assert!(
            norm.is_finite() && norm > 0.0,
            "{what}: gradient of {name} is {norm}"
        );
    }
}

/// Sets every gate (`gate_alpha` of `gated`) to `value`; a gate at 0 passes no gradient.
#[allow(dead_code)]
pub fn set_gates(varmap: &candle_nn::VarMap, value: f32) {
    for (name, var) in fusecap::model::dir::sorted_vars(varmap) {
        if name.contains("gate_") {
            var.set(&Tensor::new(&[value], &Device::Cpu).expect("t"))
                .expect("set");
        }
    }
}

/// One AdamW step (lr 1e-3, no weight decay) on the cross-entropy of
/// `logits` [B, T, V] against `target` [B, T].
#[allow(dead_code)]
pub fn one_adamw_step(varmap: &candle_nn::VarMap, logits: &Tensor, target: &Tensor) {
    let loss = candle_nn::loss::cross_entropy(
        &logits.flatten_to(1).expect("flat"),
        &target.flatten_all().expect("flat"),
    )
    .expect("loss");
    let mut adam = fusecap::train::AdamW::new(varmap, 0.0).expect("adam");
    adam.step(&loss.backward().expect("backward"), 1e-3, 1.0)
        .expect("step");
}

/// The records of a run's `training.jsonl`.
#[allow(dead_code)]
pub fn read_log(out: &Path) -> Vec<LogRecord> {
    std::fs::read_to_string(out.join(LOG_FILE))
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect()
}

/// Two runs logged the same steps with losses and gradient norms equal up to
/// float summation order (relative 1e-4).
#[allow(dead_code)]
pub fn assert_same_loss_curve(a: &[LogRecord], b: &[LogRecord]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let close = |p: f64, q: f64| (p - q).abs() <= 1e-4 * p.abs().max(1.0);
        assert!(
            close(x.loss, y.loss) && close(x.grad_norm, y.grad_norm),
            "step {}: loss {} vs {}, gradient norm {} vs {}",
            x.step,
            x.loss,
            y.loss,
            x.grad_norm,
            y.grad_norm
        );
    }
}
