//! The pretrained vision block: a frozen DINOv2 directory, pooled and
//! projected to the decoder's width.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
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
    s.freeze = false;
    assert!(build(s).contains("not supported yet"));
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
    let b = PretrainedVision::load(&s, 16, vb, &dev).expect("from the directory");
    let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).expect("images");
    let (ya, yb) = (
        a.forward(&images).expect("a"),
        b.forward(&images).expect("b"),
    );
    assert_eq!(ya.dims(), &[2, 1, 16]);
    let diff = (ya - yb)
        .expect("diff")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("s");
    assert!(diff < 1e-6, "{diff}");
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
    let diff = (fast - out)
        .expect("d")
        .abs()
        .expect("a")
        .max_all()
        .expect("m")
        .to_scalar::<f32>()
        .expect("s");
    assert!(diff < 1e-4, "{diff}");
}
