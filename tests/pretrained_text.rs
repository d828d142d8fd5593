//! The pretrained text block: a frozen BERT directory whose per-word features,
//! projected to the decoder's width, replace the text encoder's tables.

mod common;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::cli::{fusecap, stderr, stdout};
use common::{assert_gradients_reach, max_abs_diff};
use fusecap::encoders::bert;
use fusecap::model::dir::{
    init_model, init_model_with_words, save_model_dir, sorted_vars, ModelDir,
};
use fusecap::model::pretrained_text::{PretrainedText, TextEncoderSpec};
use fusecap::model::{Config, Fusion, FusionModel};
use fusecap::tokenizer::TextTokenizer;

const HIDDEN: usize = 16;

/// The BERT vocabulary: specials, whole words, and "##dish" so that the model
/// word "reddish" splits into two pieces. "purple" is not in it.
const BERT_VOCAB: [&str; 15] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "what", "is", "the", "color", "red", "##dish", "shape",
    "circle", "?", "there", "a",
];

/// Writes a tiny BERT encoder directory with random weights.
fn bert_dir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let config = serde_json::json!({
        "vocab_size": BERT_VOCAB.len(), "hidden_size": HIDDEN, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "max_position_embeddings": 32, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "classifier_dropout": null, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_value(config).expect("bert config");
    let map = VarMap::new();
    candle_transformers::models::bert::BertModel::load(
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        &cfg,
    )
    .expect("bert");
    for var in map.all_vars() {
        let r = Tensor::randn(0f32, 0.5, var.shape(), &Device::Cpu).expect("randn");
        var.set(&r).expect("set");
    }
    map.save(dir.join("model.safetensors")).expect("weights");
    let vocab: serde_json::Map<String, serde_json::Value> = BERT_VOCAB
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let special = |id: usize| {
        serde_json::json!({"id": id, "content": BERT_VOCAB[id], "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null,
        "padding": {"strategy": {"Fixed": 32}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0), special(1), special(2), special(3)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).expect("tokenizer");
}

fn model_tokenizer() -> TextTokenizer {
    TextTokenizer::train(
        std::iter::once("what is the color of the reddish circle ? is there a purple shape ?"),
        1,
    )
    .expect("tokenizer")
}

fn spec(dir: &Path) -> TextEncoderSpec {
    serde_json::from_value(serde_json::json!({"kind": "bert", "dir": dir})).expect("spec")
}

fn pretrained_config(fusion: Fusion, vocab: usize, dir: &Path) -> Config {
    Config {
        text_encoder: Some(spec(dir)),
        ..Config::tiny(fusion, vocab)
    }
}

/// The encoder in `dir` over `tok`'s words, projecting to 8 with `map`'s weights.
fn pretrained_text(dir: &Path, tok: &TextTokenizer, map: &VarMap) -> PretrainedText {
    let dev = Device::Cpu;
    PretrainedText::new(
        bert::TextEncoder::load(dir, &dev).expect("load"),
        &tok.words(),
        8,
        VarBuilder::from_varmap(map, DType::F32, &dev),
    )
    .expect("pretrained text")
}

fn ids(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    tok.encode(text).expect("encode")
}

/// Two questions of 9 and 6 words, padded: ids and validity [2, 9].
fn two_questions(tok: &TextTokenizer, cfg: &Config) -> (Tensor, Tensor) {
    fusecap::model::pad_tokens(
        &[
            ids(tok, "what is the color of the reddish circle ?"),
            ids(tok, "is there a purple shape ?"),
        ],
        cfg.pad_id,
        cfg.max_text_len,
        &Device::Cpu,
    )
    .expect("pad")
}

#[test]
fn a_words_feature_is_the_mean_of_its_wordpieces_in_context() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bert_dir(tmp.path());
    let tok = model_tokenizer();
    let dev = Device::Cpu;
    let text = pretrained_text(tmp.path(), &tok, &VarMap::new());
    let reference = bert::TextEncoder::load(tmp.path(), &dev).expect("load");
    let piece = |w: &str| reference.token_id(w).expect("piece");

    let question = ids(&tok, "the reddish circle ?");
    assert_eq!(question.len(), 4, "four model words");
    let features = text.word_features(&[question]).expect("features");
    let (hidden, _) = reference
        .encode_ids(&[vec![
            piece("[CLS]"),
            piece("the"),
            piece("red"),
            piece("##dish"),
            piece("circle"),
            piece("?"),
            piece("[SEP]"),
        ]])
        .expect("bert");
    let hidden = hidden.squeeze(0).expect("squeeze");
    let row = |i: usize| hidden.get(i).expect("row");
    let expected = Tensor::stack(
        &[
            row(1),
            ((row(2) + row(3)).expect("add") / 2.0).expect("mean"),
            row(4),
            row(5),
        ],
        0,
    )
    .expect("stack");
    let got = Tensor::from_slice(&features[0], (4, HIDDEN), &dev).expect("tensor");
    assert!(max_abs_diff(&got, &expected) < 1e-5);

    // A word the encoder does not know is its [UNK], still in context.
    let question = ids(&tok, "is there a purple shape ?");
    let features = text.word_features(&[question]).expect("features");
    let words = ["is", "there", "a", "[UNK]", "shape", "?"];
    let input: Vec<u32> = std::iter::once(piece("[CLS]"))
        .chain(words.iter().map(|w| piece(w)))
        .chain(std::iter::once(piece("[SEP]")))
        .collect();
    let (hidden, _) = reference.encode_ids(&[input]).expect("bert");
    let expected = hidden
        .squeeze(0)
        .and_then(|h| h.narrow(0, 1, words.len()))
        .expect("words");
    let got = Tensor::from_slice(&features[0], (words.len(), HIDDEN), &dev).expect("tensor");
    assert!(max_abs_diff(&got, &expected) < 1e-5);
}

#[test]
fn repeated_questions_run_the_encoder_once_and_padding_does_not_change_a_question() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bert_dir(tmp.path());
    let tok = model_tokenizer();
    let dev = Device::Cpu;
    let map = VarMap::new();
    let text = pretrained_text(tmp.path(), &tok, &map);
    let (a, b) = (
        ids(&tok, "what is the color ?"),
        ids(&tok, "is there a shape ?"),
    );
    let (batch, valid) =
        fusecap::model::pad_tokens(&[a.clone(), b.clone(), a.clone(), vec![a[0]]], 0, 32, &dev)
            .expect("pad");
    let out = text.forward(&batch, &valid).expect("forward");
    assert_eq!(out.dims(), &[4, 5, 8]);
    assert_eq!(text.cached_questions(), 3, "three distinct questions");
    let diff = |x: &Tensor, y: &Tensor| max_abs_diff(x, y);
    let row = |t: &Tensor, i: usize| t.get(i).expect("row");
    assert_eq!(diff(&row(&out, 0), &row(&out, 2)), 0.0);
    // The same question alone, unpadded and uncached, gives the same vectors.
    let (alone, valid_alone) = fusecap::model::pad_tokens(&[b], 0, 32, &dev).expect("pad");
    let fresh = pretrained_text(tmp.path(), &tok, &map);
    let single = fresh.forward(&alone, &valid_alone).expect("forward");
    let padded = row(&out, 1).narrow(0, 0, 5).expect("narrow");
    assert!(diff(&padded, &row(&single, 0)) < 1e-5);
}

#[test]
fn every_fusion_trains_the_projection_and_never_the_frozen_encoder_and_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let encoder = tmp.path().join("minilm");
    bert_dir(&encoder);
    let tok = model_tokenizer();
    let words = tok.words();
    let dev = Device::Cpu;
    for (i, fusion) in Fusion::ALL.into_iter().enumerate() {
        // The model's own text blocks may attend to the image after MiniLM.
        let cfg = Config {
            text_cross_attention: i != 1,
            ..pretrained_config(fusion, tok.vocab_size(), &encoder)
        };
        let (model, varmap) = init_model_with_words(&cfg, &words, 7, &dev).expect("init");
        common::set_gates(&varmap, 0.5);
        let vars = sorted_vars(&varmap);
        let text_vars: Vec<&str> = vars
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with("text.") && !n.starts_with("text.blocks"))
            .collect();
        assert_eq!(
            text_vars,
            [
                "text.ln_f.bias",
                "text.ln_f.weight",
                "text.pretrained.proj.bias",
                "text.pretrained.proj.weight"
            ],
            "{fusion}: no token or position table, and no BERT weight is trainable"
        );

        let images = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &dev).expect("images");
        let (text, valid) = two_questions(&tok, &cfg);
        let memory = model.encode(&images, &text, &valid).expect("encode");
        assert_eq!(
            memory.text.dims(),
            &[2, 9, cfg.d_model],
            "one token per word"
        );
        let cross = model.cross_kv(&memory).expect("cross");
        let tokens = Tensor::new(&[[1u32, 5, 6], [1, 7, 8]], &dev).expect("tokens");
        let logits = model
            .decoder
            .forward(&tokens, &cross, None, None)
            .expect("decode");
        let target = Tensor::new(&[[5u32, 6, 2], [7, 8, 2]], &dev).expect("target");
        assert_gradients_reach(&logits, &target, &vars, fusion.name());

        // A model directory names the encoder relative to itself and loads
        // to the same answers.
        let out = tmp.path().join(format!("model-{fusion}"));
        save_model_dir(&out, &cfg, &varmap, &tok, DType::F32).expect("save");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("read"))
                .expect("json");
        assert_eq!(
            written["text_encoder"]["dir"],
            serde_json::json!("../minilm")
        );
        let loaded = ModelDir::load(&out, &dev).expect("load");
        let again = loaded.model.encode(&images, &text, &valid).expect("encode");
        assert!(max_abs_diff(&again.text, &memory.text) < 1e-5, "{fusion}");
    }
}

#[test]
fn configs_that_cannot_work_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bert_dir(tmp.path());
    let tok = model_tokenizer();
    let base = pretrained_config(Fusion::Concat, tok.vocab_size(), tmp.path());
    let refusal = |cfg: Config, words: &[String]| {
        init_model_with_words(&cfg, words, 1, &Device::Cpu)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    let words = tok.words();
    for (freeze, lr_scale, reason) in [
        (true, 0.1, "fine-tuned encoder only"),
        (false, 0.0, "positive number"),
        (false, f64::NAN, "positive number"),
    ] {
        let mut cfg = base.clone();
        if let Some(s) = cfg.text_encoder.as_mut() {
            (s.freeze, s.lr_scale) = (freeze, lr_scale);
        }
        let err = refusal(cfg, &words);
        assert!(err.contains("lr_scale") && err.contains(reason), "{err}");
    }
    let mut gpt = base.clone();
    if let Some(s) = gpt.text_encoder.as_mut() {
        s.kind = "gpt2".into();
    }
    assert!(refusal(gpt, &words).contains("\"bert\""));
    let err = init_model(&base, 1, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("vocabulary"), "{err}");
    let mut missing = base.clone();
    if let Some(s) = missing.text_encoder.as_mut() {
        s.dir = tmp.path().join("nowhere");
    }
    let err = refusal(missing, &words);
    assert!(err.contains("nowhere"), "{err}");
    // Without a text encoder, a model is as before: no vocabulary needed.
    FusionModel::new(
        &Config::tiny(Fusion::Gated, 20),
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
    )
    .expect("a model without a text encoder");
}

#[test]
fn the_cli_trains_and_answers_with_a_bert_text_encoder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    bert_dir(&dir.join("encoders/minilm"));
    let synth = fusecap(
        dir,
        &[
            "data",
            "synth",
            "--count",
            "12",
            "--image-size",
            "16",
            "--out",
            "d",
            "--quiet",
        ],
    );
    assert!(synth.status.success(), "{}", stderr(&synth));
    let image = std::fs::read_dir(dir.join("d/images"))
        .expect("images")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .next()
        .expect("an image");
    std::fs::create_dir_all(dir.join("configs")).expect("mkdir");
    // Frozen, then fine-tuned on two data-parallel threads at the model's
    // learning rate and at a thousandth of it.
    let runs = [
        (true, 1.0, "m", "1"),
        (false, 1.0, "tuned", "2"),
        (false, 1e-3, "slow", "2"),
    ];
    for (freeze, lr_scale, out, threads) in runs {
        // Named relative to the config file's folder, not the working directory.
        let mut config = pretrained_config(Fusion::Separate, 4, Path::new("../encoders/minilm"));
        if let Some(s) = config.text_encoder.as_mut() {
            s.freeze = freeze;
            s.lr_scale = lr_scale;
        }
        std::fs::write(
            dir.join("configs/bert.json"),
            serde_json::to_string(&config).expect("json"),
        )
        .expect("write");
        let train = fusecap(
            dir,
            &[
                "train",
                "--config",
                "configs/bert.json",
                "--fusion",
                "separate",
                "--data",
                "d/manifest.jsonl",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--threads",
                threads,
                "--save-dtype",
                "f32",
                "--out",
                out,
                "--quiet",
            ],
        );
        assert!(train.status.success(), "{out}: {}", stderr(&train));
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(out).join("config.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(saved["text_encoder"]["dir"], "../encoders/minilm");
        let weights = tensors_in(&dir.join(out).join("model.safetensors"));
        let bert_weights = weights
            .keys()
            .filter(|k| k.starts_with("text.pretrained.encoder."))
            .count();
        assert_eq!(
            bert_weights > 0,
            !freeze,
            "{out}: the model holds BERT's weights only when it fine-tunes them"
        );
        let ask = fusecap(
            dir,
            &[
                "ask",
                image.to_str().expect("utf-8 path"),
                "what color is the circle ?",
                "--model",
                out,
                "--format",
                "jsonl",
            ],
        );
        assert!(ask.status.success(), "{out}: {}", stderr(&ask));
        let line: serde_json::Value =
            serde_json::from_str(stdout(&ask).trim()).expect("one JSON line");
        assert_eq!(line["model"], out);
        assert!(
            line["output"].is_string() && line["logprob"].is_number(),
            "{line}"
        );
    }
    let original = tensors_in(&dir.join("encoders/minilm/model.safetensors"));
    let moved = |out: &str| {
        let weights = tensors_in(&dir.join(out).join("model.safetensors"));
        original
            .iter()
            .map(|(name, t)| max_abs_diff(&weights[&format!("text.pretrained.encoder.{name}")], t))
            .fold(0f32, f32::max)
    };
    let (full, slow) = (moved("tuned"), moved("slow"));
    assert!(
        full > 0.0 && slow < full / 100.0,
        "lr_scale 1e-3 moved BERT's weights by {slow}, lr_scale 1 by {full}"
    );
}

/// The tensors of a safetensors file, by name.
fn tensors_in(file: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(file, &Device::Cpu).expect("read safetensors")
}

#[test]
fn the_trainable_bert_matches_candle_transformers_and_gives_every_weight_a_gradient() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bert_dir(tmp.path());
    let dev = Device::Cpu;
    let fast = bert::TextEncoder::load(tmp.path(), &dev).expect("load");
    let (config, tokenizer) = bert::read_config_and_tokenizer(tmp.path()).expect("config");
    let mut map = VarMap::new();
    let trainable = bert::TextEncoder::with_gradients(
        config,
        tokenizer,
        VarBuilder::from_varmap(&map, DType::F32, &dev),
        true,
    )
    .expect("trainable");
    let file = tmp.path().join("model.safetensors");
    let mut names: Vec<String> = map.data().lock().expect("lock").keys().cloned().collect();
    let mut in_file: Vec<String> = tensors_in(&file).into_keys().collect();
    names.sort();
    in_file.sort();
    assert_eq!(
        names, in_file,
        "the same tensor names as candle-transformers"
    );
    map.load(&file).expect("load weights");

    // Two questions of different lengths: padding must not leak into either.
    let inputs = [vec![2u32, 4, 5, 6, 7, 3], vec![2, 13, 14, 11, 3]];
    let (want, mask) = fast.encode_ids(&inputs).expect("fast");
    let (got, _) = trainable.encode_ids(&inputs).expect("trainable");
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-5, "{diff}");

    let mask = mask
        .to_dtype(DType::F32)
        .and_then(|m| m.unsqueeze(2))
        .expect("mask");
    let grads = got
        .broadcast_mul(&mask)
        .and_then(|t| t.sqr())
        .and_then(|t| t.sum_all())
        .and_then(|t| t.backward())
        .expect("backward");
    for var in map.all_vars() {
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient for every tensor");
        let norm = common::squared_norm(g);
        assert!(norm.is_finite() && norm > 0.0, "{:?}: {norm}", var.shape());
    }
}

#[test]
fn a_fine_tuned_text_encoder_starts_from_its_directory_trains_with_the_model_and_is_saved_with_it()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let encoder = tmp.path().join("minilm");
    bert_dir(&encoder);
    let original = tensors_in(&encoder.join("model.safetensors"));
    let tok = model_tokenizer();
    let words = tok.words();
    let dev = Device::Cpu;
    let mut cfg = pretrained_config(Fusion::Separate, tok.vocab_size(), &encoder);
    if let Some(s) = cfg.text_encoder.as_mut() {
        s.freeze = false;
    }
    let (model, varmap) = init_model_with_words(&cfg, &words, 7, &dev).expect("init");
    let vars = sorted_vars(&varmap);
    let bert: Vec<_> = vars
        .iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("text.pretrained.encoder.")?, v)))
        .collect();
    assert_eq!(bert.len(), original.len());
    for (name, var) in &bert {
        assert_eq!(
            max_abs_diff(var.as_tensor(), &original[*name]),
            0.0,
            "{name} starts from the directory"
        );
    }

    let images = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &dev).expect("images");
    let (text, valid) = two_questions(&tok, &cfg);
    let logits = |model: &FusionModel| {
        let memory = model.encode(&images, &text, &valid).expect("encode");
        let cross = model.cross_kv(&memory).expect("cross");
        let tokens = Tensor::new(&[[1u32, 5, 6], [1, 7, 8]], &dev).expect("tokens");
        model
            .decoder
            .forward(&tokens, &cross, None, None)
            .expect("decode")
    };
    let target = Tensor::new(&[[5u32, 6, 2], [7, 8, 2]], &dev).expect("target");
    assert_gradients_reach(&logits(&model), &target, &vars, "separate");
    common::one_adamw_step(&varmap, &logits(&model), &target);
    for (name, var) in &bert {
        assert!(
            max_abs_diff(var.as_tensor(), &original[*name]) > 0.0,
            "{name} did not move"
        );
    }

    // The trained encoder is saved with the model, and a load reads it from
    // there, not from the directory, which now holds another encoder.
    let out = tmp.path().join("model");
    save_model_dir(&out, &cfg, &varmap, &tok, DType::F32).expect("save");
    bert_dir(&encoder);
    let loaded = ModelDir::load(&out, &dev).expect("load");
    let diff = max_abs_diff(&logits(&loaded.model), &logits(&model));
    assert!(diff < 1e-4, "{diff}");
}
