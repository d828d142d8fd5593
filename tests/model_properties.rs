//! Properties of the fusion model, checked on tiny randomly initialised models
//! of every fusion kind.

mod common;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use common::{assert_gradients_reach, max_abs_diff, set_gates};
use fusecap::generate::{greedy, GenerateOptions};
use fusecap::model::attention::attention;
use fusecap::model::dir::{init_model, parameter_count, save_weights, sorted_vars};
use fusecap::model::vision::{coordinate_channels, sincos_2d, Conv3x3};
use fusecap::model::{
    pad_tokens, Config, Fusion, FusionModel, Memory, SelfCache, VisionPositions, VisionStem,
};
use rand::{Rng, SeedableRng};

const VOCAB: usize = 40;

fn tiny(fusion: Fusion, seed: u64) -> (FusionModel, VarMap) {
    init_model(&Config::tiny(fusion, VOCAB), seed, &Device::Cpu).expect("init")
}

fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor")
}

fn images(cfg: &Config, batch: usize, seed: u64) -> Tensor {
    random_tensor(&[batch, 3, cfg.image_size, cfg.image_size], seed)
}

fn questions(batch: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..batch)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(4..VOCAB as u32))
                .collect()
        })
        .collect()
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    let len = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), len), &Device::Cpu).expect("ids")
}

fn encode(model: &FusionModel, images: &Tensor, qs: &[Vec<u32>], pad_to: usize) -> Memory {
    let (text, valid) = pad_tokens(qs, 0, pad_to, &Device::Cpu).expect("pad");
    // pad_tokens pads to the longest row; extend to `pad_to` to test padding.
    let extra = pad_to.saturating_sub(text.dim(1).expect("dim"));
    let (text, valid) = if extra > 0 {
        let b = qs.len();
        let zeros_u = Tensor::zeros((b, extra), DType::U32, &Device::Cpu).expect("zeros");
        let zeros_f = Tensor::zeros((b, extra), DType::F32, &Device::Cpu).expect("zeros");
        (
            Tensor::cat(&[&text, &zeros_u], 1).expect("cat"),
            Tensor::cat(&[&valid, &zeros_f], 1).expect("cat"),
        )
    } else {
        (text, valid)
    };
    model.encode(images, &text, &valid).expect("encode")
}

fn logits(model: &FusionModel, memory: &Memory, tokens: &Tensor) -> Tensor {
    let cross = model.cross_kv(memory).expect("cross kv");
    model
        .decoder
        .forward(tokens, &cross, None, None)
        .expect("decode")
}

#[test]
fn attention_matches_naive_loops() {
    let (b, h, tq, tk, dh) = (2, 3, 4, 5, 8);
    let q = random_tensor(&[b, h, tq, dh], 1);
    let k = random_tensor(&[b, h, tk, dh], 2);
    let v = random_tensor(&[b, h, tk, dh], 3);
    // Mask the last key of batch row 1.
    let mut mask = vec![0f32; b * tk];
    mask[tk + tk - 1] = -1e9;
    let mask_t = Tensor::from_vec(mask.clone(), (b, 1, 1, tk), &Device::Cpu).expect("mask");
    let (out, _) = attention(&q, &k, &v, Some(&mask_t)).expect("attention");
    let (qv, kv, vv) = (q.to_vec3::<f32>().ok(), (), ());
    let _ = (qv, kv, vv);
    let q4: Vec<Vec<Vec<Vec<f32>>>> = (0..b)
        .map(|i| q.get(i).expect("g").to_vec3().expect("v"))
        .collect();
    let k4: Vec<Vec<Vec<Vec<f32>>>> = (0..b)
        .map(|i| k.get(i).expect("g").to_vec3().expect("v"))
        .collect();
    let v4: Vec<Vec<Vec<Vec<f32>>>> = (0..b)
        .map(|i| v.get(i).expect("g").to_vec3().expect("v"))
        .collect();
    let o4: Vec<Vec<Vec<Vec<f32>>>> = (0..b)
        .map(|i| out.get(i).expect("g").to_vec3().expect("v"))
        .collect();
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..tq {
                let scores: Vec<f64> = (0..tk)
                    .map(|j| {
                        let dot: f64 = (0..dh)
                            .map(|d| q4[bi][hi][i][d] as f64 * k4[bi][hi][j][d] as f64)
                            .sum();
                        dot / (dh as f64).sqrt() + mask[bi * tk + j] as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for d in 0..dh {
                    let expected: f64 = (0..tk)
                        .map(|j| exps[j] / sum * v4[bi][hi][j][d] as f64)
                        .sum();
                    let got = o4[bi][hi][i][d] as f64;
                    assert!(
                        (expected - got).abs() < 1e-5,
                        "b{bi} h{hi} q{i} d{d}: {expected} vs {got}"
                    );
                }
            }
        }
    }
}

#[test]
fn padding_the_question_does_not_change_logits() {
    for fusion in Fusion::ALL {
        let (model, _) = tiny(fusion, 11);
        let imgs = images(&model.cfg, 2, 5);
        let qs = questions(2, 6, 7);
        let tokens = ids(&questions(2, 5, 9));
        let short = logits(&model, &encode(&model, &imgs, &qs, 8), &tokens);
        let long = logits(&model, &encode(&model, &imgs, &qs, 32), &tokens);
        let diff = max_abs_diff(&short, &long);
        assert!(
            diff < 1e-5,
            "{fusion}: padding to 8 vs 32 changed logits by {diff}"
        );
    }
}

#[test]
fn batched_greedy_equals_one_at_a_time() {
    for fusion in Fusion::ALL {
        let (model, _) = tiny(fusion, 21);
        let imgs = images(&model.cfg, 4, 6);
        let qs = vec![
            vec![5, 6, 7],
            vec![8],
            vec![9, 10, 11, 12, 13],
            vec![14, 15],
        ];
        let opts = GenerateOptions {
            max_new_tokens: 8,
            min_new_tokens: 8,
            ..Default::default()
        };
        let batched = greedy(&model, &encode(&model, &imgs, &qs, 5), &opts).expect("greedy");
        for (i, want) in batched.iter().enumerate() {
            let one = encode(
                &model,
                &imgs.narrow(0, i, 1).expect("narrow"),
                &qs[i..i + 1],
                qs[i].len(),
            );
            let single = greedy(&model, &one, &opts).expect("greedy");
            assert_eq!(
                single[0].tokens, want.tokens,
                "{fusion}: row {i} tokens differ"
            );
            assert!(
                (single[0].logprob - want.logprob).abs() < 1e-4,
                "{fusion}: row {i} log-prob differs"
            );
            // Logits of the generated sequence, batched vs alone.
            let mut seq = vec![model.cfg.bos_id];
            seq.extend(&want.tokens);
            let tokens = ids(&[seq]);
            let batch_memory = encode(&model, &imgs, &qs, 5);
            let batch_logits = logits(
                &model,
                &batch_memory,
                &tokens.repeat((4, 1)).expect("repeat"),
            )
            .get(i)
            .expect("row");
            let alone = logits(&model, &one, &tokens).get(0).expect("row");
            assert!(
                max_abs_diff(&batch_logits, &alone) < 1e-4,
                "{fusion}: row {i} logits differ"
            );
        }
    }
}

#[test]
fn decoder_is_causal() {
    for fusion in Fusion::ALL {
        let (model, _) = tiny(fusion, 31);
        let memory = encode(&model, &images(&model.cfg, 1, 1), &questions(1, 4, 2), 4);
        let mut seq = vec![1, 5, 6, 7, 8, 9];
        let before = logits(&model, &memory, &ids(std::slice::from_ref(&seq)));
        for t in 0..seq.len() - 1 {
            let mut changed = seq.clone();
            changed[t + 1] = if seq[t + 1] == 20 { 21 } else { 20 };
            let after = logits(&model, &memory, &ids(&[changed]));
            let prefix = |x: &Tensor| x.narrow(1, 0, t + 1).expect("narrow");
            let diff = max_abs_diff(&prefix(&before), &prefix(&after));
            assert!(
                diff < 1e-6,
                "{fusion}: changing token {} moved logits at ≤ {t} by {diff}",
                t + 1
            );
            let later = max_abs_diff(
                &before.narrow(1, t + 1, 1).expect("n"),
                &after.narrow(1, t + 1, 1).expect("n"),
            );
            assert!(
                later > 0.0,
                "{fusion}: token {} should change its own position's logits",
                t + 1
            );
        }
        seq.clear();
    }
}

#[test]
fn cached_decoding_equals_full_recompute() {
    for fusion in Fusion::ALL {
        let (model, _) = tiny(fusion, 41);
        let memory = encode(&model, &images(&model.cfg, 2, 3), &questions(2, 3, 4), 3);
        let seqs = questions(2, 7, 8);
        let cross = model.cross_kv(&memory).expect("cross");
        let mut cache = SelfCache::new(model.cfg.decoder_layers);
        for step in 0..7 {
            let step_tokens: Vec<Vec<u32>> = seqs.iter().map(|s| vec![s[step]]).collect();
            let incremental = model
                .decoder
                .forward(&ids(&step_tokens), &cross, Some(&mut cache), None)
                .expect("step");
            let prefix: Vec<Vec<u32>> = seqs.iter().map(|s| s[..=step].to_vec()).collect();
            let full = logits(&model, &memory, &ids(&prefix))
                .narrow(1, step, 1)
                .expect("narrow");
            let diff = max_abs_diff(&incremental, &full);
            assert!(
                diff < 1e-4,
                "{fusion}: step {step} cached vs full differ by {diff}"
            );
        }
    }
}

#[test]
fn empty_question_gives_finite_logits() {
    for fusion in Fusion::ALL {
        let (model, varmap) = tiny(fusion, 51);
        set_gates(&varmap, 0.7);
        let memory = encode(&model, &images(&model.cfg, 2, 3), &[vec![], vec![]], 0);
        let out = logits(&model, &memory, &ids(&[vec![1, 5, 6], vec![1, 7, 8]]));
        let values: Vec<f32> = out.flatten_all().expect("flat").to_vec1().expect("vec");
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{fusion}: non-finite logits for an empty question"
        );
    }
}

#[test]
fn concat_reads_the_text_memory() {
    let (model, _) = tiny(Fusion::Concat, 61);
    let imgs = images(&model.cfg, 1, 3);
    let tokens = ids(&[vec![1, 5, 6]]);
    let a = logits(&model, &encode(&model, &imgs, &[vec![5, 6, 7]], 3), &tokens);
    let b = logits(
        &model,
        &encode(&model, &imgs, &[vec![9, 10, 11]], 3),
        &tokens,
    );
    assert!(
        max_abs_diff(&a, &b) > 1e-4,
        "the question had no effect under concat"
    );
}

#[test]
fn gates_at_zero_cut_both_memories_and_open_gates_use_both() {
    let (model, varmap) = tiny(Fusion::Gated, 71);
    let tokens = ids(&[vec![1, 5, 6]]);
    let run = |img_seed: u64, q: Vec<u32>| {
        logits(
            &model,
            &encode(&model, &images(&model.cfg, 1, img_seed), &[q], 3),
            &tokens,
        )
    };
    set_gates(&varmap, 0.0);
    let base = run(1, vec![5, 6, 7]);
    assert!(
        max_abs_diff(&base, &run(2, vec![5, 6, 7])) == 0.0,
        "image changed the output with closed gates"
    );
    assert!(
        max_abs_diff(&base, &run(1, vec![9, 10, 11])) == 0.0,
        "question changed the output with closed gates"
    );
    set_gates(&varmap, 0.5);
    let base = run(1, vec![5, 6, 7]);
    assert!(
        max_abs_diff(&base, &run(2, vec![5, 6, 7])) > 1e-4,
        "image had no effect with open gates"
    );
    assert!(
        max_abs_diff(&base, &run(1, vec![9, 10, 11])) > 1e-4,
        "question had no effect with open gates"
    );
}

#[test]
fn a_fresh_gated_model_starts_at_the_configured_gate() {
    let mut cfg = Config::tiny(Fusion::Gated, VOCAB);
    let gates = |cfg: &Config| {
        let (model, _) = init_model(cfg, 3, &Device::Cpu).expect("init");
        model.gate_values().expect("gates")
    };
    let open = gates(&cfg);
    assert_eq!(open.len(), cfg.decoder_layers);
    for (v, t) in open {
        assert!((v - 1f32.tanh()).abs() < 1e-6 && (t - 1f32.tanh()).abs() < 1e-6);
    }
    cfg.gate_init = 0.0;
    assert!(gates(&cfg).iter().all(|&(v, t)| v == 0.0 && t == 0.0));
}

#[test]
fn parameter_counts_follow_the_design() {
    let cfg = Config::tiny(Fusion::Concat, VOCAB);
    let count = |fusion| {
        let (_, varmap) = tiny(fusion, 1);
        let cross = parameter_count(&varmap, |n| n.contains("cross_attn"));
        (parameter_count(&varmap, |_| true), cross)
    };
    let (concat, concat_cross) = count(Fusion::Concat);
    let (separate, separate_cross) = count(Fusion::Separate);
    let (gated, gated_cross) = count(Fusion::Gated);
    let d = cfg.d_model;
    // One cross-attention sublayer: LayerNorm (2d) + four d×d projections,
    // and a sink's key and value (2d).
    assert!(cfg.cross_attention_sink);
    let sublayer = 2 * d + 4 * d * d + 2 * d;
    assert_eq!(concat_cross, cfg.decoder_layers * sublayer);
    assert_eq!(
        separate_cross,
        2 * concat_cross,
        "separate has twice the cross-attention parameters"
    );
    assert_eq!(gated_cross, separate_cross);
    // concat adds the two modality embeddings; gated adds two scalars per layer.
    assert_eq!(separate - concat, concat_cross - 2 * d);
    assert_eq!(gated - separate, 2 * cfg.decoder_layers);
}

#[test]
fn save_and_load_give_the_same_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    for fusion in Fusion::ALL {
        let (model, varmap) = tiny(fusion, 81);
        set_gates(&varmap, 0.3);
        let path = dir.path().join(format!("{fusion}.safetensors"));
        save_weights(&varmap, &path, DType::F32).expect("save");
        let (reloaded, fresh) = tiny(fusion, 999);
        fusecap::model::dir::load_weights(&fresh, &path, &Device::Cpu).expect("load");
        let memory_a = encode(&model, &images(&model.cfg, 1, 3), &questions(1, 3, 3), 3);
        let memory_b = encode(&reloaded, &images(&model.cfg, 1, 3), &questions(1, 3, 3), 3);
        let tokens = ids(&[vec![1, 5, 6]]);
        assert_eq!(
            max_abs_diff(
                &logits(&model, &memory_a, &tokens),
                &logits(&reloaded, &memory_b, &tokens)
            ),
            0.0,
            "{fusion}"
        );
    }
}

#[test]
fn loading_names_every_mismatched_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.safetensors");
    let (_, concat) = tiny(Fusion::Concat, 1);
    save_weights(&concat, &path, DType::F32).expect("save");
    let (_, separate) = tiny(Fusion::Separate, 1);
    let err = fusecap::model::dir::load_weights(&separate, &path, &Device::Cpu)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("missing tensor decoder.layers.0.cross_attn_vision.q_proj.weight"),
        "{err}"
    );
    assert!(
        err.contains("unexpected tensor decoder.layers.0.cross_attn.q_proj.weight"),
        "{err}"
    );
    let mut wider = Config::tiny(Fusion::Concat, VOCAB);
    wider.d_model = 48;
    let (_, wide) = init_model(&wider, 1, &Device::Cpu).expect("init");
    let err = fusecap::model::dir::load_weights(&wide, &path, &Device::Cpu)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains(
            "tensor decoder.layers.0.cross_attn.q_proj.weight: expected [48, 48], found [32, 32]"
        ),
        "{err}"
    );
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    let kinds = Fusion::ALL
        .into_iter()
        .map(|f| (f, VisionStem::Patch, VisionPositions::Learned, false))
        .chain([
            (
                Fusion::Concat,
                VisionStem::Conv,
                VisionPositions::Learned,
                false,
            ),
            (
                Fusion::Gated,
                VisionStem::Patch,
                VisionPositions::SinCos2d,
                true,
            ),
            (
                Fusion::Separate,
                VisionStem::Conv,
                VisionPositions::SinCos2d,
                true,
            ),
            (
                Fusion::Concat,
                VisionStem::Patch,
                VisionPositions::Learned,
                true,
            ),
        ]);
    for (i, (fusion, stem, positions, stem_norm)) in kinds.enumerate() {
        let cfg = Config {
            vision_stem: stem,
            vision_positions: positions,
            vision_stem_norm: stem_norm,
            // Every other kind also has vision tokens that read the question.
            question_vision_layers: i % 2,
            text_before_vision: i >= 4,
            ..Config::tiny(fusion, VOCAB)
        };
        let (model, varmap) = init_model(&cfg, 91, &Device::Cpu).expect("init");
        set_gates(&varmap, 0.5);
        let memory = encode(&model, &images(&model.cfg, 2, 3), &questions(2, 4, 4), 4);
        let input = ids(&questions(2, 5, 5));
        let target = ids(&questions(2, 5, 6));
        let logits = logits(&model, &memory, &input);
        assert_gradients_reach(
            &logits,
            &target,
            &sorted_vars(&varmap),
            &format!("{fusion}/{stem:?}"),
        );
        let _ = D::Minus1;
    }
}

/// The conv stem's im2col convolution is a 3×3, stride-2, padding-1
/// convolution: it matches candle's own conv2d with the same weights.
#[test]
fn conv_stem_layer_equals_a_strided_convolution() {
    let cfg = Config::tiny(Fusion::Concat, VOCAB);
    let (c_in, c_out, size) = (3, 5, 8);
    let varmap = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let conv = Conv3x3::new(c_in, c_out, &cfg, vb.pp("conv")).expect("conv");
    let vars = sorted_vars(&varmap);
    let find = |suffix: &str| {
        vars.iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, v)| v.clone())
            .expect("var")
    };
    find("bias").set(&random_tensor(&[c_out], 5)).expect("bias");
    let bias = find("bias").as_tensor().clone();
    let weight = find("weight").as_tensor().clone(); // [out, 9·in], columns (ky, kx, c)
    let kernel = weight
        .reshape((c_out, 3, 3, c_in))
        .expect("reshape")
        .permute((0, 3, 1, 2))
        .expect("permute")
        .contiguous()
        .expect("contiguous");
    let x = random_tensor(&[2, c_in, size, size], 9);
    let expected = x
        .conv2d(&kernel, 1, 2, 1, 1)
        .expect("conv2d")
        .broadcast_add(&bias.reshape((1, c_out, 1, 1)).expect("bias"))
        .expect("add")
        .permute((0, 2, 3, 1))
        .expect("nhwc");
    let got = conv
        .forward(&x.permute((0, 2, 3, 1)).expect("nhwc"))
        .expect("forward");
    assert_eq!(got.dims(), &[2, size / 2, size / 2, c_out]);
    let diff = max_abs_diff(&got, &expected.contiguous().expect("contiguous"));
    assert!(diff < 1e-5, "im2col conv differs from conv2d by {diff}");
}

#[test]
fn the_inference_layout_gives_the_training_layout_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = fusecap::tokenizer::TextTokenizer::default_vocabulary().expect("vocab");
    for fusion in Fusion::ALL {
        let cfg = Config::tiny(fusion, tokenizer.vocab_size());
        let (model, varmap) = init_model(&cfg, 7, &Device::Cpu).expect("init");
        set_gates(&varmap, 0.4);
        let path = dir.path().join(fusion.name());
        fusecap::model::dir::save_model_dir(&path, &cfg, &varmap, &tokenizer, DType::F32)
            .expect("save");
        let loaded = fusecap::model::dir::ModelDir::load(&path, &Device::Cpu).expect("load");
        assert!(loaded.model.cfg.inference);
        let imgs = images(&cfg, 3, 3);
        let qs = questions(3, 4, 3);
        let tokens = ids(&questions(3, 6, 4));
        let a = logits(&model, &encode(&model, &imgs, &qs, 4), &tokens);
        let b = logits(
            &loaded.model,
            &encode(&loaded.model, &imgs, &qs, 4),
            &tokens,
        );
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-4, "{fusion}: inference layout differs by {diff}");
    }
}

/// Model directories written before the attention sink, the text
/// encoder's image attention and the conv stem existed have none of the fields in their config; they
/// must still load, as the models they were trained as.
#[test]
fn configs_without_the_newer_fields_build_the_older_model() {
    let cfg = Config::tiny(Fusion::Separate, VOCAB);
    let mut json = serde_json::to_value(&cfg).expect("json");
    let fields = json.as_object_mut().expect("object");
    for field in ["cross_attention_sink", "text_cross_attention"] {
        assert_eq!(fields.remove(field), Some(true.into()), "{field}");
    }
    assert_eq!(fields.remove("vision_stem"), Some("patch".into()));
    assert_eq!(fields.remove("vision_positions"), Some("learned".into()));
    assert_eq!(fields.remove("vision_stem_norm"), Some(false.into()));
    assert_eq!(fields.remove("question_vision_layers"), Some(0.into()));
    assert_eq!(fields.remove("text_before_vision"), Some(false.into()));
    assert_eq!(fields.remove("gate_init"), Some(1.0.into()));
    let old: Config = serde_json::from_value(json).expect("old config");
    assert!(!old.cross_attention_sink && !old.text_cross_attention);
    assert_eq!(old.vision_stem, VisionStem::Patch);
    assert_eq!(old.vision_positions, VisionPositions::Learned);
    assert!(!old.vision_stem_norm);
    assert_eq!(old.question_vision_layers, 0);
    assert!(!old.text_before_vision);
    assert_eq!(
        old.gate_init, 0.0,
        "older model directories had closed gates"
    );
    let (_, new) = tiny(Fusion::Separate, 1);
    let (_, older) = init_model(&old, 1, &Device::Cpu).expect("init");
    let count = |varmap: &VarMap, part: &str| parameter_count(varmap, |n| n.contains(part));
    let d = cfg.d_model;
    // A key and a value of d per cross-attention: vision and text per decoder
    // layer, and the image attention of each text layer.
    let sinks = (2 * cfg.decoder_layers + cfg.text_layers) * 2 * d;
    assert_eq!(count(&new, "sink"), sinks);
    // LayerNorm (2d) and four d×d projections per text layer, plus its sink.
    let image_attention = cfg.text_layers * (2 * d + 4 * d * d + 2 * d);
    assert_eq!(
        count(&new, "image_attn") + count(&new, "ln_image"),
        image_attention
    );
    for part in ["sink", "image_attn", "ln_image"] {
        assert_eq!(count(&older, part), 0, "{part}");
    }
}

/// The fixed 2-D positions: the first half of the channels depends on the
/// row alone, the second on the column alone, and no two cells share a code.
#[test]
fn sin_cos_positions_code_row_and_column_apart() {
    let (side, d) = (6, 32);
    let table = sincos_2d(side, d, DType::F32, &Device::Cpu)
        .expect("table")
        .to_vec2::<f32>()
        .expect("rows");
    assert_eq!(table.len(), side * side);
    let cell = |r: usize, c: usize| &table[r * side + c];
    for r in 0..side {
        for c in 0..side {
            assert_eq!(
                cell(r, c)[..d / 2],
                cell(r, 0)[..d / 2],
                "row half of ({r}, {c})"
            );
            assert_eq!(
                cell(r, c)[d / 2..],
                cell(0, c)[d / 2..],
                "column half of ({r}, {c})"
            );
        }
    }
    assert_rows_differ(&table, "share a position code");
}

/// Every two rows differ by more than 1e-3 in L1 distance; `what` ends the message.
fn assert_rows_differ(rows: &[Vec<f32>], what: &str) {
    for a in 0..rows.len() {
        for b in a + 1..rows.len() {
            let distance: f32 = rows[a]
                .iter()
                .zip(&rows[b])
                .map(|(x, y)| (x - y).abs())
                .sum();
            assert!(distance > 1e-3, "cells {a} and {b} {what}");
        }
    }
}

/// A model with fixed positions (sin-cos or coordinate channels) stores no
/// position table, encodes to one token per grid cell, and reloads to the
/// same logits.
#[test]
fn a_model_with_fixed_positions_has_no_position_table_and_round_trips() {
    for positions in [VisionPositions::SinCos2d, VisionPositions::Coordinates] {
        let cfg = Config {
            vision_positions: positions,
            image_size: 24,
            patch_size: 4,
            ..Config::tiny(Fusion::Concat, VOCAB)
        };
        let (model, varmap) = init_model(&cfg, 5, &Device::Cpu).expect("init");
        let vars = sorted_vars(&varmap);
        let names: Vec<&String> = vars.iter().map(|(n, _)| n).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("vision.pos_embed")),
            "{positions:?}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("text.pos_embed")),
            "{names:?}"
        );
        let (_, patch_embed) = vars
            .iter()
            .find(|(n, _)| n == "vision.patch_embed.weight")
            .expect("patch_embed");
        let channels = cfg.vision_input_channels();
        assert_eq!(
            channels,
            if positions == VisionPositions::Coordinates {
                5
            } else {
                3
            }
        );
        assert_eq!(patch_embed.dims(), &[cfg.d_model, channels * 4 * 4]);
        let memory = encode(&model, &images(&cfg, 2, 1), &questions(2, 3, 1), 3);
        assert_eq!(memory.vision.dims(), &[2, 36, cfg.d_model]);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        save_weights(&varmap, &path, DType::F32).expect("save");
        let (reloaded, fresh) = init_model(&cfg, 6, &Device::Cpu).expect("init");
        fusecap::model::dir::load_weights(&fresh, &path, &Device::Cpu).expect("load");
        let again = encode(&reloaded, &images(&cfg, 2, 1), &questions(2, 3, 1), 3);
        let tokens = ids(&[vec![1, 5], vec![1, 6]]);
        assert_eq!(
            max_abs_diff(
                &logits(&model, &memory, &tokens),
                &logits(&reloaded, &again, &tokens)
            ),
            0.0,
            "{positions:?}"
        );
    }
}

/// With coordinate channels a token's place enters through the stem: on an
/// image of one flat colour every grid cell still encodes differently, and
/// the channels run from -2 to 2 along columns (channel 0) and rows (1).
#[test]
fn coordinate_channels_tell_flat_cells_apart() {
    let grid = coordinate_channels(4, DType::F32, &Device::Cpu)
        .expect("coordinates")
        .squeeze(0)
        .expect("squeeze")
        .to_vec3::<f32>()
        .expect("values");
    for y in 0..4 {
        for x in 0..4 {
            assert_eq!(
                grid[0][y][x], grid[0][0][x],
                "column channel varies down column {x}"
            );
            assert_eq!(
                grid[1][y][x], grid[1][y][0],
                "row channel varies along row {y}"
            );
        }
    }
    assert_eq!((grid[0][0][0], grid[0][0][3]), (-1.5, 1.5));
    assert_eq!((grid[1][0][0], grid[1][3][0]), (-1.5, 1.5));

    let cfg = Config {
        vision_positions: VisionPositions::Coordinates,
        image_size: 24,
        patch_size: 8,
        ..Config::tiny(Fusion::Concat, VOCAB)
    };
    let (model, _) = init_model(&cfg, 3, &Device::Cpu).expect("init");
    let flat = Tensor::full(0.7f32, (1, 3, 24, 24), &Device::Cpu).expect("image");
    let tokens = encode(&model, &flat, &questions(1, 3, 1), 3)
        .vision
        .squeeze(0)
        .expect("squeeze")
        .to_vec2::<f32>()
        .expect("tokens");
    assert_eq!(tokens.len(), 9);
    assert_rows_differ(&tokens, "of a flat image encode alike");
}

/// With `question_vision_layers` the vision memory of one image depends on
/// the question asked about it; without, it does not.
#[test]
fn vision_tokens_read_the_question_only_when_configured() {
    for layers in [0, 2] {
        let cfg = Config {
            question_vision_layers: layers,
            ..Config::tiny(Fusion::Separate, VOCAB)
        };
        let (model, varmap) = init_model(&cfg, 8, &Device::Cpu).expect("init");
        let conditioning = parameter_count(&varmap, |n| n.starts_with("conditioning."));
        let image = images(&cfg, 1, 4);
        let a = encode(&model, &image, &[vec![5, 6, 7]], 3).vision;
        let b = encode(&model, &image, &[vec![9, 10, 11]], 3).vision;
        let diff = max_abs_diff(&a, &b);
        if layers == 0 {
            assert_eq!(conditioning, 0);
            assert_eq!(diff, 0.0);
        } else {
            assert!(conditioning > 0);
            assert!(diff > 1e-4, "vision memory ignores the question ({diff})");
        }
    }
}

/// With `text_before_vision` a separate or gated decoder reads the question
/// before the image in every layer, so even the first layer's image
/// attention depends on the question; in the default order it cannot (the
/// image memory here ignores the question). Concat has one attention and
/// is unchanged by the flag.
#[test]
fn text_before_vision_lets_the_first_image_query_read_the_question() {
    let first_layer_vision = |model: &FusionModel, question: Vec<u32>| {
        let memory = encode(model, &images(&model.cfg, 1, 4), &[question], 3);
        let cross = model.cross_kv(&memory).expect("cross kv");
        let mut weights = Vec::new();
        let logits = model
            .decoder
            .forward(&ids(&[vec![1, 7]]), &cross, None, Some(&mut weights))
            .expect("decode");
        let parts = weights[0]
            .parts(model.cfg.num_patches(), model.cfg.cross_attention_sink)
            .expect("parts");
        (parts.vision, logits)
    };
    for fusion in Fusion::ALL {
        let cfg = |text_first| Config {
            text_before_vision: text_first,
            text_cross_attention: false,
            question_vision_layers: 0,
            ..Config::tiny(fusion, VOCAB)
        };
        let (plain, _) = init_model(&cfg(false), 12, &Device::Cpu).expect("init");
        let (text_first, varmap) = init_model(&cfg(true), 12, &Device::Cpu).expect("init");
        set_gates(&varmap, 0.5);
        let (a, logits_a) = first_layer_vision(&text_first, vec![5, 6, 7]);
        let (b, _) = first_layer_vision(&text_first, vec![9, 10, 11]);
        let (c, _) = first_layer_vision(&plain, vec![5, 6, 7]);
        let (d, _) = first_layer_vision(&plain, vec![9, 10, 11]);
        if fusion == Fusion::Concat {
            let (_, logits_c) = first_layer_vision(&plain, vec![5, 6, 7]);
            assert_eq!(
                max_abs_diff(&logits_a, &logits_c),
                0.0,
                "concat ignores the flag"
            );
        } else {
            assert_eq!(max_abs_diff(&c, &d), 0.0, "{fusion}: image first");
            let diff = max_abs_diff(&a, &b);
            assert!(
                diff > 1e-4,
                "{fusion}: the first image query ignores the question ({diff})"
            );
        }
    }
}
