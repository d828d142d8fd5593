//! The training order and batches: every example once per epoch, batches of
//! one kind, a resumable order, images encoded once per batch, and a loss in
//! which every example weighs the same.
use std::collections::{BTreeMap, HashSet};

use candle_core::Device;
use fusecap::data::batch::{Augment, Batch, Dataset, Example, Sampler};
use fusecap::model::dir::init_model;
use fusecap::model::{Config, Fusion};
use fusecap::train::loss;
use image::RgbImage;

const VOCAB: usize = 30;

/// `images` images; image i has `questions(i)` questions (one-token answers)
/// and two captions of 6 tokens.
fn dataset(images: usize, questions: impl Fn(usize) -> usize) -> Dataset {
    let mut ds = Dataset::default();
    for i in 0..images {
        let shade = (i * 37 % 256) as u8;
        ds.images.push(RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([shade, x as u8 * 9, y as u8 * 9])
        }));
        ds.image_paths.push(format!("{i}.png").into());
        for q in 0..questions(i) {
            ds.examples.push(Example {
                image: i,
                text: vec![4 + (q % 20) as u32, 5],
                target: vec![6 + (q % 3) as u32],
                answer: String::new(),
                question_type: Some("color".into()),
                weight: 1.0,
                mentions: None,
            });
        }
        for c in 0..2 {
            ds.examples.push(Example {
                image: i,
                text: vec![4],
                target: (0..6).map(|t| 7 + ((t + c + i) % 20) as u32).collect(),
                answer: String::new(),
                question_type: None,
                weight: 1.0,
                mentions: None,
            });
        }
    }
    ds
}

#[test]
fn an_epoch_visits_every_example_once_in_batches_of_one_kind() {
    let ds = dataset(23, |i| 1 + i % 7);
    for (batch_size, group_size) in [(8, 4), (8, 1), (5, 3), (16, 16)] {
        let sampler = Sampler::new(&ds, batch_size, group_size, 11);
        for epoch in 0..2 {
            let batches = sampler.epoch(epoch);
            assert_eq!(batches.len(), sampler.batches_per_epoch());
            let mut seen: Vec<usize> = batches.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..ds.examples.len()).collect::<Vec<_>>());
            for batch in &batches {
                assert!(!batch.is_empty() && batch.len() <= batch_size);
                let kinds: HashSet<bool> = batch
                    .iter()
                    .map(|&i| ds.examples[i].question_type.is_some())
                    .collect();
                assert_eq!(kinds.len(), 1, "a batch mixes questions and captions");
            }
        }
        assert_ne!(sampler.epoch(0), sampler.epoch(1), "epochs are reshuffled");
    }
}

#[test]
fn grouping_puts_an_images_questions_in_the_same_batch() {
    let ds = dataset(40, |_| 4);
    let distinct = |group_size| {
        let batches = Sampler::new(&ds, 8, group_size, 3).epoch(0);
        let questions: Vec<&Vec<usize>> = batches
            .iter()
            .filter(|b| ds.examples[b[0]].question_type.is_some())
            .collect();
        let images: usize = questions
            .iter()
            .map(|b| {
                b.iter()
                    .map(|&i| ds.examples[i].image)
                    .collect::<HashSet<_>>()
                    .len()
            })
            .sum();
        images as f64 / questions.len() as f64
    };
    // Groups of 4 of an image's 4 questions: two images per batch of 8.
    assert_eq!(distinct(4), 2.0);
    assert!(distinct(1) > 5.0, "ungrouped batches draw from many images");
}

#[test]
fn the_order_resumes_at_any_step() {
    let ds = dataset(9, |i| 2 + i % 3);
    let sampler = Sampler::new(&ds, 4, 2, 5);
    let all: Vec<Vec<usize>> = sampler.batches_from(0).take(30).collect();
    assert!(sampler.batches_per_epoch() < 30, "the test crosses epochs");
    for start in [1, 7, sampler.batches_per_epoch(), 29] {
        let resumed: Vec<Vec<usize>> = sampler.batches_from(start).take(30 - start).collect();
        assert_eq!(resumed, all[start..], "start {start}");
    }
    let again: Vec<Vec<usize>> = Sampler::new(&ds, 4, 2, 5)
        .batches_from(0)
        .take(30)
        .collect();
    assert_eq!(again, all, "the same seed gives the same order");
}

#[test]
fn a_batch_holds_each_image_once() {
    let ds = dataset(3, |_| 3);
    let cfg = Config::tiny(Fusion::Concat, VOCAB);
    let indices = [0, 1, 5, 2, 6];
    let batch = Batch::new(&ds, &indices, &cfg, Augment::NONE, 0, &Device::Cpu).expect("batch");
    let distinct: HashSet<usize> = indices.iter().map(|&i| ds.examples[i].image).collect();
    assert_eq!(batch.images.dim(0).expect("dim"), distinct.len());
    let rows = batch.image_of.to_vec1::<u32>().expect("rows");
    for (a, &i) in indices.iter().enumerate() {
        for (b, &j) in indices.iter().enumerate() {
            let same = ds.examples[i].image == ds.examples[j].image;
            assert_eq!(rows[a] == rows[b], same, "examples {i} and {j}");
        }
    }
}

/// The batch loss is the mean of the examples' own losses, however long
/// their targets, and sharing an image's encoding changes nothing.
#[test]
fn the_loss_weighs_every_example_the_same() {
    let ds = dataset(2, |_| 2);
    let cfg = Config::tiny(Fusion::Separate, VOCAB);
    let (model, _) = init_model(&cfg, 4, &Device::Cpu).expect("init");
    let loss_of = |indices: &[usize]| {
        let batch = Batch::new(&ds, indices, &cfg, Augment::NONE, 0, &Device::Cpu).expect("batch");
        loss(&model, &batch, 0.0)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("scalar")
    };
    // Examples 0 and 1 are questions of image 0 (1 answer token), 2 a caption of it (6).
    let (question, other, caption) = (loss_of(&[0]), loss_of(&[1]), loss_of(&[2]));
    let together = loss_of(&[0, 2]);
    assert!((together - (question + caption) / 2.0).abs() < 1e-5);
    let shared = loss_of(&[0, 1]);
    assert!((shared - (question + other) / 2.0).abs() < 1e-5);
}

#[test]
fn balanced_answers_weigh_the_same_in_each_question_type() {
    let mut ds = dataset(12, |i| 1 + i % 4);
    // Answers "a" 3 times in 4 and "b" once, in one type; a second type all "c".
    let questions = ds.examples.iter_mut().filter(|e| e.question_type.is_some());
    for (k, e) in questions.enumerate() {
        e.answer = if k % 4 == 3 { "b" } else { "a" }.into();
        if k % 5 == 0 {
            e.question_type = Some("count".into());
            e.answer = "c".into();
        }
    }
    ds.balance_answers(100.0);
    let total = |t: &str, a: &str| -> f32 {
        ds.examples
            .iter()
            .filter(|e| e.question_type.as_deref() == Some(t) && e.answer == a)
            .map(|e| e.weight)
            .sum()
    };
    let count = |t: &str| {
        ds.examples
            .iter()
            .filter(|e| e.question_type.as_deref() == Some(t))
            .count() as f32
    };
    assert!(total("color", "a") > 0.0 && total("color", "b") > 0.0);
    assert!((total("color", "a") - total("color", "b")).abs() < 1e-3);
    assert!((total("color", "a") + total("color", "b") - count("color")).abs() < 1e-3);
    assert!((total("count", "c") - count("count")).abs() < 1e-3);
    assert!(ds
        .examples
        .iter()
        .filter(|e| e.question_type.is_none())
        .all(|e| e.weight == 1.0));
    ds.balance_answers(1.5);
    assert!(ds
        .examples
        .iter()
        .all(|e| (1.0 / 1.5..=1.5).contains(&e.weight)));
}

#[test]
fn type_weights_scale_only_their_question_type_and_report_unknown_types() {
    let mut ds = dataset(6, |i| 1 + i % 3);
    for (k, e) in ds.examples.iter_mut().enumerate() {
        if e.question_type.is_some() && k % 2 == 0 {
            e.question_type = Some("shape".into());
            e.weight = 0.5;
        }
    }
    let before: Vec<f32> = ds.examples.iter().map(|e| e.weight).collect();
    let factors = BTreeMap::from([("shape".to_string(), 3.0), ("sahpe".to_string(), 2.0)]);
    let unknown = ds.weigh_question_types(&factors);
    assert_eq!(unknown, vec!["sahpe".to_string()]);
    let mut shapes = 0;
    for (e, w) in ds.examples.iter().zip(before) {
        if e.question_type.as_deref() == Some("shape") {
            shapes += 1;
            assert!((e.weight - 3.0 * w).abs() < 1e-6);
        } else {
            assert_eq!(e.weight, w);
        }
    }
    assert!(shapes > 0);
}

#[test]
fn the_loss_is_the_weighted_mean_of_the_examples_losses() {
    let mut ds = dataset(2, |_| 2);
    ds.examples[0].weight = 3.0;
    let cfg = Config::tiny(Fusion::Concat, VOCAB);
    let (model, _) = init_model(&cfg, 8, &Device::Cpu).expect("init");
    let loss_of = |ds: &Dataset, indices: &[usize]| {
        let batch = Batch::new(ds, indices, &cfg, Augment::NONE, 0, &Device::Cpu).expect("batch");
        loss(&model, &batch, 0.0)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("scalar")
    };
    let (a, b) = (loss_of(&ds, &[0]), loss_of(&ds, &[2]));
    assert!((loss_of(&ds, &[0, 2]) - (3.0 * a + b) / 4.0).abs() < 1e-5);
}
