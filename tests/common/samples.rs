//! The hand-made sample scene that samples/questions.txt is about.
#![allow(dead_code)]
use std::path::Path;

use fusecap::data::scene::{Color, Scene, SceneKind, SceneObject, Shape, Size};

fn object(shape: Shape, color: Color, size: Size, row: usize, col: usize) -> SceneObject {
    SceneObject::centred(shape, color, size, row, col)
}

/// samples/scene-1.png: a large red circle (top left), a small yellow star
/// (top right), a large blue square (center), a small green triangle (bottom left).
pub fn scene_1() -> Scene {
    use Color::*;
    use Shape::*;
    use Size::*;
    Scene {
        kind: SceneKind::Scenes,
        objects: vec![
            object(Circle, Red, Large, 0, 0),
            object(Star, Yellow, Small, 0, 2),
            object(Square, Blue, Large, 1, 1),
            object(Triangle, Green, Small, 2, 0),
        ],
        noise_seed: None,
    }
}

/// The questions of samples/questions.txt, each with the answer noted above it
/// ("# answer: …").
pub fn noted_questions() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/questions.txt");
    let text = std::fs::read_to_string(&path).expect("read samples/questions.txt");
    let mut expected: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(answer) = line.strip_prefix("# answer:") {
            expected = Some(answer.trim().to_string());
        } else if !line.starts_with('#') {
            let answer = expected
                .take()
                .unwrap_or_else(|| panic!("no answer noted for {line:?}"));
            out.push((line.to_string(), answer));
        }
    }
    out
}
