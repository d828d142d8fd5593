//! `fusecap experiment` end to end with a tiny config and a handful of steps.

mod common;

use common::cli::{fusecap, read_json, stderr, FOUR_COLORS};

use std::path::Path;

use image::{Rgb, RgbImage};
use serde_json::Value;

const STRATEGIES: [&str; 3] = ["concat", "separate", "gated"];

/// A 16×16 image: a disc of `color` at a position that depends on `i`.
fn write_image(path: &Path, color: [u8; 3], i: usize) {
    let (cx, cy) = (4 + 8 * (i % 2) as i32, 4 + 8 * (i / 2 % 2) as i32);
    let img = RgbImage::from_fn(16, 16, |x, y| {
        let (dx, dy) = (x as i32 - cx, y as i32 - cy);
        if dx * dx + dy * dy < 12 {
            Rgb(color)
        } else {
            Rgb([255, 255, 255])
        }
    });
    img.save(path).expect("write image");
}

/// 12 images: 8 train, 2 val, 2 test; each with a caption and a color and a shape question.
fn write_data(dir: &Path, splits: &[&str]) {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("images")).expect("create data/images");
    let mut lines = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        let (name, color) = FOUR_COLORS[i % FOUR_COLORS.len()];
        write_image(&data.join(format!("images/{i}.png")), color, i);
        lines.push(format!(r#"{{"image":"images/{i}.png","task":"caption","captions":["a {name} circle"],"split":"{split}"}}"#));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"vqa","question":"what color is the circle?","answer":"{name}","question_type":"color","split":"{split}"}}"#
        ));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"vqa","question":"what shape is it?","answer":"circle","question_type":"shape","split":"{split}"}}"#
        ));
    }
    std::fs::write(data.join("manifest.jsonl"), lines.join("\n") + "\n").expect("write manifest");
}

fn standard_splits() -> Vec<&'static str> {
    let mut splits = vec!["train"; 8];
    splits.extend(["val", "val", "test", "test"]);
    splits
}

fn tiny_config(dir: &Path) {
    let out = fusecap(
        dir,
        &[
            "init", "--fusion", "concat", "--size", "tiny", "--out", "tiny",
        ],
    );
    assert!(
        out.status.success(),
        "fusecap init failed: {}",
        stderr(&out)
    );
}

const EXPERIMENT: [&str; 16] = [
    "experiment",
    "--fusion",
    "concat,separate,gated",
    "--data",
    "data/manifest.jsonl",
    "--steps",
    "3",
    "--batch-size",
    "4",
    "--config",
    "tiny/config.json",
    "--out",
    "exp",
    "--eval-every",
    "1",
    "--quiet",
];

#[test]
fn experiment_trains_every_strategy_alike_then_compares_and_summarises() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir, &standard_splits());
    tiny_config(dir);
    let out = fusecap(dir, &EXPERIMENT);
    assert!(
        out.status.success(),
        "fusecap experiment failed: {}",
        stderr(&out)
    );
    let exp = dir.join("exp");

    // Each strategy trained with the same options (seed, steps, batch) on the same examples.
    let states: Vec<Value> = STRATEGIES
        .iter()
        .map(|s| read_json(&exp.join(s).join("train_state.json")))
        .collect();
    for state in &states {
        assert_eq!(state["step"], 3);
        assert_eq!(state["options"], states[0]["options"]);
        assert_eq!(state["train_examples"], states[0]["train_examples"]);
    }
    for s in STRATEGIES {
        assert!(
            exp.join(s).join("model.safetensors").is_file(),
            "{s} has no model"
        );
        let log = std::fs::read_to_string(exp.join(s).join("training.jsonl"))
            .expect("read training.jsonl");
        assert_eq!(
            log.lines().filter(|l| l.contains("val_accuracy")).count(),
            3,
            "{s}: one validation per step"
        );
    }

    // The comparison: Markdown with a row per strategy, and JSON on the test split.
    let markdown = std::fs::read_to_string(exp.join("compare.md")).expect("read compare.md");
    for s in STRATEGIES {
        assert!(
            markdown
                .lines()
                .any(|l| l.starts_with(&format!("| {s} | {s} |"))),
            "no row for {s}:\n{markdown}"
        );
    }
    let compare = read_json(&exp.join("compare.json"));
    assert_eq!(compare["split"], "test");
    assert_eq!(compare["records"], 6);
    assert_eq!(compare["models"].as_array().map(Vec::len), Some(3));

    // The summary names a winner per question type and says whether the gap is noise.
    let summary = read_json(&exp.join("summary.json"));
    let verdicts = summary["verdicts"].as_array().expect("verdicts");
    let types: Vec<&str> = verdicts
        .iter()
        .filter_map(|v| v["question_type"].as_str())
        .collect();
    assert_eq!(types, ["all questions", "color", "shape"]);
    for v in verdicts {
        assert_eq!(
            v["n"],
            if v["question_type"] == "all questions" {
                4
            } else {
                2
            }
        );
        assert!(STRATEGIES.contains(&v["winner"].as_str().unwrap_or("")));
        let gap = v["gap"].as_f64().expect("gap");
        let se = v["standard_error"].as_f64().expect("standard error");
        assert_eq!(v["within_noise"], gap <= se);
    }
    let summary_md = std::fs::read_to_string(exp.join("summary.md")).expect("read summary.md");
    assert!(
        summary_md.contains("color (n = 2)") && summary_md.contains("shape (n = 2)"),
        "{summary_md}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("## Summary") && stdout.contains("| concat | concat |"));

    for plot in ["val_accuracy.png", "accuracy.png"] {
        let img =
            image::open(exp.join(plot)).unwrap_or_else(|e| panic!("{plot} does not decode: {e}"));
        assert!(img.width() > 0 && img.height() > 0);
    }

    // --resume keeps the finished runs and only re-does the comparison.
    let before = std::fs::read(exp.join("gated/model.safetensors")).expect("read weights");
    let mut again = EXPERIMENT.to_vec();
    again.retain(|a| *a != "--quiet");
    again.push("--resume");
    let out = fusecap(dir, &again);
    assert!(out.status.success(), "resume failed: {}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("already trained; kept").count(),
        3,
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(exp.join("gated/model.safetensors")).expect("read weights"),
        before
    );
}

#[test]
fn experiment_refuses_data_without_a_test_split_before_training() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir, &["train", "train", "val"]);
    tiny_config(dir);
    let out = fusecap(dir, &EXPERIMENT);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no test records") && err.contains("data/manifest.jsonl"),
        "{err}"
    );
    assert!(
        !dir.join("exp/concat").exists(),
        "trained although nothing could be compared"
    );
}

#[test]
fn experiment_will_not_overwrite_a_run_without_resume() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir, &standard_splits());
    tiny_config(dir);
    let mut first = EXPERIMENT.to_vec();
    first[2] = "concat";
    let out = fusecap(dir, &first);
    assert!(
        out.status.success(),
        "fusecap experiment failed: {}",
        stderr(&out)
    );
    let out = fusecap(dir, &first);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
}
