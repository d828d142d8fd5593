//! `fusecap compare` and `fusecap eval` as a user runs them, on tiny untrained
//! models and a tiny manifest written into a temporary folder.

mod common;

use common::cli::{fusecap, read_json, stderr, stdout, FOUR_COLORS};

use std::path::Path;

use image::{Rgb, RgbImage};
use serde_json::Value;

/// A 16×16 white image with a disc of `color`.
fn write_image(path: &Path, color: [u8; 3]) {
    let img = RgbImage::from_fn(16, 16, |x, y| {
        let (dx, dy) = (x as i32 - 8, y as i32 - 8);
        if dx * dx + dy * dy < 30 {
            Rgb(color)
        } else {
            Rgb([255, 255, 255])
        }
    });
    img.save(path).expect("write image");
}

/// data/manifest.jsonl: per image one caption and two typed questions, all in
/// split "test". Returns the number of (caption, question) records.
fn write_data(dir: &Path) -> (usize, usize) {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("images")).expect("create data/images");
    let mut lines = Vec::new();
    for (i, (name, color)) in FOUR_COLORS.iter().enumerate() {
        write_image(&data.join(format!("images/{i}.png")), *color);
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"caption","captions":["a {name} circle"],"split":"test"}}"#
        ));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"vqa","question":"what color is the circle?","answer":"{name}","question_type":"color","split":"test"}}"#
        ));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"vqa","question":"what shape is it?","answer":"circle","question_type":"shape","split":"test"}}"#
        ));
    }
    std::fs::write(data.join("manifest.jsonl"), lines.join("\n") + "\n").expect("write manifest");
    (FOUR_COLORS.len(), 2 * FOUR_COLORS.len())
}

fn init_model(dir: &Path, fusion: &str, out: &str, seed: &str) {
    let out = fusecap(
        dir,
        &[
            "init", "--fusion", fusion, "--size", "tiny", "--out", out, "--seed", seed,
        ],
    );
    assert!(
        out.status.success(),
        "fusecap init failed: {}",
        stderr(&out)
    );
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn compare_puts_both_models_in_one_table_on_the_same_records() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    let (captions, questions) = write_data(dir);
    init_model(dir, "concat", "m-concat", "1");
    init_model(dir, "gated", "m-gated", "2");

    let out = fusecap(
        dir,
        &[
            "compare",
            "--model",
            "m-concat",
            "m-gated",
            "--data",
            "data/manifest.jsonl",
            "--json",
            "cmp.json",
            "--plot",
            "cmp.png",
            "--disagreements",
            "3",
            "--max-new-tokens",
            "4",
            "--speed-samples",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "fusecap compare failed: {}",
        stderr(&out)
    );

    // One Markdown table with a row per model.
    let text = stdout(&out);
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    assert!(
        table.len() >= 4,
        "expected header, separator and two rows:\n{text}"
    );
    assert!(
        table[0].contains("VQA accuracy")
            && table[0].contains("color")
            && table[0].contains("shape")
    );
    assert!(table[1].starts_with("| --- |"));
    assert!(
        table.iter().any(|r| r.starts_with("| m-concat | concat |")),
        "no concat row:\n{text}"
    );
    assert!(
        table.iter().any(|r| r.starts_with("| m-gated | gated |")),
        "no gated row:\n{text}"
    );
    let columns = table[0].matches(" | ").count();
    assert!(
        table.iter().all(|r| r.matches(" | ").count() == columns),
        "ragged table:\n{text}"
    );

    // Valid JSON describing both models, each scored on every record.
    let json = read_json(&dir.join("cmp.json"));
    assert_eq!(json["records"], captions + questions);
    let models = json["models"].as_array().expect("models array");
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["vqa"]["n"], questions);
        assert_eq!(m["caption"]["n"], captions);
        assert_eq!(m["vqa_per_type"]["color"]["n"], FOUR_COLORS.len());
        assert!(num(&m["parameters"]) > num(&m["cross_attention_parameters"]));
        assert!(num(&m["cross_attention_parameters"]) > 0.0);
        assert!(num(&m["ms_per_image_batch1"]) > 0.0 && num(&m["ms_per_image_batched"]) > 0.0);
        assert_eq!(m["speed_samples"], 2);
    }
    // Concat: attention shares on image and text add up to 1, per type.
    let concat = &models[0];
    assert_eq!(concat["fusion"], "concat");
    let shares = concat["modality_share"]
        .as_object()
        .expect("concat has modality shares");
    for key in ["all", "caption", "color", "shape"] {
        let s = &shares[key];
        assert!(
            (num(&s["image"]) + num(&s["text"]) + num(&s["sink"]) - 1.0).abs() < 1e-3,
            "{key}: {s}"
        );
    }
    assert!(concat["gate_values"].is_null());
    // Gated: one gate pair per decoder layer (2 in the tiny size), freshly initialised at tanh(1).
    let gated = &models[1];
    let gates = gated["gate_values"]
        .as_array()
        .expect("gated has gate values");
    assert_eq!(gates.len(), 2);
    let open = |v: &Value| (num(v) - 1f64.tanh()).abs() < 1e-3;
    assert!(gates.iter().all(|g| open(&g["vision"]) && open(&g["text"])));
    assert!(gated["modality_share"].is_null());

    let shown = json["disagreements"]
        .as_array()
        .expect("disagreements array");
    assert!(
        shown.len() <= 3
            && shown.len() <= json["disagreement_count"].as_u64().unwrap_or(0) as usize
    );
    for d in shown {
        assert_eq!(d["outputs"].as_array().map(Vec::len), Some(2));
    }

    let plot = image::open(dir.join("cmp.png")).expect("the plot is a PNG");
    assert!(plot.width() >= 640 && plot.height() == 500);
}

#[test]
fn compare_draws_svg_plots_and_eval_agrees_with_it() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir);
    init_model(dir, "separate", "m-sep", "3");
    let out = fusecap(
        dir,
        &[
            "compare",
            "--model",
            "m-sep",
            "--data",
            "data/manifest.jsonl",
            "--json",
            "cmp.json",
            "--plot",
            "cmp.svg",
            "--max-new-tokens",
            "4",
            "--quiet",
        ],
    );
    assert!(
        out.status.success(),
        "fusecap compare failed: {}",
        stderr(&out)
    );
    let svg = std::fs::read_to_string(dir.join("cmp.svg")).expect("read the SVG");
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "not an SVG"
    );

    let out = fusecap(
        dir,
        &[
            "eval",
            "--model",
            "m-sep",
            "--data",
            "data/manifest.jsonl",
            "--json",
            "eval.json",
            "--max-new-tokens",
            "4",
            "--quiet",
        ],
    );
    assert!(
        out.status.success(),
        "fusecap eval failed: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    for needle in [
        "BLEU-4",
        "CIDEr-D",
        "ROUGE-L",
        "accuracy",
        "per question type",
        "ms/image",
        "worst answers",
        "worst captions",
    ] {
        assert!(text.contains(needle), "eval output lacks {needle}:\n{text}");
    }
    let eval = read_json(&dir.join("eval.json"));
    let compared = &read_json(&dir.join("cmp.json"))["models"][0];
    // The same model on the same records gives the same scores either way.
    assert_eq!(eval["vqa"], compared["vqa"]);
    assert_eq!(eval["caption"], compared["caption"]);
    assert_eq!(eval["predictions"].as_array().map(Vec::len), Some(12));
    assert!(eval["worst_answers"]
        .as_array()
        .is_some_and(|w| w.len() == 5));
    assert!(num(&eval["ms_per_image"]) > 0.0);
}

#[test]
fn compare_names_the_manifest_and_its_splits_when_the_split_is_empty() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir);
    init_model(dir, "concat", "m", "1");
    let out = fusecap(
        dir,
        &[
            "compare",
            "--model",
            "m",
            "--data",
            "data/manifest.jsonl",
            "--split",
            "val",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("data/manifest.jsonl") && err.contains("\"val\"") && err.contains("test: 12"),
        "{err}"
    );

    let out = fusecap(
        dir,
        &[
            "compare",
            "--model",
            "m",
            "no-such-model",
            "--data",
            "data/manifest.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-model"), "{}", stderr(&out));
}

#[test]
fn compare_draws_the_learning_curves_from_the_training_logs() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_data(dir);
    init_model(dir, "concat", "m-concat", "1");
    init_model(dir, "separate", "m-separate", "2");
    let manifest = "data/manifest.jsonl";
    // Without training logs the option is refused, naming the missing file.
    let compare_curves = || {
        fusecap(
            dir,
            &[
                "compare",
                "--model",
                "m-concat",
                "m-separate",
                "--data",
                manifest,
                "--curves",
                "c.png",
                "-q",
            ],
        )
    };
    let out = compare_curves();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("training.jsonl"), "{}", stderr(&out));
    for (model, acc) in [("m-concat", 0.5), ("m-separate", 0.7)] {
        let log = format!(
            "{{\"step\":10,\"loss\":1.0,\"lr\":0.001,\"grad_norm\":1.0,\"samples_per_sec\":10.0,\"elapsed_s\":1.0,\"val_loss\":1.0,\"val_accuracy\":{acc}}}\n"
        );
        std::fs::write(dir.join(model).join("training.jsonl"), log).expect("write log");
    }
    let out = compare_curves();
    assert!(out.status.success(), "{}", stderr(&out));
    let curves = image::open(dir.join("c.png")).expect("curves PNG decodes");
    assert_eq!((curves.width(), curves.height()), (800, 500));
}
