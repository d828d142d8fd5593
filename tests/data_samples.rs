//! The images in samples/ and their questions.
//!
//! Regenerate them with `cargo test --release --test data_samples -- --ignored`; normal test
//! runs only check that samples/ matches the scenes below and that every question in
//! samples/questions.txt is answerable for samples/scene-1.png with the noted answer.

use fusecap::data::draw::render;
use fusecap::data::scene::{Color, Scene, SceneKind, SceneObject, Shape, Size};
use fusecap::data::synth::{generate_item, SynthConfig};
use fusecap::data::synth_text::candidate_questions;
use std::path::PathBuf;

mod common;
use common::samples;

const SIDE: u32 = 64;

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn single(shape: Shape, color: Color) -> Scene {
    Scene {
        kind: SceneKind::Easy,
        objects: vec![SceneObject {
            shape,
            color,
            size: Size::Large,
            row: 1,
            col: 1,
            cx: 0.5,
            cy: 0.5,
            radius: 0.28,
        }],
        noise_seed: None,
    }
}

/// scene-1 is hand-made (questions.txt is about it); scene-2…6 come from the generator.
fn samples() -> Vec<(String, Scene)> {
    use Color::*;
    use Shape::*;
    let mut out = vec![("scene-1".to_string(), samples::scene_1())];
    let cfg = SynthConfig {
        seed: 2024,
        ..SynthConfig::default()
    };
    let generated = (0..)
        .map(|i| generate_item(&cfg, i).0)
        .filter(|s| s.objects.len() >= 2)
        .take(5);
    for (k, scene) in generated.enumerate() {
        out.push((format!("scene-{}", k + 2), scene));
    }
    for (name, shape, color) in [
        ("red-circle", Circle, Red),
        ("blue-rectangle", Rectangle, Blue),
        ("green-triangle", Triangle, Green),
        ("yellow-circle", Circle, Yellow),
    ] {
        out.push((name.to_string(), single(shape, color)));
    }
    out
}

#[test]
#[ignore = "writes samples/; run with --ignored to regenerate"]
fn write_samples() {
    let dir = samples_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, scene) in samples() {
        render(&scene, SIDE)
            .save(dir.join(format!("{name}.png")))
            .unwrap();
    }
}

#[test]
fn sample_images_match_their_scenes() {
    for (name, scene) in samples() {
        let path = samples_dir().join(format!("{name}.png"));
        let on_disk = image::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate samples", path.display()))
            .to_rgb8();
        assert!(
            on_disk == render(&scene, SIDE),
            "{} is stale",
            path.display()
        );
    }
}

#[test]
fn sample_questions_are_answerable_for_scene_1() {
    let candidates = candidate_questions(&samples::scene_1());
    let noted = samples::noted_questions();
    for (question, answer) in &noted {
        let qa = candidates
            .iter()
            .find(|qa| &qa.question == question)
            .unwrap_or_else(|| panic!("{question:?} is not answerable for scene-1"));
        assert_eq!(&qa.answer, answer, "{question}");
    }
    assert!(noted.len() >= 8);
}
