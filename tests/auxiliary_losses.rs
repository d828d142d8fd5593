//! The auxiliary losses on streamed scenes: the attribute loss asks each
//! vision token for the colour, shape and size of the object under it; the
//! mention loss asks each question-conditioned token whether the question
//! describes its object.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_same_loss_curve, read_log, train_in_process};
use fusecap::data::batch::{Augment, Batch, Dataset};
use fusecap::data::cells::{cell_targets, mentioned_cells, subject_cells};
use fusecap::data::stream::{mixed_step, streamed_item, validation_set, StreamOptions};
use fusecap::model::{Config, Fusion, FusionModel, MentionTarget};
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{loss, TrainOptions};

fn tokenizer() -> TextTokenizer {
    let texts = fusecap::data::stream::vocabulary_texts();
    TextTokenizer::train(texts.iter().map(String::as_str), 1).expect("tokenizer")
}

/// The tiny architecture with one question-reading vision layer and the two
/// losses at weights `attribute` and `mention`.
fn config(fusion: Fusion, tokenizer: &TextTokenizer, attribute: f32, mention: f32) -> Config {
    Config {
        attribute_loss: attribute,
        mention_loss: mention,
        question_vision_layers: 1,
        ..Config::tiny(fusion, tokenizer.vocab_size())
    }
}

const STREAM: StreamOptions = StreamOptions {
    seed: 5,
    share: 0.5,
    pool: None,
    type_weights: BTreeMap::new(),
    ramp_steps: None,
};

/// A model of `cfg` whose variables live in `vm`.
fn model_on(cfg: &Config, vm: &VarMap) -> FusionModel {
    FusionModel::new(cfg, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu)).expect("model")
}

/// One batch of the first `n` streamed validation questions.
fn streamed_batch(cfg: &Config, tokenizer: &TextTokenizer, n: usize) -> Batch {
    let ds = validation_set(&STREAM, n, tokenizer, cfg).expect("questions");
    let all: Vec<usize> = (0..n).collect();
    Batch::new(&ds, &all, cfg, Augment::NONE, 0, &Device::Cpu).expect("batch")
}

/// The number of variables whose name contains `part`.
fn variables_named(cfg: &Config, part: &str) -> usize {
    let vm = VarMap::new();
    model_on(cfg, &vm);
    let data = vm.data().lock().expect("vars");
    data.keys().filter(|k| k.contains(part)).count()
}

#[test]
fn a_config_without_the_fields_has_no_heads_and_writes_no_fields() {
    let tokenizer = tokenizer();
    let off = config(Fusion::Concat, &tokenizer, 0.0, 0.0);
    let json = serde_json::to_string(&off).expect("json");
    assert!(!json.contains("attribute_loss") && !json.contains("mention_loss"));
    let read: Config = serde_json::from_str(&json).expect("read back");
    assert_eq!((read.attribute_loss, read.mention_loss), (0.0, 0.0));
    for head in ["attribute_head", "mention_head"] {
        assert_eq!(variables_named(&off, head), 0, "{head}");
    }
    let on = config(Fusion::Concat, &tokenizer, 0.5, 0.5);
    for head in ["attribute_head", "mention_head"] {
        assert_eq!(variables_named(&on, head), 2, "{head}");
    }
    let negative = config(Fusion::Concat, &tokenizer, -1.0, 0.0);
    let err = negative.validate().expect_err("negative weight");
    assert!(err.contains("attribute_loss"), "{err}");
    let blind = Config {
        question_vision_layers: 0,
        ..on
    };
    let err = blind
        .validate()
        .expect_err("mentions without reading the question");
    assert!(
        err.contains("mention_loss") && err.contains("question_vision_layers"),
        "{err}"
    );
}

#[test]
fn streamed_scenes_carry_the_targets_of_their_scene_and_question_and_a_step_keeps_them() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Concat, &tokenizer, 1.0, 1.0);
    let val = validation_set(&STREAM, 12, &tokenizer, &cfg).expect("questions");
    let mut mentioned = 0;
    for i in 0..12u64 {
        let item = streamed_item(!STREAM.seed, i, false);
        let expected = cell_targets(&item.scene, cfg.grid_side()).expect("scene shapes");
        assert_eq!(val.cell_targets.get(&(i as usize)), Some(&expected));
        let question = item.question.expect("a question");
        let marks = mentioned_cells(&item.scene, &question, cfg.grid_side());
        mentioned += usize::from(marks.is_some());
        assert_eq!(val.examples[i as usize].mentions, marks, "{question}");
    }
    assert!(mentioned > 0, "no question named an attribute");
    let step = mixed_step(&val, &[1, 3], &STREAM, 0, 2, &tokenizer, &cfg).expect("step");
    assert_eq!(
        step.cell_targets.len(),
        4,
        "two kept images and two new scenes"
    );
    assert_eq!(step.cell_targets[&0], val.cell_targets[&1]);
    assert_eq!(step.examples[1].mentions, val.examples[3].mentions);
    let without = config(Fusion::Concat, &tokenizer, 0.0, 0.0);
    let plain = validation_set(&STREAM, 12, &tokenizer, &without).expect("questions");
    assert!(
        plain.cell_targets.is_empty(),
        "targets made without the loss"
    );
    assert!(plain.examples.iter().all(|e| e.mentions.is_none()));
}

#[test]
fn with_subjects_as_the_target_every_streamed_question_marks_the_objects_of_its_answer() {
    let tokenizer = tokenizer();
    let cfg = Config {
        mention_target: MentionTarget::Subjects,
        ..config(Fusion::Concat, &tokenizer, 0.0, 1.0)
    };
    cfg.validate().expect("subjects with a mention loss");
    let json = serde_json::to_string(&cfg).expect("json");
    let read: Config = serde_json::from_str(&json).expect("read back");
    assert_eq!(read.mention_target, MentionTarget::Subjects);
    let val = validation_set(&STREAM, 40, &tokenizer, &cfg).expect("questions");
    let mut differ = 0;
    for i in 0..40u64 {
        let item = streamed_item(!STREAM.seed, i, false);
        let question = item.question.clone().expect("a question");
        let marks = subject_cells(&item.scene, &item.subjects, cfg.grid_side());
        differ += usize::from(
            mentioned_cells(&item.scene, &question, cfg.grid_side()).as_ref() != Some(&marks),
        );
        assert_eq!(val.examples[i as usize].mentions, Some(marks), "{question}");
    }
    assert!(differ > 0, "subjects marked what the named target marks");
    let unused = Config {
        mention_loss: 0.0,
        ..cfg
    };
    let err = unused.validate().expect_err("a target without its loss");
    assert!(err.contains("mention_target"), "{err}");
}

/// The batch's loss with the weights of `vm` and the given loss weights.
fn batch_loss(vm: &VarMap, cfg: &Config, (attribute, mention): (f32, f32), batch: &Batch) -> f32 {
    let cfg = Config {
        attribute_loss: attribute,
        mention_loss: mention,
        ..cfg.clone()
    };
    let model = model_on(&cfg, vm);
    loss(&model, batch, 0.0)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar")
}

#[test]
fn each_auxiliary_loss_adds_to_the_answer_loss_in_proportion_to_its_weight() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Separate, &tokenizer, 1.0, 1.0);
    let batch = streamed_batch(&cfg, &tokenizer, 12);
    assert!(batch.cells.is_some() && batch.mentions.is_some());
    // Seeded weights: candle's own initialisation is not seeded, and some of
    // its draws give the mention head confident (far from uniform) logits.
    let (_, vm) = fusecap::model::dir::init_model(&cfg, 3, &Device::Cpu).expect("init");
    let both = batch_loss(&vm, &cfg, (1.0, 1.0), &batch);
    let attributes = batch_loss(&vm, &cfg, (2.0, 1.0), &batch) - both;
    let mentions = batch_loss(&vm, &cfg, (1.0, 2.0), &batch) - both;
    let answers = batch_loss(
        &vm,
        &cfg,
        (1.0, 1.0),
        &Batch {
            cells: None,
            mentions: None,
            ..batch.clone()
        },
    );
    // At initialisation each head is near a uniform guess: about ln 9, ln 5
    // and ln 3 for the attributes, ln 2 per token for the mentions.
    assert!((0.5..4.0).contains(&attributes), "attributes {attributes}");
    assert!((0.1..4.0).contains(&mentions), "mentions {mentions}");
    assert!(
        (both - answers - attributes - mentions).abs() < 1e-4,
        "loss {both} is not answers {answers} + attributes {attributes} + mentions {mentions}"
    );
}

#[test]
fn the_auxiliary_losses_train_the_encoders_and_not_the_decoder() {
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Gated, &tokenizer, 1.0, 1.0);
    let batch = streamed_batch(&cfg, &tokenizer, 12);
    let vm = VarMap::new();
    let model = model_on(&cfg, &vm);
    // Gradients of the loss with the targets named, minus the loss without.
    let gradient_norms = |cells: bool, mentions: bool, names: &[&str]| -> Vec<f32> {
        let with = loss(&model, &batch, 0.0).expect("loss");
        let without = loss(
            &model,
            &Batch {
                cells: if cells { None } else { batch.cells.clone() },
                mentions: if mentions {
                    None
                } else {
                    batch.mentions.clone()
                },
                ..batch.clone()
            },
            0.0,
        )
        .expect("loss");
        let grads = (with - without)
            .and_then(|d| d.backward())
            .expect("backward");
        let data = vm.data().lock().expect("vars");
        names
            .iter()
            .map(|name| {
                grads
                    .get(data[*name].as_tensor())
                    .map(common::squared_norm)
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let names = [
        "attribute_head.weight",
        "mention_head.weight",
        "vision.patch_embed.weight",
        "conditioning.layers.0.ff.fc1.weight",
        "decoder.ln_f.weight",
    ];
    let attributes = gradient_norms(true, false, &names);
    assert!(attributes[0] > 0.0 && attributes[2] > 0.0, "{attributes:?}");
    assert!(
        attributes[1] < 1e-10 && attributes[3] < 1e-10,
        "{attributes:?}"
    );
    let mentions = gradient_norms(false, true, &names);
    assert!(
        mentions[1] > 0.0 && mentions[2] > 0.0 && mentions[3] > 0.0,
        "{mentions:?}"
    );
    assert!(mentions[0] < 1e-10, "{mentions:?}");
    // The answer parts of the two losses cancel.
    assert!(attributes[4] < 1e-10 && mentions[4] < 1e-10);
}

#[test]
fn a_batch_without_targets_gives_the_heads_a_zero_gradient_not_none() {
    // A batch of captions has no mentions, and easy-VQA images no
    // attributes; the optimiser refuses a variable without a gradient.
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Concat, &tokenizer, 1.0, 1.0);
    let batch = streamed_batch(&cfg, &tokenizer, 4);
    let bare = Batch {
        cells: None,
        mentions: None,
        ..batch
    };
    let vm = VarMap::new();
    let model = model_on(&cfg, &vm);
    let grads = loss(&model, &bare, 0.0)
        .and_then(|l| Ok(l.backward()?))
        .expect("backward");
    let data = vm.data().lock().expect("vars");
    for head in ["attribute_head", "mention_head"] {
        for part in ["weight", "bias"] {
            let name = format!("{head}.{part}");
            let g = grads
                .get(data[&name].as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert_eq!(common::squared_norm(g), 0.0, "{name}");
        }
    }
}

#[test]
fn data_parallel_training_with_the_auxiliary_losses_follows_the_single_thread_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = tokenizer();
    let cfg = config(Fusion::Concat, &tokenizer, 1.0, 1.0);
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

#[test]
fn the_auxiliary_recipe_config_is_the_shipped_one_plus_the_two_losses() {
    let read = |name: &str| -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json")
    };
    let (aux, shipped) = (read("scenes-aux.json"), read("scenes-qv2.json"));
    aux.validate().expect("valid");
    assert!(aux.attribute_loss > 0.0 && aux.mention_loss > 0.0);
    assert_eq!(
        Config {
            attribute_loss: 0.0,
            mention_loss: 0.0,
            ..aux
        },
        shipped
    );
}
