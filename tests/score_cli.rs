//! `fusecap score` as a user runs it: fixtures in a temporary folder, the built
//! binary run from that folder (prediction paths are relative to it).

mod common;

use common::cli::stderr;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const MANIFEST: &str = r#"{"image":"images/1.png","task":"caption","captions":["a red circle","a red ball"],"split":"test"}
{"image":"images/2.png","task":"caption","captions":["a blue square"],"split":"test"}
{"image":"images/3.png","task":"caption","captions":["a green star"],"split":"train"}
{"image":"images/1.png","task":"vqa","question":"what color is the circle?","answer":"red","answers":["red","red","red","red","red","red","red","red","red","red"],"question_type":"color","split":"test"}
{"image":"images/2.png","task":"vqa","question":"how many squares?","answer":"1","question_type":"count","split":"test"}
{"image":"images/2.png","task":"vqa","question":"what shape is it?","answer":"square","question_type":"shape","split":"test"}
"#;

/// A folder with data/manifest.jsonl, data/images/{1,2,3}.png and the predictions.
fn fixture(predictions: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("images")).expect("create data/images");
    for i in 1..=3 {
        std::fs::write(data.join(format!("images/{i}.png")), b"").expect("write image");
    }
    std::fs::write(data.join("manifest.jsonl"), MANIFEST).expect("write manifest");
    std::fs::write(dir.path().join("preds.jsonl"), predictions).expect("write predictions");
    dir
}

fn score(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fusecap"))
        .current_dir(dir)
        .args([
            "score",
            "--predictions",
            "preds.jsonl",
            "--data",
            "data/manifest.jsonl",
        ])
        .args(extra)
        .output()
        .expect("run fusecap")
}

fn scores_json(dir: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["--json", "scores.json"];
    args.extend_from_slice(extra);
    let out = score(dir, &args);
    assert!(
        out.status.success(),
        "fusecap score failed: {}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(dir.join("scores.json")).expect("read scores.json");
    (
        out,
        serde_json::from_str(&text).expect("scores.json is JSON"),
    )
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn perfect_captions_score_bleu_one_and_paths_are_canonicalised() {
    // "./data/images/../images/1.png" names the same file as the manifest's images/1.png.
    let dir = fixture(concat!(
        r#"{"image":"./data/images/../images/1.png","task":"caption","output":"A red circle.","fusion":"gated","ms":3.5}"#,
        "\n",
        r#"{"image":"data/images/2.png","output":"a blue square"}"#,
        "\n"
    ));
    let (out, json) = scores_json(dir.path(), &["--split", "test"]);
    let caption = &json["caption"];
    assert_eq!(caption["n"], 2);
    assert!((num(&caption["bleu"][0]) - 1.0).abs() < 1e-8, "{caption}");
    assert!((num(&caption["rouge_l"]) - 1.0).abs() < 1e-12, "{caption}");
    assert_eq!(num(&caption["exact_match"]), 1.0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("BLEU-1") && table.contains("CIDEr-D"),
        "{table}"
    );
    // Three VQA records of split "test" got no prediction.
    assert_eq!(json["missing_predictions"], 3);
    assert!(stderr(&out).contains("3 manifest record(s) have no prediction"));
}

#[test]
fn vqa_accuracy_per_type_and_errors_count_as_empty() {
    let dir = fixture(concat!(
        r#"{"image":"data/images/1.png","question":"What color is the circle?","output":" red "}"#,
        "\n",
        r#"{"image":"data/images/2.png","question":"how many squares?","output":"one"}"#,
        "\n",
        r#"{"image":"data/images/2.png","question":"what shape is it?","error":"decoder failed"}"#,
        "\n"
    ));
    let (out, json) = scores_json(dir.path(), &[]);
    let vqa = &json["vqa"];
    // 10 of 10 humans say "red", and " red " stripped is "red" → 1 (humans that
    // agree are compared without further normalisation, as the official
    // evaluation does: "Red." would score 0); "one" normalises to "1" against
    // the single answer → 1; the error is an empty answer → 0. Overall 2/3.
    assert_eq!(vqa["n"], 3);
    assert!((num(&vqa["accuracy"]) - 2.0 / 3.0).abs() < 1e-12, "{vqa}");
    assert_eq!(vqa["per_type"]["color"][0], 1.0);
    assert_eq!(vqa["per_type"]["shape"][0], 0.0);
    assert_eq!(json["error_predictions"], 1);
    assert!(json["caption"].is_null());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("per question type") && table.contains("count"),
        "{table}"
    );
}

#[test]
fn unmatched_and_unreadable_lines_are_reported_but_the_rest_is_scored() {
    let dir = fixture(concat!(
        r#"{"image":"data/images/1.png","output":"a red ball"}"#,
        "\n",
        r#"{"image":"data/images/9.png","output":"no such image"}"#,
        "\n",
        "{not json\n",
        r#"{"image":"data/images/1.png","question":"not in the manifest?","output":"x"}"#,
        "\n"
    ));
    let (out, json) = scores_json(dir.path(), &[]);
    assert_eq!(json["matched"], 1);
    // 9.png, the unknown question, and the unreadable line.
    assert_eq!(json["unmatched_predictions"], 3);
    let err = stderr(&out);
    assert!(err.contains("2 prediction(s)"), "{err}");
    assert!(
        err.contains("preds.jsonl:3"),
        "unreadable line should be named: {err}"
    );
}

#[test]
fn split_option_selects_records() {
    let dir = fixture(concat!(
        r#"{"image":"data/images/3.png","output":"a green star"}"#,
        "\n"
    ));
    let (_, json) = scores_json(dir.path(), &["--split", "train"]);
    assert_eq!(json["matched"], 1);
    assert_eq!(json["missing_predictions"], 0);
    let out = score(dir.path(), &["--split", "test"]);
    assert!(!out.status.success(), "nothing matches in split test");
}

#[test]
fn nothing_matched_is_an_error_naming_the_files() {
    let dir = fixture(concat!(
        r#"{"image":"elsewhere/1.png","output":"a red circle"}"#,
        "\n"
    ));
    let out = score(dir.path(), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("preds.jsonl") && err.contains("manifest.jsonl"),
        "{err}"
    );
}

#[test]
fn missing_predictions_file_is_an_error() {
    let dir = fixture("");
    std::fs::remove_file(dir.path().join("preds.jsonl")).expect("remove predictions");
    let out = score(dir.path(), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("preds.jsonl"));
}
