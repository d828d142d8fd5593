//! Scenes drawn on the fly for training: deterministic per item, varied
//! backgrounds, questions balanced by type, template and answer, binding
//! negatives, and exact resume of a run that streams them.
mod common;

use common::train_in_process;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::{DType, Device};
use fusecap::data::batch::Dataset;
use fusecap::data::stream::{
    captions_asked, mixed_step, pooled_item, step_dataset, step_item, streamed_item,
    validation_set, StreamOptions,
};
use fusecap::data::synth::random_scene;
use fusecap::data::synth_text::{candidate_questions, sample_balanced_question, template};
use fusecap::generate::Workers;
use fusecap::model::{Config, Fusion};
use fusecap::tokenizer::TextTokenizer;
use fusecap::train::{Outcome, TrainOptions, CHECKPOINT_FILE};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn tokenizer() -> TextTokenizer {
    let texts = fusecap::data::stream::vocabulary_texts();
    TextTokenizer::train(texts.iter().map(String::as_str), 1).expect("tokenizer")
}

#[test]
fn an_item_depends_only_on_seed_and_index() {
    let a = streamed_item(4, 17, false);
    assert_eq!(a, streamed_item(4, 17, false));
    assert_ne!(a.image, streamed_item(4, 18, false).image);
    assert_ne!(a.image, streamed_item(5, 17, false).image);
    let caption = streamed_item(4, 17, true);
    assert_eq!(
        caption.image, a.image,
        "the kind of example does not change the scene"
    );
    assert!(caption.question.is_none() && caption.question_type.is_none());
    assert!(a.question.is_some());
}

#[test]
fn backgrounds_vary_between_white_tints_gradients_and_noise() {
    let (mut white, mut tinted, mut gradient, mut noisy) = (0, 0, 0, 0);
    for i in 0..300 {
        let image = streamed_item(1, i, false).image;
        let corners = [
            image.get_pixel(0, 0).0,
            image.get_pixel(63, 0).0,
            image.get_pixel(0, 63).0,
        ];
        // Objects never reach the image's corners.
        let same = corners.iter().all(|c| *c == corners[0]);
        let light = corners.iter().flatten().all(|&v| v >= 200);
        if !light {
            noisy += 1;
        } else if !same {
            gradient += 1;
        } else if corners[0] == [255; 3] {
            white += 1;
        } else {
            tinted += 1;
        }
    }
    for (name, n) in [
        ("white", white),
        ("tinted", tinted),
        ("gradient", gradient),
        ("noisy", noisy),
    ] {
        assert!(n >= 30, "{name}: {n} of 300 (white {white}, tinted {tinted}, gradient {gradient}, noisy {noisy})");
    }
}

#[test]
fn a_type_weight_draws_that_type_more_often_and_bad_weights_are_refused() {
    let weighted = StreamOptions {
        seed: 21,
        share: 0.5,
        pool: None,
        type_weights: BTreeMap::from([("relation".to_string(), 3.0)]),
        ramp_steps: None,
    };
    let plain = StreamOptions {
        type_weights: BTreeMap::new(),
        ramp_steps: None,
        ..weighted.clone()
    };
    let relations = |opts: &StreamOptions| {
        (0..1400)
            .filter(|&i| opts.item(i, false).question_type == Some("relation"))
            .count()
    };
    let (with, without) = (relations(&weighted), relations(&plain));
    // Relation is one of 7 types (fewer in one-object scenes): about 1/7
    // unweighted, about 3/9 with weight 3.
    assert!(
        (120..=260).contains(&without),
        "unweighted: {without} of 1400"
    );
    assert!(with >= 2 * without, "weighted {with}, unweighted {without}");
    // The scenes are the same; only the questions are drawn differently.
    assert_eq!(weighted.item(5, false).image, plain.item(5, false).image);
    assert_eq!(plain.item(5, false), streamed_item(21, 5, false));

    for (name, weight) in [
        ("relations", 2.0),
        ("relation", 0.0),
        ("relation", f64::NAN),
    ] {
        let bad = StreamOptions {
            type_weights: BTreeMap::from([(name.to_string(), weight)]),
            ramp_steps: None,
            ..plain.clone()
        };
        let message = bad.validate().expect_err("refused");
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn balanced_questions_are_valid_and_spread_over_types_templates_and_answers() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    let mut colour_counts: BTreeSet<String> = BTreeSet::new();
    let (mut conj_yes, mut conj_no) = (0, 0);
    let n = 3000;
    for _ in 0..n {
        let scene = random_scene(&mut rng, false);
        let qa = sample_balanced_question(&scene, &mut rng).expect("a question");
        assert!(
            candidate_questions(&scene).contains(&qa),
            "{qa:?} is not a valid question of its scene"
        );
        *types.entry(qa.question_type).or_default() += 1;
        match template(&qa.question).as_str() {
            "how many <color> shapes are there" => {
                colour_counts.insert(qa.answer.clone());
            }
            "is there a <color> <shape>" if qa.answer == "yes" => conj_yes += 1,
            "is there a <color> <shape>" => conj_no += 1,
            _ => {}
        }
    }
    assert_eq!(types.len(), 7, "{types:?}");
    for (t, k) in &types {
        assert!(*k > n / 10, "{t}: {k} of {n} ({types:?})");
    }
    assert!(
        colour_counts.contains("two"),
        "colour counts asked: {colour_counts:?}"
    );
    let share = conj_yes as f64 / (conj_yes + conj_no) as f64;
    assert!(
        (0.35..0.65).contains(&share),
        "yes {conj_yes}, no {conj_no}"
    );
}

#[test]
fn a_conjunction_answered_no_splits_its_colour_and_shape_where_the_scene_can() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut hard = 0;
    for _ in 0..4000 {
        let scene = random_scene(&mut rng, false);
        let Some(qa) = sample_balanced_question(&scene, &mut rng) else {
            continue;
        };
        if template(&qa.question) != "is there a <color> <shape>" || qa.answer != "no" {
            continue;
        }
        let words: Vec<&str> = qa.question.trim_end_matches('?').split(' ').collect();
        let colour_present = scene.objects.iter().any(|o| o.color.name() == words[3]);
        let shape_present = scene.objects.iter().any(|o| o.shape.name() == words[4]);
        let splittable = scene.objects.iter().any(|a| {
            scene.objects.iter().any(|b| {
                !scene
                    .objects
                    .iter()
                    .any(|o| o.color == a.color && o.shape == b.shape)
            })
        });
        if splittable {
            assert!(
                colour_present && shape_present,
                "{:?}: an easy negative where a binding one exists",
                qa.question
            );
            hard += 1;
        }
    }
    assert!(hard > 20, "only {hard} binding negatives");
}

#[test]
fn a_mixed_step_holds_the_manifest_examples_then_new_scenes_of_the_same_kind() {
    let tokenizer = tokenizer();
    let cfg = Config::tiny(Fusion::Concat, tokenizer.vocab_size());
    let opts = StreamOptions {
        seed: 3,
        share: 0.5,
        pool: None,
        type_weights: BTreeMap::new(),
        ramp_steps: None,
    };
    let manifest = validation_set(&opts, 6, &tokenizer, &cfg).expect("questions");
    let step = mixed_step(&manifest, &[0, 2, 4], &opts, 7, 3, &tokenizer, &cfg).expect("step");
    assert_eq!(step.examples.len(), 6);
    for (k, &i) in [0, 2, 4].iter().enumerate() {
        assert_eq!(step.examples[k].text, manifest.examples[i].text);
        assert_eq!(
            step.images[step.examples[k].image],
            manifest.images[manifest.examples[i].image]
        );
    }
    assert!(step.examples.iter().all(|e| e.question_type.is_some()));
    let again = mixed_step(&manifest, &[0, 2, 4], &opts, 7, 3, &tokenizer, &cfg).expect("step");
    let next = mixed_step(&manifest, &[0, 2, 4], &opts, 8, 3, &tokenizer, &cfg).expect("step");
    assert_eq!(again.images, step.images, "a step is reproducible");
    assert_ne!(
        next.images[3..],
        step.images[3..],
        "each step draws new scenes"
    );
}

/// Training draws a step's scenes on its workers: any split among them
/// gives the step that drawing them in order gives.
#[test]
fn a_step_drawn_on_workers_is_the_step_drawn_in_order() {
    let tokenizer = tokenizer();
    let mut cfg = Config::tiny(Fusion::Concat, tokenizer.vocab_size());
    cfg.attribute_loss = 1.0;
    cfg.mention_loss = 1.0;
    let opts = StreamOptions {
        seed: 5,
        share: 0.5,
        pool: None,
        type_weights: BTreeMap::new(),
        ramp_steps: None,
    };
    let manifest = validation_set(&opts, 4, &tokenizer, &cfg).expect("questions");
    let in_order = mixed_step(&manifest, &[0, 3], &opts, 2, 7, &tokenizer, &cfg).expect("step");
    let described = |ds: &Dataset| {
        let mut cells: Vec<_> = ds.cell_targets.iter().collect();
        cells.sort_by_key(|(image, _)| **image);
        format!("{:?} {:?}", ds.examples, cells)
    };
    for threads in [2, 3] {
        let workers = Workers::new(threads).expect("workers");
        let caption = captions_asked(&manifest, &[0, 3]);
        let items = workers
            .map_shards(7, |range| {
                range
                    .map(|j| step_item(&opts, 2, 7, j, caption, &tokenizer, &cfg))
                    .collect()
            })
            .expect("items");
        let on_workers = step_dataset(&manifest, &[0, 3], items);
        assert_eq!(on_workers.images, in_order.images, "{threads} workers");
        assert_eq!(
            described(&on_workers),
            described(&in_order),
            "{threads} workers"
        );
    }
    assert!(
        !in_order.cell_targets.is_empty(),
        "the step has cell targets to compare"
    );
}

#[test]
fn a_pool_of_scenes_shows_each_again_with_new_questions() {
    const POOL: u64 = 7;
    let items: Vec<_> = (0..70).map(|i| pooled_item(4, i, POOL, false)).collect();
    for (i, item) in items.iter().enumerate() {
        let first = &items[i % POOL as usize];
        assert_eq!(item.image, first.image, "item {i} shows scene {}", i % 7);
        assert_eq!(item.scene, first.scene);
        assert_eq!(
            item.image,
            streamed_item(4, i as u64 % POOL, false).image,
            "the pool is the stream's first scenes"
        );
    }
    let distinct: std::collections::HashSet<&[u8]> = items
        .iter()
        .map(|item| item.image.as_raw().as_slice())
        .collect();
    assert_eq!(distinct.len(), POOL as usize);
    for scene in 0..POOL as usize {
        let questions: std::collections::HashSet<_> = items
            .iter()
            .skip(scene)
            .step_by(POOL as usize)
            .map(|item| item.question.clone())
            .collect();
        assert!(
            questions.len() > 1,
            "scene {scene}: one question in 10 visits"
        );
    }
    assert_eq!(pooled_item(4, 3, POOL, false), items[3], "reproducible");

    // Training steps draw their scenes from the pool only.
    let tokenizer = tokenizer();
    let cfg = Config::tiny(Fusion::Concat, tokenizer.vocab_size());
    let opts = StreamOptions {
        seed: 4,
        share: 0.5,
        pool: Some(POOL),
        type_weights: BTreeMap::new(),
        ramp_steps: None,
    };
    let manifest = validation_set(&opts, 4, &tokenizer, &cfg).expect("questions");
    let mut seen = std::collections::HashSet::new();
    for step in 0..10 {
        let ds = mixed_step(&manifest, &[0, 1], &opts, step, 4, &tokenizer, &cfg).expect("step");
        for image in &ds.images[2..] {
            seen.insert(format!("{image:?}"));
        }
    }
    assert_eq!(seen.len(), POOL as usize, "40 streamed examples, 7 images");
    assert!(StreamOptions {
        pool: Some(0),
        ..opts
    }
    .validate()
    .is_err());
}

#[test]
fn a_ramp_grows_the_scenes_from_one_object_to_four_and_then_changes_nothing() {
    let ramped = StreamOptions {
        seed: 8,
        share: 0.5,
        pool: None,
        type_weights: BTreeMap::new(),
        ramp_steps: Some(300),
    };
    let most_objects = |step: usize| {
        (0..60u64)
            .map(|i| {
                ramped
                    .item_at_step(step, step as u64 * 60 + i, false)
                    .scene
                    .objects
                    .len()
            })
            .max()
            .unwrap_or(0)
    };
    assert_eq!(most_objects(0), 1);
    assert_eq!(most_objects(99), 1);
    assert_eq!(most_objects(100), 2);
    assert_eq!(most_objects(299), 3);
    assert_eq!(most_objects(300), 4);
    // The ramp's arithmetic holds for any length a user can type.
    let longest = StreamOptions {
        ramp_steps: Some(u64::MAX),
        ..ramped.clone()
    };
    assert_eq!(longest.max_objects(0), 1);
    assert_eq!(longest.max_objects(usize::MAX - 1), 3);
    // After the ramp, and without one, the items are the stream's own.
    let plain = StreamOptions {
        ramp_steps: None,
        ..ramped.clone()
    };
    for index in [0, 17, 18_000] {
        assert_eq!(
            ramped.item_at_step(300, index, false),
            plain.item(index, false)
        );
        assert_eq!(
            plain.item_at_step(0, index, false),
            streamed_item(8, index, false)
        );
    }
    // Validation scenes are not ramped.
    let tokenizer = tokenizer();
    let cfg = Config::tiny(Fusion::Concat, tokenizer.vocab_size());
    assert_eq!(
        validation_set(&ramped, 6, &tokenizer, &cfg)
            .expect("ramped")
            .images,
        validation_set(&plain, 6, &tokenizer, &cfg)
            .expect("plain")
            .images
    );
    // Training steps follow the ramp: one object each at step 0.
    let manifest = validation_set(&plain, 2, &tokenizer, &cfg).expect("manifest part");
    let step_zero = |opts: &StreamOptions| {
        mixed_step(&manifest, &[0], opts, 0, 8, &tokenizer, &cfg)
            .expect("step")
            .images
    };
    assert_ne!(step_zero(&ramped), step_zero(&plain));
    for bad in [
        StreamOptions {
            ramp_steps: Some(0),
            ..ramped.clone()
        },
        StreamOptions {
            pool: Some(10),
            ..ramped.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} was accepted");
    }
}

fn run(out: &Path, steps: usize, stop_after: Option<usize>, resume: bool) -> Outcome {
    let tokenizer = tokenizer();
    let cfg = Config::tiny(Fusion::Separate, tokenizer.vocab_size());
    // A ramp over the first steps, so that resuming within it is checked too.
    let stream = StreamOptions {
        seed: 11,
        share: 0.5,
        pool: None,
        type_weights: BTreeMap::new(),
        ramp_steps: Some(3),
    };
    let train = validation_set(&stream, 16, &tokenizer, &cfg).expect("manifest part");
    let val = validation_set(&stream, 4, &tokenizer, &cfg).expect("val");
    let options = TrainOptions {
        steps,
        batch_size: 8,
        warmup_steps: 2,
        eval_every: 100,
        checkpoint_every: 100,
        stream: Some(stream),
        ..TrainOptions::default()
    };
    train_in_process(
        out,
        cfg,
        tokenizer,
        (&train, &val),
        options,
        resume,
        1,
        stop_after,
    )
}

#[test]
fn a_streaming_run_resumes_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (straight, resumed) = (dir.path().join("a"), dir.path().join("b"));
    assert_eq!(run(&straight, 8, None, false), Outcome::Finished);
    assert_eq!(
        run(&resumed, 8, Some(3), false),
        Outcome::Interrupted { step: 3 }
    );
    assert_eq!(run(&resumed, 8, None, true), Outcome::Finished);
    let load = |dir: &Path| {
        candle_core::safetensors::load(dir.join(CHECKPOINT_FILE), &Device::Cpu).expect("load")
    };
    let (a, b) = (load(&straight), load(&resumed));
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let values = |t: &candle_core::Tensor| {
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
        };
        assert!(
            values(ta) == values(&b[name]),
            "{name} differs after resume"
        );
    }
}
