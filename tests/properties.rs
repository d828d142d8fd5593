//! Property tests of every parser a user's file reaches: manifests,
//! config.json, safetensors weights, image files through preprocessing, and
//! question text through the tokenizer. The property is the same for each:
//! any input gives `Ok` or an error that names the file, with no panic, no
//! abort and bounded memory (the peak resident memory of the whole test
//! process is checked after each property).
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use fusecap::data::image::{decode_rgb, Preprocess};
use fusecap::data::manifest::load_manifest;
use fusecap::model::dir::{init_model, load_config, load_weights, save_weights};
use fusecap::model::{pad_tokens, Config, Fusion, FusionModel, ResizeMode};
use fusecap::tokenizer::TextTokenizer;
use image::ImageEncoder;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

/// Far above what any of these inputs needs, far below what an unbounded
/// allocation takes before it aborts.
const PEAK_MEMORY_LIMIT_MIB: u64 = 3 * 1024;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// The process's peak resident memory (VmHWM), if the platform reports it.
fn peak_memory_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn check_memory() -> Result<(), TestCaseError> {
    if let Some(peak) = peak_memory_mib() {
        prop_assert!(
            peak < PEAK_MEMORY_LIMIT_MIB,
            "peak memory {peak} MiB above {PEAK_MEMORY_LIMIT_MIB} MiB"
        );
    }
    Ok(())
}

/// An error of a file parser must name the file.
fn names_file(err: &anyhow::Error, path: &Path) -> Result<(), TestCaseError> {
    let message = format!("{err:#}");
    prop_assert!(
        message.contains(&path.display().to_string()),
        "the error does not name {}: {message}",
        path.display()
    );
    Ok(())
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Cuts `text` at a char boundary near `at` of its length.
fn cut(text: &str, at: prop::sample::Index) -> String {
    let mut end = at.index(text.len() + 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

// ---------------------------------------------------------------- manifests

/// A valid caption or VQA record with up to three fields replaced (by an
/// empty, odd or wrongly typed value) or removed.
fn manifest_record() -> impl Strategy<Value = Value> {
    let caption = serde_json::json!({
        "image": "images/1.png", "task": "caption", "captions": ["a red circle"], "split": "test"
    });
    let vqa = serde_json::json!({
        "image": "./images/../images/1.png", "task": "vqa", "question": "what colour is it?",
        "answer": "red", "answers": ["red", "blue"], "question_type": "color"
    });
    let keys = vec![
        "image",
        "task",
        "captions",
        "question",
        "answer",
        "answers",
        "question_type",
        "split",
        "extra",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "images/1.png",
            "missing.png",
            "/",
            "images",
            "a\u{0}b.png",
            "caption",
            "vqa",
            "\u{202e}",
        ])
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
        prop::collection::vec(".{0,16}", 0..4).prop_map(Value::from),
        Just(serde_json::json!([""])),
        json_value(),
    ];
    let edits = prop::collection::vec(
        (
            prop::sample::select(keys),
            prop::option::weighted(0.8, value),
        ),
        0..3,
    );
    (any::<bool>(), edits).prop_map(move |(is_vqa, edits)| {
        let mut record = if is_vqa { vqa.clone() } else { caption.clone() };
        for (key, value) in edits {
            match value {
                Some(v) => record[key] = v,
                None => {
                    record.as_object_mut().map(|m| m.remove(key));
                }
            }
        }
        record
    })
}

fn manifest_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => manifest_record().prop_map(|v| v.to_string()),
        1 => (manifest_record(), any::<prop::sample::Index>())
            .prop_map(|(v, at)| cut(&v.to_string(), at)),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => "[^\n]{0,40}",
        1 => Just(String::new()),
        1 => Just(" \t\r".to_string()),
    ]
}

/// A folder with images/1.png.
fn manifest_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("images")).expect("images folder");
    image::RgbImage::new(2, 2)
        .save(dir.path().join("images/1.png"))
        .expect("write images/1.png");
    dir
}

fn check_manifest(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = dir.join("manifest.jsonl");
    std::fs::write(&path, bytes).expect("write manifest");
    match load_manifest(&path) {
        Ok(m) => {
            // Each non-blank line is either a record or a problem, never both or neither.
            let text = std::str::from_utf8(bytes).expect("a manifest that loads is UTF-8");
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            prop_assert_eq!(m.records.len() + m.problems.len(), lines);
            prop_assert!(!m.records.is_empty());
            for record in &m.records {
                prop_assert!(record.image.is_file(), "{:?}", record.image);
            }
            for problem in &m.problems {
                prop_assert!(problem.line >= 1 && problem.file == path);
            }
        }
        Err(e) => names_file(&e, &path)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn any_manifest_loads_or_names_its_problem(lines in prop::collection::vec(manifest_line(), 0..8)) {
        let dir = manifest_folder();
        check_manifest(dir.path(), lines.join("\n").as_bytes())?;
        check_memory()?;
    }

    #[test]
    fn any_bytes_as_a_manifest_load_or_name_the_file(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = manifest_folder();
        check_manifest(dir.path(), &bytes)?;
        check_memory()?;
    }
}

#[test]
fn a_runaway_manifest_line_is_a_problem_not_a_memory_spike() {
    let dir = manifest_folder();
    let good = r#"{"image":"images/1.png","task":"caption","captions":["a"]}"#;
    let huge = format!(
        r#"{{"image":"images/1.png","task":"caption","captions":["{}"]}}"#,
        "a".repeat(fusecap::data::manifest::MAX_LINE_BYTES)
    );
    let path = dir.path().join("manifest.jsonl");
    std::fs::write(&path, format!("{good}\n{huge}\n")).expect("write");
    let m = load_manifest(&path).expect("the good line loads");
    assert_eq!(m.records.len(), 1);
    assert_eq!(m.problems.len(), 1);
    assert!(
        m.problems[0].to_string().contains("limit"),
        "{}",
        m.problems[0]
    );
}

// ---------------------------------------------------------------- config.json

fn tiny_config_json() -> serde_json::Map<String, Value> {
    match serde_json::to_value(Config::tiny(Fusion::Gated, 40)).expect("config to JSON") {
        Value::Object(map) => map,
        other => panic!("a config serialises as an object, not {other}"),
    }
}

/// Values that probe the limits of numeric fields, and wrong types.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(vec![
            0u64,
            1,
            2,
            3,
            4,
            7,
            8,
            64,
            1000,
            4096,
            8192,
            1 << 20,
            1_000_000_000,
            u32::MAX as u64,
            u64::MAX
        ])
        .prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop::sample::select(vec![-1.0, 0.5, 1e308, -0.0, 1e-30]).prop_map(Value::from),
        1 => prop::sample::select(vec!["concat", "gated", "conv", "sin-cos-2d", "center-crop", "gelu", ""])
            .prop_map(Value::from),
        1 => json_value(),
    ]
}

/// config.json text: a valid tiny config with some fields replaced or
/// removed, any JSON, or any text.
fn config_text() -> impl Strategy<Value = String> {
    let keys: Vec<String> = tiny_config_json().keys().cloned().collect();
    let edits = prop::collection::vec(
        (
            prop::sample::select(keys),
            prop::option::weighted(0.9, field_value()),
        ),
        0..5,
    );
    prop_oneof![
        6 => edits.prop_map(|edits| {
            let mut cfg = tiny_config_json();
            for (key, value) in edits {
                match value {
                    Some(v) => cfg.insert(key, v),
                    None => cfg.remove(&key),
                };
            }
            Value::Object(cfg).to_string()
        }),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,64}",
    ]
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn any_config_json_loads_valid_or_names_the_file(text in config_text()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, &text).expect("write config");
        match load_config(&path) {
            Ok(cfg) => {
                prop_assert!(cfg.validate().is_ok());
                prop_assert!(cfg.n_heads > 0 && cfg.d_model % cfg.n_heads == 0);
                prop_assert!(cfg.patch_size > 0 && cfg.image_size % cfg.patch_size == 0);
                prop_assert!(cfg.head_dim() * cfg.n_heads == cfg.d_model);
                prop_assert!(cfg.num_patches() >= 1 && cfg.grid_side() <= 64);
                for id in [cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.unk_id] {
                    prop_assert!((id as usize) < cfg.vocab_size);
                }
                prop_assert!(cfg.conv_stem_channels().iter().all(|&c| c >= 1));
                prop_assert!(cfg.image_std.iter().all(|s| s.is_finite() && *s > 0.0));
            }
            Err(e) => names_file(&e, &path)?,
        }
        check_memory()?;
    }
}

/// A small configuration that `validate` accepts, with every option varied.
fn small_valid_config() -> impl Strategy<Value = Config> {
    (
        (
            prop::sample::select(Fusion::ALL.to_vec()),
            prop::sample::select(vec![
                (4usize, 1usize),
                (4, 2),
                (8, 2),
                (8, 4),
                (12, 3),
                (16, 4),
            ]),
            1usize..48,
            0usize..3,
            0usize..3,
            0usize..3,
        ),
        (
            prop::sample::select(vec![
                (1usize, 1usize),
                (4, 2),
                (4, 4),
                (8, 2),
                (16, 4),
                (16, 8),
                (12, 3),
            ]),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..6,
            2usize..6,
            4usize..30,
        ),
    )
        .prop_map(
            |(
                (fusion, (d_model, n_heads), d_ff, vision_layers, text_layers, decoder_layers),
                (
                    (image_size, patch_size),
                    conv,
                    sincos,
                    crop,
                    sink,
                    text_cross,
                    max_text_len,
                    max_decode_len,
                    vocab_size,
                ),
            )| {
                let mut cfg = Config::tiny(fusion, vocab_size);
                cfg.d_model = d_model;
                cfg.n_heads = n_heads;
                cfg.d_ff = d_ff;
                cfg.vision_layers = vision_layers;
                cfg.text_layers = text_layers;
                cfg.decoder_layers = decoder_layers;
                cfg.image_size = image_size;
                cfg.patch_size = patch_size;
                if conv && patch_size >= 2 && patch_size.is_power_of_two() {
                    cfg.vision_stem = fusecap::model::VisionStem::Conv;
                }
                if sincos && d_model % 4 == 0 {
                    cfg.vision_positions = fusecap::model::VisionPositions::SinCos2d;
                }
                if crop {
                    cfg.resize = ResizeMode::CenterCrop;
                }
                cfg.cross_attention_sink = sink;
                cfg.text_cross_attention = text_cross;
                cfg.max_text_len = max_text_len;
                cfg.max_decode_len = max_decode_len;
                cfg
            },
        )
}

proptest! {
    #![proptest_config(cases(80))]

    /// What `validate` accepts, the model code can build and run.
    #[test]
    fn a_config_that_validates_builds_and_runs(cfg in small_valid_config(), text_len in 0usize..8) {
        prop_assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        let (model, _) = init_model(&cfg, 1, &Device::Cpu).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let s = cfg.image_size;
        let images = Tensor::zeros((2, 3, s, s), DType::F32, &Device::Cpu).expect("images");
        let ids: Vec<Vec<u32>> = vec![vec![cfg.unk_id; text_len], vec![]];
        let (text, valid) = pad_tokens(&ids, cfg.pad_id, cfg.max_text_len, &Device::Cpu).expect("pad");
        let image_of = Tensor::new(&[0u32, 1], &Device::Cpu).expect("image_of");
        let tokens = Tensor::new(&[[cfg.bos_id, cfg.eos_id], [cfg.bos_id, cfg.pad_id]], &Device::Cpu).expect("tokens");
        let logits = model
            .forward(&images, &image_of, &text, &valid, &tokens)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert_eq!(logits.dims(), &[2, 2, cfg.vocab_size]);
        check_memory()?;
    }
}

// ---------------------------------------------------------------- safetensors

struct Weights {
    cfg: Config,
    bytes: Vec<u8>,
}

/// The weights file of a tiny model, made once.
fn tiny_weights() -> &'static Weights {
    static WEIGHTS: OnceLock<Weights> = OnceLock::new();
    WEIGHTS.get_or_init(|| {
        let cfg = Config::tiny(Fusion::Gated, 12);
        let (_, varmap) = init_model(&cfg, 3, &Device::Cpu).expect("init");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        save_weights(&varmap, &path, DType::F16).expect("save");
        Weights {
            cfg,
            bytes: std::fs::read(&path).expect("read weights"),
        }
    })
}

/// Splits a safetensors file into its JSON header and its data.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Map<String, Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    (header, &bytes[8 + n..])
}

fn join_safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// One change to a tensor's header entry.
#[derive(Debug, Clone)]
enum HeaderEdit {
    Dtype(String),
    /// Another 16-bit type: the sizes still agree.
    SameSizeDtype(String),
    /// The dimensions reversed or merged: the element count still agrees.
    Reshape(bool),
    Shape(Vec<u64>),
    Offsets(u64, u64),
    Field(Value),
    Remove,
    Rename(String),
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let big = prop_oneof![
        0u64..64,
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(1 << 40),
        any::<u64>()
    ];
    prop_oneof![
        prop::sample::select(vec![
            "F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64",
            "BOOL", "F8_E4M3", "F8_E5M2", "F4", "E8M0", "f32", "", "X"
        ])
        .prop_map(|d| HeaderEdit::Dtype(d.to_string())),
        prop::sample::select(vec!["BF16", "I16", "U16"])
            .prop_map(|d| HeaderEdit::SameSizeDtype(d.to_string())),
        any::<bool>().prop_map(HeaderEdit::Reshape),
        prop::collection::vec(big.clone(), 0..4).prop_map(HeaderEdit::Shape),
        (big.clone(), big).prop_map(|(a, b)| HeaderEdit::Offsets(a, b)),
        json_value().prop_map(HeaderEdit::Field),
        Just(HeaderEdit::Remove),
        ".{0,12}".prop_map(HeaderEdit::Rename),
    ]
}

/// A weights file: the valid one with header entries edited, bytes flipped,
/// cut or appended, or any bytes at all.
fn weights_bytes() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), header_edit()), 1..4);
    let flips = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8);
    prop_oneof![
        3 => edits.prop_map(|edits| {
            let (mut header, data) = split_safetensors(&tiny_weights().bytes);
            let names: Vec<String> = header.keys().cloned().collect();
            for (at, edit) in edits {
                let name = at.get(&names).clone();
                let Some(entry) = header.get_mut(&name) else { continue };
                // An earlier `Field` edit may have made the entry a non-object,
                // which serde_json's indexing would panic on.
                let edits_a_field = matches!(
                    edit,
                    HeaderEdit::Dtype(_)
                        | HeaderEdit::SameSizeDtype(_)
                        | HeaderEdit::Reshape(_)
                        | HeaderEdit::Shape(_)
                        | HeaderEdit::Offsets(..)
                );
                if edits_a_field && !entry.is_object() {
                    continue;
                }
                match edit {
                    HeaderEdit::Dtype(d) | HeaderEdit::SameSizeDtype(d) => entry["dtype"] = Value::from(d),
                    HeaderEdit::Reshape(flatten) => {
                        let mut dims: Vec<u64> = entry["shape"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_u64).collect())
                            .unwrap_or_default();
                        if flatten {
                            dims = vec![dims.iter().product()];
                        } else {
                            dims.reverse();
                        }
                        entry["shape"] = Value::from(dims);
                    }
                    HeaderEdit::Shape(s) => entry["shape"] = Value::from(s),
                    HeaderEdit::Offsets(a, b) => entry["data_offsets"] = Value::from(vec![a, b]),
                    HeaderEdit::Field(v) => *entry = v,
                    HeaderEdit::Remove => { header.remove(&name); }
                    HeaderEdit::Rename(new) => {
                        if let Some(v) = header.remove(&name) { header.insert(new, v); }
                    }
                }
            }
            join_safetensors(&Value::Object(header), data)
        }),
        2 => (flips, any::<bool>()).prop_map(|(flips, in_header)| {
            let mut bytes = tiny_weights().bytes.clone();
            // In the length field and the header, or in the values (which
            // can become NaN or infinite).
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
            for (at, value) in flips {
                let i = if in_header { at.index(header) } else { header + at.index(bytes.len() - header) };
                bytes[i] = value;
            }
            bytes
        }),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(at, tail)| {
            let bytes = &tiny_weights().bytes;
            let mut out = bytes[..at.index(bytes.len() + 1)].to_vec();
            out.extend(tail);
            out
        }),
        1 => (any::<u64>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(n, rest)| {
            let mut out = n.to_le_bytes().to_vec();
            out.extend(rest);
            out
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn any_weights_file_loads_checked_or_names_the_file(bytes in weights_bytes()) {
        let weights = tiny_weights();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &bytes).expect("write weights");
        let varmap = VarMap::new();
        FusionModel::new(&weights.cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
            .expect("model");
        match load_weights(&varmap, &path, &Device::Cpu) {
            Ok(()) => {
                // Whatever loads is finite: NaN and infinities are refused.
                for var in varmap.all_vars() {
                    let values = var.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
                    prop_assert!(values.iter().all(|v| v.is_finite()));
                }
            }
            Err(e) => names_file(&e, &path)?,
        }
        check_memory()?;
    }
}

#[test]
fn the_unchanged_weights_file_loads() {
    let weights = tiny_weights();
    let (header, data) = split_safetensors(&weights.bytes);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, join_safetensors(&Value::Object(header), data)).expect("write");
    let varmap = VarMap::new();
    FusionModel::new(
        &weights.cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("model");
    load_weights(&varmap, &path, &Device::Cpu).expect("the valid file loads");
}

// ---------------------------------------------------------------- images

const EXTENSIONS: [&str; 8] = ["png", "jpg", "gif", "bmp", "webp", "tiff", "ppm", "bin"];

fn preprocess(size: usize, resize: ResizeMode) -> Preprocess {
    Preprocess {
        size,
        resize,
        mean: [0.5, 0.5, 0.5],
        std: [0.25, 0.25, 0.25],
    }
}

/// Decodes `bytes` stored as `name` and, if that works, preprocesses the image.
fn check_image_file(name: &str, bytes: &[u8]) -> Result<Option<image::RgbImage>, TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write image");
    match decode_rgb(&path) {
        Ok(img) => {
            prop_assert!(img.width() >= 1 && img.height() >= 1);
            for (size, resize) in [(16, ResizeMode::Stretch), (12, ResizeMode::CenterCrop)] {
                let pixels = preprocess(size, resize).pixels(&img);
                prop_assert_eq!(pixels.len(), 3 * size * size);
                prop_assert!(pixels.iter().all(|v| v.is_finite()));
            }
            Ok(Some(img))
        }
        Err(e) => {
            names_file(&e, &path)?;
            Ok(None)
        }
    }
}

/// A small image of any colour type, encoded in one of the supported formats.
fn encoded_image() -> impl Strategy<Value = (usize, image::DynamicImage, Vec<u8>)> {
    (1u32..24, 1u32..24, 0usize..6, any::<u64>(), 0usize..6)
        .prop_map(|(w, h, kind, seed, format)| {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            };
            let rgba = image::RgbaImage::from_fn(w, h, |_, _| {
                image::Rgba([next(), next(), next(), next()])
            });
            let img = image::DynamicImage::ImageRgba8(rgba);
            let img = match kind {
                0 => image::DynamicImage::ImageRgb8(img.to_rgb8()),
                1 => img,
                2 => image::DynamicImage::ImageLuma8(img.to_luma8()),
                3 => image::DynamicImage::ImageLumaA8(img.to_luma_alpha8()),
                4 => image::DynamicImage::ImageRgb16(img.to_rgb16()),
                _ => image::DynamicImage::ImageRgba16(img.to_rgba16()),
            };
            (format, img)
        })
        .prop_map(|(format, img)| {
            let (format, img) = match format {
                0 => (image::ImageFormat::Png, img),
                1 => (
                    image::ImageFormat::Jpeg,
                    image::DynamicImage::ImageRgb8(img.to_rgb8()),
                ),
                2 => (
                    image::ImageFormat::Gif,
                    image::DynamicImage::ImageRgba8(img.to_rgba8()),
                ),
                3 => (
                    image::ImageFormat::Bmp,
                    image::DynamicImage::ImageRgba8(img.to_rgba8()),
                ),
                4 => match img {
                    // The TIFF encoder has no grey-with-alpha.
                    image::DynamicImage::ImageLumaA8(_) => (
                        image::ImageFormat::Tiff,
                        image::DynamicImage::ImageRgba8(img.to_rgba8()),
                    ),
                    img => (image::ImageFormat::Tiff, img),
                },
                _ => (
                    image::ImageFormat::WebP,
                    image::DynamicImage::ImageRgba8(img.to_rgba8()),
                ),
            };
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, format).expect("encode the image");
            let index = [
                image::ImageFormat::Png,
                image::ImageFormat::Jpeg,
                image::ImageFormat::Gif,
                image::ImageFormat::Bmp,
                image::ImageFormat::Tiff,
                image::ImageFormat::WebP,
            ]
            .iter()
            .position(|f| *f == format)
            .unwrap_or(0);
            (index, img, bytes.into_inner())
        })
}

const ENCODED_EXTENSIONS: [&str; 6] = ["png", "jpg", "gif", "bmp", "tiff", "webp"];

proptest! {
    #![proptest_config(cases(800))]

    #[test]
    fn any_bytes_as_an_image_decode_or_name_the_file(
        ext in prop::sample::select(EXTENSIONS.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check_image_file(&format!("x.{ext}"), &bytes)?;
        check_memory()?;
    }

    #[test]
    fn small_images_of_every_kind_decode_and_preprocess((format, img, bytes) in encoded_image()) {
        let name = format!("x.{}", ENCODED_EXTENSIONS[format]);
        let decoded = check_image_file(&name, &bytes)?;
        let decoded = decoded.ok_or_else(|| TestCaseError::fail(format!("{name} did not decode")))?;
        prop_assert_eq!((decoded.width(), decoded.height()), (img.width(), img.height()));
        // Lossless formats without transparency keep every 8-bit pixel.
        if matches!(ENCODED_EXTENSIONS[format], "png" | "tiff") && !img.color().has_alpha() {
            prop_assert!(decoded == img.to_rgb8(), "{} pixels changed", name);
        }
        check_memory()?;
    }

    #[test]
    fn damaged_images_decode_or_name_the_file(
        (format, _img, bytes) in encoded_image(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        keep in any::<prop::sample::Index>(),
    ) {
        let mut bytes = bytes;
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(keep.index(bytes.len() + 1));
        check_image_file(&format!("x.{}", ENCODED_EXTENSIONS[format]), &bytes)?;
        check_memory()?;
    }
}

/// A PNG whose header claims 16384 × 16384 pixels but holds no data.
#[test]
fn an_image_header_claiming_huge_sides_is_refused_without_allocating() {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&[0; 3], 1, 1, image::ExtendedColorType::Rgb8)
        .expect("encode");
    // Width and height are big-endian u32 at bytes 16..24 of the IHDR chunk;
    // its CRC (bytes 29..33) must be recomputed for the decoder to read on.
    png[16..20].copy_from_slice(&16_384u32.to_be_bytes());
    png[20..24].copy_from_slice(&16_384u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.png");
    std::fs::write(&path, &png).expect("write");
    let before = peak_memory_mib();
    let err = decode_rgb(&path).expect_err("a header without pixels is an error");
    assert!(format!("{err:#}").contains("huge.png"), "{err:#}");
    if let (Some(before), Some(after)) = (before, peak_memory_mib()) {
        assert!(after < before + 512, "decoding took {} MiB", after - before);
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------- questions

fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| TextTokenizer::default_vocabulary().expect("default vocabulary"))
}

/// Any Unicode text, long repetitions, and mixtures of vocabulary words,
/// punctuation and odd characters.
fn question() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("what".to_string()),
        Just("colour".to_string()),
        Just("?".to_string()),
        Just(" ".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{200b}".to_string()),
        Just("\u{feff}".to_string()),
        Just("e\u{301}".to_string()),
        Just("\u{1f600}".to_string()),
        Just("[PAD]".to_string()),
        Just("[UNK]".to_string()),
        Just("\u{130}".to_string()),
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        3 => any::<String>(),
        2 => prop::collection::vec(piece.clone(), 0..40).prop_map(|v| v.concat()),
        1 => (piece, 1usize..20_000).prop_map(|(p, n)| p.repeat(n)),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn any_question_tokenizes_within_the_vocabulary_and_the_length_limit(text in question()) {
        let tok = tokenizer();
        let ids = tok.encode(&text).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        // Special tokens never come from the text.
        prop_assert!(ids.iter().all(|&id| id == 3 || id >= 4), "{:?}", ids);
        let max_len = 32;
        let (padded, valid) = pad_tokens(std::slice::from_ref(&ids), 0, max_len, &Device::Cpu).expect("pad");
        let len = padded.dims()[1];
        prop_assert!(len >= 1 && len <= max_len && len == ids.len().clamp(1, max_len));
        prop_assert_eq!(valid.dims(), padded.dims());
        tok.decode(&ids).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        check_memory()?;
    }
}

proptest! {
    #![proptest_config(cases(60))]

    /// The path `ask` takes: tokenizer, padding, then the encoders of a tiny model.
    #[test]
    fn any_question_runs_through_the_encoders(text in question()) {
        static MODEL: OnceLock<(Config, FusionModel)> = OnceLock::new();
        let (cfg, model) = MODEL.get_or_init(|| {
            let cfg = Config::tiny(Fusion::Concat, tokenizer().vocab_size());
            let (model, _) = init_model(&cfg, 2, &Device::Cpu).expect("init");
            (cfg, model)
        });
        let ids = tokenizer().encode(&text).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let (ids, valid) = pad_tokens(&[ids], cfg.pad_id, cfg.max_text_len, &Device::Cpu).expect("pad");
        let images = Tensor::zeros((1, 3, cfg.image_size, cfg.image_size), DType::F32, &Device::Cpu)
            .expect("image");
        let memory = model
            .encode(&images, &ids, &valid)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let values = memory.text.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
        prop_assert!(values.iter().all(|v| v.is_finite()));
        check_memory()?;
    }
}
