//! Training: the loss falls, resuming equals not stopping, checkpoints are
//! atomic, a NaN stops the run, bad manifest lines are reported and skipped, and
//! a fine-tune starts from its model.
mod common;

use common::{assert_same_loss_curve, read_log, train_in_process};
use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device};
use fusecap::data::batch::Dataset;
use fusecap::data::manifest::load_manifest;
use fusecap::data::synth::{write_dataset, SynthConfig};
use fusecap::model::dir::{init_model_with_words, write_atomically, ModelDir};
use fusecap::model::{Config, Fusion};
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{LogRecord, Outcome, TrainOptions, CHECKPOINT_FILE};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fusecap"))
}

fn synth(dir: &Path, count: usize) -> std::path::PathBuf {
    let cfg = SynthConfig {
        count,
        seed: 3,
        image_size: 16,
        ..SynthConfig::default()
    };
    write_dataset(&cfg, dir).expect("synth data");
    dir.join("manifest.jsonl")
}

fn tiny_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.json");
    let cfg = Config::tiny(Fusion::Concat, 10);
    std::fs::write(&path, serde_json::to_string(&cfg).expect("json")).expect("write config");
    path
}

/// `fusecap train` on the tiny architecture with `args`.
fn train(dir: &Path, manifest: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("train")
        .args(args)
        .arg("--data")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(tiny_config(dir))
        .output()
        .expect("run train")
}

#[test]
fn training_reduces_the_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 40);
    let out = dir.path().join("model");
    let status = train(
        dir.path(),
        &manifest,
        &out,
        &[
            "--fusion",
            "separate",
            "--steps",
            "80",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--warmup",
            "5",
            "--eval-every",
            "40",
            "--val-percent",
            "25",
            "--quiet",
        ],
    )
    .status;
    assert!(status.success());
    let log = read_log(&out);
    assert_eq!(log.len(), 80);
    let mean = |r: &[LogRecord]| r.iter().map(|x| x.loss).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&log[..10]), mean(&log[70..]));
    assert!(last < 0.7 * first, "loss went from {first:.3} to {last:.3}");
    assert!(
        log.iter().any(|r| r.val_loss.is_some()),
        "validation was never run"
    );
    // Per-type validation accuracy: a fraction per scene question type, and
    // the overall accuracy is a weighted mean of them, so it lies between.
    for record in log.iter().filter(|r| r.val_accuracy.is_some()) {
        let by_type = &record.val_accuracy_by_type;
        assert!(
            !by_type.is_empty(),
            "step {}: no per-type accuracy",
            record.step
        );
        let known = [
            "color", "shape", "size", "count", "exist", "position", "relation",
        ];
        for (kind, &accuracy) in by_type {
            assert!(
                known.contains(&kind.as_str()),
                "unknown question type {kind}"
            );
            assert!((0.0..=1.0).contains(&accuracy), "{kind}: {accuracy}");
        }
        let overall = record.val_accuracy.unwrap_or(f64::NAN);
        let lowest = by_type.values().cloned().fold(f64::INFINITY, f64::min);
        let highest = by_type.values().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            lowest - 1e-12 <= overall && overall <= highest + 1e-12,
            "overall {overall} outside the per-type range {lowest}..{highest}"
        );
    }
    // The output directory is a usable model, with its loss curve.
    ModelDir::load(&out, &Device::Cpu).expect("trained model loads");
    assert!(
        image::open(out.join("loss.png")).is_ok(),
        "loss.png is not a readable image"
    );
}

/// The options of the in-process runs: `steps` steps of 8 on the tiny gated model.
fn in_process_options(steps: usize) -> TrainOptions {
    TrainOptions {
        steps,
        batch_size: 8,
        lr: 2e-3,
        warmup_steps: 3,
        eval_every: 100,
        checkpoint_every: 100,
        seed: 5,
        augment_shift: 1,
        augment_noise: 0.02,
        ..TrainOptions::default()
    }
}

/// Runs `steps` steps in-process on `threads` workers, stopping after
/// `stop_after` if given.
fn run_in_process(
    out: &Path,
    manifest: &Path,
    steps: usize,
    stop_after: Option<usize>,
    resume: bool,
    threads: usize,
) -> Outcome {
    run_with_options(
        out,
        manifest,
        in_process_options(steps),
        (stop_after, resume, threads),
    )
}

fn run_with_options(
    out: &Path,
    manifest: &Path,
    options: TrainOptions,
    (stop_after, resume, threads): (Option<usize>, bool, usize),
) -> Outcome {
    let (cfg, tokenizer, train) = tiny_gated_data(manifest);
    let val = Dataset::default();
    train_in_process(
        out,
        cfg,
        tokenizer,
        (&train, &val),
        options,
        resume,
        threads,
        stop_after,
    )
}

/// The tiny gated architecture, the tokenizer and the training set of `manifest`.
fn tiny_gated_data(manifest: &Path) -> (Config, TextTokenizer, Dataset) {
    let loaded = load_manifest(manifest).expect("manifest");
    let records: Vec<_> = loaded
        .records
        .iter()
        .filter(|r| r.in_split("train"))
        .collect();
    let texts = fusecap::data::split::training_texts(&records);
    let tokenizer = TextTokenizer::train(texts.iter().map(String::as_str), 1).expect("tokenizer");
    let cfg = Config::tiny(Fusion::Gated, tokenizer.vocab_size());
    let (train, _) = Dataset::build(&records, &tokenizer, &cfg).expect("dataset");
    (cfg, tokenizer, train)
}

#[test]
fn the_init_seed_sets_the_starting_weights_and_leaves_the_data_order_to_the_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 30);
    // A learning rate of 0 keeps the starting weights to the end.
    let frozen = |seed, init_seed| TrainOptions {
        lr: 0.0,
        seed,
        init_seed,
        augment_shift: 0,
        augment_noise: 0.0,
        ..in_process_options(6)
    };
    let (mixed, plain) = (dir.path().join("mixed"), dir.path().join("plain"));
    run_with_options(&mixed, &manifest, frozen(5, Some(9)), (None, false, 1));
    run_with_options(&plain, &manifest, frozen(9, None), (None, false, 1));

    let (cfg, tokenizer, _) = tiny_gated_data(&manifest);
    let weights = |seed| {
        let (_, varmap) =
            init_model_with_words(&cfg, &tokenizer.words(), seed, &Device::Cpu).expect("init");
        varmap
    };
    let saved = candle_core::safetensors::load(mixed.join("model.safetensors"), &Device::Cpu)
        .expect("saved weights");
    let differs_from = |varmap: &candle_nn::VarMap| {
        varmap
            .data()
            .lock()
            .expect("lock")
            .iter()
            .any(|(name, var)| {
                let a = var
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>());
                let b = saved[name].flatten_all().and_then(|t| t.to_vec1::<f32>());
                a.expect("init values") != b.expect("saved values")
            })
    };
    assert!(
        !differs_from(&weights(9)),
        "--init-seed 9 did not start from seed 9's weights"
    );
    assert!(
        differs_from(&weights(5)),
        "--init-seed 9 started from --seed 5's weights"
    );
    // Same weights, data ordered by seeds 5 and 9: the losses differ.
    let losses = |run: &Path| read_log(run).iter().map(|r| r.loss).collect::<Vec<_>>();
    assert_ne!(
        losses(&mixed),
        losses(&plain),
        "the data order followed --init-seed"
    );
}

#[test]
fn resuming_gives_the_same_result_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 30);
    let straight = dir.path().join("straight");
    let resumed = dir.path().join("resumed");
    assert_eq!(
        run_in_process(&straight, &manifest, 12, None, false, 1),
        Outcome::Finished
    );
    assert_eq!(
        run_in_process(&resumed, &manifest, 12, Some(5), false, 1),
        Outcome::Interrupted { step: 5 }
    );
    assert_eq!(
        run_in_process(&resumed, &manifest, 12, None, true, 1),
        Outcome::Finished
    );
    assert_same_checkpoint(&straight, &resumed);
    let log = read_log(&resumed);
    assert_eq!(
        log.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>(),
        "log has each step once"
    );
}

/// Every tensor of the two runs' checkpoints (weights, moments, step) is bit for bit the same.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let a = candle_core::safetensors::load(a.join(CHECKPOINT_FILE), &Device::Cpu).expect("a");
    let b = candle_core::safetensors::load(b.join(CHECKPOINT_FILE), &Device::Cpu).expect("b");
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let bytes = |t: &candle_core::Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert!(bytes(ta) == bytes(&b[name]), "{name} differs");
    }
}

#[test]
fn data_parallel_training_follows_the_single_thread_loss_curve_and_resumes_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 30);
    let (one, three, resumed) = (
        dir.path().join("one"),
        dir.path().join("three"),
        dir.path().join("resumed"),
    );
    run_in_process(&one, &manifest, 12, None, false, 1);
    // Batches of 8 on three workers: shards of 2, 3 and 3 examples, whose
    // losses only add up to the batch's when each is divided by the whole
    // batch's weight.
    run_in_process(&three, &manifest, 12, None, false, 3);
    assert_same_loss_curve(&read_log(&one), &read_log(&three));
    assert_eq!(
        run_in_process(&resumed, &manifest, 12, Some(5), false, 3),
        Outcome::Interrupted { step: 5 }
    );
    run_in_process(&resumed, &manifest, 12, None, true, 3);
    assert_same_checkpoint(&three, &resumed);
}

#[test]
fn a_crash_between_write_and_rename_keeps_the_old_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 20);
    let out = dir.path().join("model");
    run_in_process(&out, &manifest, 4, None, false, 1);
    let checkpoint = out.join(CHECKPOINT_FILE);
    let before = std::fs::read(&checkpoint).expect("checkpoint");
    // The writer dies after writing half a file, before the rename.
    let result = write_atomically(&checkpoint, |tmp| {
        std::fs::write(tmp, &before[..before.len() / 2])?;
        anyhow::bail!("killed")
    });
    assert!(result.is_err());
    assert_eq!(
        std::fs::read(&checkpoint).expect("checkpoint"),
        before,
        "the checkpoint was touched"
    );
    candle_core::safetensors::load(&checkpoint, &Device::Cpu).expect("old checkpoint still loads");
    ModelDir::load(&out, &Device::Cpu).expect("model directory still loads");
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 20);
    let out = dir.path().join("model");
    let output = train(
        dir.path(),
        &manifest,
        &out,
        &[
            "--fusion",
            "concat",
            "--steps",
            "20",
            "--batch-size",
            "8",
            "--lr",
            "1e30",
            "--warmup",
            "1",
            "--checkpoint-every",
            "1",
            "--save-dtype",
            "f32",
            "--quiet",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "training with lr 1e30 should stop"
    );
    assert!(
        stderr.contains("became") && stderr.contains("last good checkpoint"),
        "{stderr}"
    );
    let log = read_log(&out);
    assert!(log.len() < 20, "training did not stop early");
    assert!(
        log.iter().all(|r| r.loss.is_finite()),
        "a non-finite loss was logged"
    );
    ModelDir::load(&out, &Device::Cpu).expect("the last good model still loads");
}

#[test]
fn bad_manifest_lines_are_reported_with_line_numbers_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 20);
    let mut text = std::fs::read_to_string(&manifest).expect("manifest");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{not json");
    lines.insert(
        3,
        r#"{"image":"images/missing.png","task":"caption","captions":["a red circle"]}"#,
    );
    text = lines.join("\n");
    std::fs::write(&manifest, text).expect("write");
    let out = dir.path().join("model");
    let output = train(
        dir.path(),
        &manifest,
        &out,
        &[
            "--fusion",
            "gated",
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--quiet",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("manifest.jsonl:2"),
        "line 2 not named: {stderr}"
    );
    assert!(
        stderr.contains("manifest.jsonl:4"),
        "line 4 not named: {stderr}"
    );
    assert!(stderr.contains("skipped 2"), "{stderr}");
}

#[test]
fn type_weights_are_recorded_and_a_misspelt_type_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 12);
    let base = ["--fusion", "concat", "--steps", "2", "--batch-size", "8"];
    let args = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };

    let out = dir.path().join("weighted");
    let output = train(
        dir.path(),
        &manifest,
        &out,
        &args(&["--quiet", "--type-weight", "shape=2.5"]),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("train_state.json")).expect("state"),
    )
    .expect("state json");
    assert_eq!(state["options"]["type_weights"]["shape"], 2.5);

    let refused = |weight: &'static str| {
        let out = dir.path().join(weight);
        let output = train(
            dir.path(),
            &manifest,
            &out,
            &args(&["--type-weight", weight]),
        );
        assert!(
            !output.status.success(),
            "--type-weight {weight} was accepted"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused("shapes=2");
    assert!(
        stderr.contains("shapes") && stderr.contains("relation"),
        "{stderr}"
    );
    let stderr = refused("shape");
    assert!(stderr.contains("TYPE=FACTOR"), "{stderr}");
}

#[test]
fn fine_tuning_starts_from_the_given_model_and_refuses_another_fusion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = synth(&dir.path().join("data"), 30);
    let schedule = ["--batch-size", "16", "--warmup", "2", "--quiet"];
    let base = dir.path().join("base");
    let output = train(
        dir.path(),
        &manifest,
        &base,
        &[
            &["--fusion", "concat", "--steps", "80", "--lr", "3e-3"][..],
            &schedule,
        ]
        .concat(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fine_tune = |fusion: &str, out: &Path| {
        bin()
            .args(["train", "--fusion", fusion, "--steps", "3", "--lr", "1e-4"])
            .args(schedule)
            .arg("--from")
            .arg(&base)
            .arg("--data")
            .arg(&manifest)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run train")
    };

    let tuned = dir.path().join("tuned");
    let output = fine_tune("concat", &tuned);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mean = |r: &[LogRecord]| r.iter().map(|x| x.loss).sum::<f64>() / r.len() as f64;
    let (fresh, continued) = (mean(&read_log(&base)[..3]), mean(&read_log(&tuned)));
    assert!(
        continued < 0.8 * fresh,
        "a fine-tune's first losses ({continued:.3}) should be those of a trained model, not of a random one ({fresh:.3})"
    );
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).expect("read");
    assert_eq!(
        read(tuned.join("tokenizer.json")),
        read(base.join("tokenizer.json")),
        "a fine-tune keeps the model's tokenizer"
    );
    assert!(read(tuned.join("train_state.json")).contains("init_from"));

    let refused = |fusion: &str, out: &str| {
        let output = fine_tune(fusion, &dir.path().join(out));
        assert!(
            !output.status.success(),
            "{out}: the fine-tune was accepted"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused("separate", "another-fusion");
    assert!(stderr.contains("--fusion concat"), "{stderr}");
    std::fs::remove_file(base.join("model.safetensors")).expect("remove weights");
    let stderr = refused("concat", "no-weights");
    assert!(stderr.contains("model.safetensors"), "{stderr}");
}
