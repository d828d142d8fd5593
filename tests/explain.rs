//! `fusecap explain` and the attention it draws: weights over valid keys sum
//! to 1, padding gets none, and the pictures have the documented sizes.

mod common;

use common::cli::{fusecap, stderr};

use std::path::Path;
use std::process::Output;

use candle_core::{DType, Device};
use fusecap::generate::{greedy, GenerateOptions};
use fusecap::model::dir::{init_model, save_model_dir, ModelDir};
use fusecap::model::{Config, Fusion};
use fusecap::pipeline::{encode_queries, Preprocess, Query};
use fusecap::plot::GRID_HEADER;
use fusecap::report::attention::{decoding_steps, step_attention, Layers};
use fusecap::report::explain::{BARS_SIZE, GRID_BARS_HEIGHT, GRID_COLUMNS, OVERLAY_SIZE};
use fusecap::tokenizer::TextTokenizer;
use image::{Rgb, RgbImage};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

/// A 40×30 image (not square, not the model's size): a red disc on white.
fn write_image(path: &Path) {
    let img = RgbImage::from_fn(40, 30, |x, y| {
        let (dx, dy) = (x as i32 - 12, y as i32 - 15);
        if dx * dx + dy * dy < 60 {
            Rgb([220, 30, 30])
        } else {
            Rgb([255, 255, 255])
        }
    });
    img.save(path).expect("write image");
}

/// A tiny model directory of `fusion`, with the default vocabulary.
fn tiny_model(dir: &Path, fusion: Fusion, seed: u64) -> ModelDir {
    let tokenizer = TextTokenizer::default_vocabulary().expect("default vocabulary");
    let cfg = Config::tiny(fusion, tokenizer.vocab_size());
    let (_, varmap) = init_model(&cfg, seed, &Device::Cpu).expect("init model");
    save_model_dir(dir, &cfg, &varmap, &tokenizer, DType::F32).expect("save model");
    ModelDir::load(dir, &Device::Cpu).expect("load model")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array of weights")
        .iter()
        .map(|w| w.as_f64().expect("a weight"))
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let img =
        image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    (img.width(), img.height())
}

fn run_explain(dir: &Path, model: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec![
        "explain",
        "img.png",
        "--model",
        model,
        "--out",
        "out",
        "--max-new-tokens",
        "3",
    ];
    args.extend_from_slice(extra);
    let out = fusecap(dir, &args);
    assert!(
        out.status.success(),
        "fusecap explain failed: {}",
        stderr(&out)
    );
    let text =
        std::fs::read_to_string(dir.join("out/attention.json")).expect("read attention.json");
    (
        out,
        serde_json::from_str(&text).expect("attention.json is JSON"),
    )
}

/// Every file explain names decodes as a PNG of the documented size, and so does the grid.
fn check_pictures(out_dir: &Path, json: &Value) {
    let steps = json["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "no decoding steps");
    for step in steps {
        let image_file = step["image_file"].as_str().expect("image_file");
        let text_file = step["text_file"].as_str().expect("text_file");
        assert_eq!(
            png_size(&out_dir.join(image_file)),
            (OVERLAY_SIZE, OVERLAY_SIZE)
        );
        assert_eq!(png_size(&out_dir.join(text_file)), BARS_SIZE);
    }
    let columns = steps.len().min(GRID_COLUMNS) as u32;
    let rows = steps.len().div_ceil(GRID_COLUMNS) as u32;
    assert_eq!(
        png_size(&out_dir.join("grid.png")),
        (
            columns * OVERLAY_SIZE,
            GRID_HEADER + rows * (OVERLAY_SIZE + GRID_BARS_HEIGHT)
        )
    );
}

#[test]
fn explain_concat_draws_the_models_own_weights_which_sum_to_one() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_image(&dir.join("img.png"));
    let md = tiny_model(&dir.join("m"), Fusion::Concat, 1);
    let question = "what color is the circle?";
    let (out, json) = run_explain(dir, "m", &["--question", question]);

    let grid = json["grid"].as_u64().expect("grid") as usize;
    assert_eq!(grid, md.model.cfg.image_size / md.model.cfg.patch_size);
    let text_tokens = json["text_tokens"].as_array().expect("text_tokens").len();
    assert_eq!(
        text_tokens,
        md.tokenizer.encode(question).expect("encode").len()
    );
    for step in json["steps"].as_array().expect("steps") {
        let (vision, text) = (floats(&step["vision"]), floats(&step["text"]));
        assert_eq!(vision.len(), grid * grid);
        assert_eq!(text.len(), text_tokens);
        // One softmax over image keys, text keys and the sink: together they hold all the mass.
        let (v, t): (f64, f64) = (vision.iter().sum(), text.iter().sum());
        let sink = floats(&step["sink"]);
        assert_eq!(sink.len(), 1);
        assert!(
            (v + t + sink[0] - 1.0).abs() < TOLERANCE,
            "image {v} + text {t} + sink {} != 1",
            sink[0]
        );
        assert!((step["image_share"].as_f64().expect("image_share") - v).abs() < TOLERANCE);
        assert!(vision.iter().chain(&text).all(|&w| w >= 0.0));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("image") && stdout.contains('%'),
        "no shares on stdout:\n{stdout}"
    );
    check_pictures(&dir.join("out"), &json);

    // What explain drew is what the model attends to.
    let cfg = &md.model.cfg;
    let pixels = Preprocess::from_config(cfg)
        .load(&dir.join("img.png"))
        .expect("load image");
    let query = Query {
        pixels,
        text: question.to_string(),
    };
    let memory = encode_queries(&md, &[query], &Device::Cpu).expect("encode");
    let opts = GenerateOptions {
        max_new_tokens: 3,
        ..GenerateOptions::default()
    };
    let tokens = greedy(&md.model, &memory, &opts)
        .expect("greedy")
        .remove(0)
        .tokens;
    let steps = decoding_steps(tokens.len(), cfg, &opts);
    let expected =
        step_attention(&md.model, &memory, &[tokens], &[steps], Layers::Mean).expect("attention");
    let drawn = json["steps"].as_array().expect("steps");
    assert_eq!(drawn.len(), expected[0].len());
    for (d, e) in drawn.iter().zip(&expected[0]) {
        for (a, b) in floats(&d["vision"]).iter().zip(&e.vision) {
            assert!((a - *b as f64).abs() < 1e-6);
        }
    }
}

#[test]
fn explain_gated_maps_each_modality_and_states_the_gates() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_image(&dir.join("img.png"));
    tiny_model(&dir.join("m"), Fusion::Gated, 2);
    let (out, json) = run_explain(
        dir,
        "m",
        &["--question", "is there a red circle?", "--layer", "1"],
    );
    assert_eq!(json["layer"], 1);
    for step in json["steps"].as_array().expect("steps") {
        // Separate softmaxes: each modality's map sums to 1 with its own sink.
        let (v, t): (f64, f64) = (
            floats(&step["vision"]).iter().sum(),
            floats(&step["text"]).iter().sum(),
        );
        let sink = floats(&step["sink"]);
        assert_eq!(sink.len(), 2);
        assert!(
            (v + sink[0] - 1.0).abs() < TOLERANCE && (t + sink[1] - 1.0).abs() < TOLERANCE,
            "vision {v} + sink {}, text {t} + sink {}",
            sink[0],
            sink[1]
        );
        assert!(step["image_share"].is_null());
    }
    assert_eq!(json["gate_values"].as_array().map(Vec::len), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gates"));
    check_pictures(&dir.join("out"), &json);

    // A caption (no question) is explained over the caption prompt's tokens.
    std::fs::remove_dir_all(dir.join("out")).expect("clear out");
    let (_, json) = run_explain(dir, "m", &[]);
    assert_eq!(json["text_tokens"], serde_json::json!(["caption"]));
    check_pictures(&dir.join("out"), &json);
}

#[test]
fn explain_names_a_layer_the_model_lacks() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    write_image(&dir.join("img.png"));
    tiny_model(&dir.join("m"), Fusion::Separate, 3);
    let out = fusecap(
        dir,
        &[
            "explain", "img.png", "--model", "m", "--out", "out", "--layer", "5",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--layer 5") && stderr(&out).contains("0 to 1"),
        "{}",
        stderr(&out)
    );
}

/// In a batch, padded question positions get no attention, a row without any
/// question token attends to no text at all, and every valid softmax sums to 1.
#[test]
fn padding_gets_no_attention_and_valid_keys_sum_to_one() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    for (i, fusion) in Fusion::ALL.into_iter().enumerate() {
        let md = tiny_model(&tmp.path().join(fusion.name()), fusion, 10 + i as u64);
        let cfg = &md.model.cfg;
        let pixels = vec![0.1f32; 3 * cfg.image_size * cfg.image_size];
        let texts = [
            "what color is the big circle on the left?",
            "what shape?",
            "",
        ];
        let queries: Vec<Query> = texts
            .iter()
            .map(|t| Query {
                pixels: pixels.clone(),
                text: t.to_string(),
            })
            .collect();
        let lengths: Vec<usize> = texts
            .iter()
            .map(|t| md.tokenizer.encode(t).expect("encode").len())
            .collect();
        let memory = encode_queries(&md, &queries, &Device::Cpu).expect("encode");
        let opts = GenerateOptions {
            max_new_tokens: 3,
            ..GenerateOptions::default()
        };
        let tokens: Vec<Vec<u32>> = greedy(&md.model, &memory, &opts)
            .expect("greedy")
            .into_iter()
            .map(|g| g.tokens)
            .collect();
        let steps: Vec<usize> = tokens
            .iter()
            .map(|t| decoding_steps(t.len(), cfg, &opts))
            .collect();
        for layers in [Layers::Mean, Layers::Layer(0), Layers::Layer(1)] {
            let rows =
                step_attention(&md.model, &memory, &tokens, &steps, layers).expect("attention");
            for (row, attention) in rows.iter().enumerate() {
                assert_eq!(attention.len(), steps[row]);
                for step in attention {
                    assert_eq!(
                        step.text.len(),
                        lengths[0],
                        "text keys are padded to the longest question"
                    );
                    assert!(
                        step.text[lengths[row]..].iter().all(|&w| w == 0.0),
                        "{fusion} row {row}: padding got attention"
                    );
                    let (v, t, s) = (step.vision_mass(), step.text_mass(), &step.sink);
                    let sum = |x: f64, sink: f32| x + sink as f64;
                    match (fusion, lengths[row]) {
                        (Fusion::Concat, _) => assert!(
                            (sum(v + t, s[0]) - 1.0).abs() < TOLERANCE,
                            "{fusion}: {v} + {t} + sink {s:?}"
                        ),
                        // An empty question's text attention is zeroed, sink included.
                        (_, 0) => assert!(
                            (sum(v, s[0]) - 1.0).abs() < TOLERANCE && t == 0.0 && s[1] == 0.0,
                            "{fusion} empty question: {v}, {t}, sink {s:?}"
                        ),
                        _ => assert!(
                            (sum(v, s[0]) - 1.0).abs() < TOLERANCE
                                && (sum(t, s[1]) - 1.0).abs() < TOLERANCE,
                            "{fusion}: {v}, {t}, sink {s:?}"
                        ),
                    }
                }
            }
        }
    }
}
