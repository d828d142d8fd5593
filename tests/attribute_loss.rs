//! The auxiliary attribute loss: each vision token of a streamed scene is
//! asked for the colour, shape and size of the object under it.
mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_same_loss_curve, read_log, train_in_process};
use fusecap::data::batch::{Augment, Batch, Dataset};
use fusecap::data::cells::cell_targets;
use fusecap::data::stream::{mixed_step, streamed_item, validation_set, StreamOptions};
use fusecap::model::{Config, Fusion, FusionModel};
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{loss, TrainOptions};

fn tokenizer() -> TextTokenizer {
    let texts = fusecap::data::stream::vocabulary_texts();
    TextTokenizer::train(texts.iter().map(String::as_str), 1).expect("tokenizer")
}

fn config(fusion: Fusion, tokenizer: &TextTokenizer, weight: f32) -> Config {
    Config {
        attribute_loss: weight,
        ..Config::tiny(fusion, tokenizer.vocab_size())
    }
}

const STREAM: StreamOptions = StreamOptions {
    seed: 5,
    share: 0.5,
};

#[test]
fn a_config_without_the_field_has_no_head_and_writes_no_field() {
    let tokenizer = tokenizer();
    let off = Config::tiny(Fusion::Concat, tokenizer.vocab_size());
    let json = serde_json::to_string(&off).expect("json");
    assert!(!json.contains("attribute_loss"), "{json}");
    let read: Config = serde_json::from_str(&json).expect("read back");
    assert_eq!(read.attribute_loss, 0.0);
    let names = |cfg: &Config| {
        let vm = VarMap::new();
        FusionModel::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
            .expect("model");
        let data = vm.data().lock().expect("vars");
        data.keys().filter(|k| k.contains("attribute_head")).count()
    };
    assert_eq!(names(&off), 0);
    assert_eq!(names(&config(Fusion::Concat, &tokenizer, 0.5)), 2);
    let bad = Config {
        attribute_loss: -1.0,
        ..off
    };
    let err = bad.validate().expect_err("negative weight");
    assert!(err.contains("attribute_loss"), "{err}");
}

#[test]
fn streamed_scenes_carry_the_targets_of_their_scene_and_a_step_keeps_them() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Concat, &tokenizer, 1.0);
    let val = validation_set(&STREAM, 5, &tokenizer, &cfg).expect("questions");
    for i in 0..5u64 {
        let item = streamed_item(!STREAM.seed, i, false);
        let expected = cell_targets(&item.scene, cfg.grid_side()).expect("scene shapes");
        assert_eq!(val.cell_targets.get(&(i as usize)), Some(&expected));
    }
    let step = mixed_step(&val, &[1, 3], &STREAM, 0, 2, &tokenizer, &cfg).expect("step");
    assert_eq!(
        step.cell_targets.len(),
        4,
        "two kept images and two new scenes"
    );
    assert_eq!(step.cell_targets[&0], val.cell_targets[&1]);
    let without = Config {
        attribute_loss: 0.0,
        ..cfg
    };
    let plain = validation_set(&STREAM, 5, &tokenizer, &without).expect("questions");
    assert!(
        plain.cell_targets.is_empty(),
        "targets made without the loss"
    );
}

/// The batch's loss at attribute weight `weight`, with the weights of `vm`.
fn batch_loss(vm: &VarMap, cfg: &Config, weight: f32, batch: &Batch) -> f32 {
    let cfg = Config {
        attribute_loss: weight,
        ..cfg.clone()
    };
    let model = FusionModel::new(&cfg, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu))
        .expect("model");
    loss(&model, batch, 0.0)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar")
}

#[test]
fn the_attribute_loss_adds_to_the_answer_loss_in_proportion_to_its_weight() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Separate, &tokenizer, 1.0);
    let ds = validation_set(&STREAM, 6, &tokenizer, &cfg).expect("questions");
    let batch = Batch::new(
        &ds,
        &[0, 1, 2, 3, 4, 5],
        &cfg,
        Augment::NONE,
        0,
        &Device::Cpu,
    )
    .expect("batch");
    assert!(batch.cells.is_some());
    let vm = VarMap::new();
    let (one, two) = (
        batch_loss(&vm, &cfg, 1.0, &batch),
        batch_loss(&vm, &cfg, 2.0, &batch),
    );
    let answers = batch_loss(
        &vm,
        &cfg,
        1.0,
        &Batch {
            cells: None,
            ..batch.clone()
        },
    );
    let attributes = two - one;
    // At initialisation each of the 3 attributes is near a uniform guess.
    assert!(
        (0.5..4.0).contains(&attributes),
        "attribute loss {attributes}"
    );
    assert!(
        (one - answers - attributes).abs() < 1e-4,
        "loss {one} is not answers {answers} + attributes {attributes}"
    );
}

#[test]
fn the_attribute_loss_trains_the_vision_encoder_and_not_the_decoder() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Gated, &tokenizer, 1.0);
    let ds = validation_set(&STREAM, 4, &tokenizer, &cfg).expect("questions");
    let batch =
        Batch::new(&ds, &[0, 1, 2, 3], &cfg, Augment::NONE, 0, &Device::Cpu).expect("batch");
    let vm = VarMap::new();
    let model = FusionModel::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
        .expect("model");
    let with = loss(&model, &batch, 0.0).expect("loss");
    let without = loss(
        &model,
        &Batch {
            cells: None,
            ..batch.clone()
        },
        0.0,
    )
    .expect("loss");
    let grads = (with - without)
        .and_then(|d| d.backward())
        .expect("backward");
    let data = vm.data().lock().expect("vars");
    let norm = |name: &str| {
        grads
            .get(data[name].as_tensor())
            .map(common::squared_norm)
            .unwrap_or(0.0)
    };
    assert!(norm("attribute_head.weight") > 0.0);
    assert!(norm("vision.patch_embed.weight") > 0.0);
    // The answer parts of the two losses cancel.
    let decoder = norm("decoder.ln_f.weight");
    assert!(decoder < 1e-10, "decoder gradient {decoder}");
}

#[test]
fn data_parallel_training_with_the_attribute_loss_follows_the_single_thread_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Concat, &tokenizer, 1.0);
    let train = validation_set(&STREAM, 16, &tokenizer, &cfg).expect("manifest part");
    let val = Dataset::default();
    let run = |out: &Path, threads: usize| {
        let options = TrainOptions {
            steps: 6,
            batch_size: 8,
            warmup_steps: 2,
            eval_every: 100,
            checkpoint_every: 100,
            stream: Some(STREAM),
            ..TrainOptions::default()
        };
        train_in_process(
            out,
            cfg.clone(),
            tokenizer.clone(),
            (&train, &val),
            options,
            false,
            threads,
            None,
        );
        read_log(out)
    };
    let (one, three) = (
        run(&dir.path().join("one"), 1),
        run(&dir.path().join("three"), 3),
    );
    assert_same_loss_curve(&one, &three);
}
