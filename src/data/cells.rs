//! What each vision token of a scene image should see: the colour, shape and
//! size of the object whose centre lies in the token's square, or nothing.
//!
//! These are the targets of the auxiliary attribute loss (`attribute_loss` in
//! the model config), which asks every token to name its own object, so that
//! the decoder can find an object by its attributes instead of reading them
//! off a mixture of the scene. The mention loss (`mention_loss`) asks each
//! question-conditioned token whether the question describes its object
//! (`mentioned_cells`) or, with `mention_target: "subjects"`, whether the
//! answer is read from it (`subject_cells`).
use super::scene::{Color, Scene, SceneObject, Shape, Size};
use crate::model::ATTRIBUTE_CLASSES as CLASSES;

// The model's head has one class per colour, scene shape and size, plus "no object".
const _: () = assert!(
    CLASSES[0] == Color::ALL.len() + 1 && CLASSES[1] == Shape::SCENE.len() + 1 && CLASSES[2] == 3
);

/// One token's targets: colour, shape and size class.
pub type CellTarget = [u32; 3];

/// The "no object" target.
pub const EMPTY: CellTarget = [
    CLASSES[0] as u32 - 1,
    CLASSES[1] as u32 - 1,
    CLASSES[2] as u32 - 1,
];

/// Targets for a `grid`×`grid` token grid in row-major order, or `None` if
/// the scene has an object none of the classes covers (an easy-VQA-style
/// rectangle). The scene's geometry is in fractions of the side, so the
/// targets hold at any image size.
pub fn cell_targets(scene: &Scene, grid: usize) -> Option<Vec<CellTarget>> {
    let mut targets = vec![EMPTY; grid * grid];
    for object in &scene.objects {
        let color = Color::ALL.iter().position(|&c| c == object.color)?;
        let shape = Shape::SCENE.iter().position(|&s| s == object.shape)?;
        let size = match object.size {
            Size::Small => 0,
            Size::Large => 1,
        };
        targets[token_of(object, grid)] = [color as u32, shape as u32, size];
    }
    Some(targets)
}

/// Per token of a `grid`×`grid` grid, 1 if the question describes the
/// object under it, else 0: the objects whose colour, shape and size agree
/// with every colour, shape and size word of the question ("is there a red
/// circle?" marks the red circles; "what color is the shape left of the
/// small star?" the small stars; place words are ignored, so "the small
/// shape in the center" marks every small object). `None` if the question
/// names none of them (it describes its objects by place only, or not at all).
pub fn mentioned_cells(scene: &Scene, question: &str, grid: usize) -> Option<Vec<u32>> {
    let words: Vec<&str> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |name: &str| words.contains(&name);
    let colors: Vec<Color> = Color::ALL.into_iter().filter(|c| has(c.name())).collect();
    let shapes: Vec<Shape> = Shape::SCENE
        .into_iter()
        .filter(|s| has(s.name()) || has(s.plural()))
        .collect();
    let sizes: Vec<Size> = [Size::Small, Size::Large]
        .into_iter()
        .filter(|s| has(s.name()))
        .collect();
    fn agrees<T: PartialEq>(named: &[T], value: T) -> bool {
        named.is_empty() || named.contains(&value)
    }
    if colors.is_empty() && shapes.is_empty() && sizes.is_empty() {
        return None;
    }
    let mut marks = vec![0; grid * grid];
    for object in &scene.objects {
        if agrees(&colors, object.color)
            && agrees(&shapes, object.shape)
            && agrees(&sizes, object.size)
        {
            marks[token_of(object, grid)] = 1;
        }
    }
    Some(marks)
}

/// Per token of a `grid`×`grid` grid, 1 under each of the scene's objects
/// listed in `subjects` (indices; those out of range are skipped), else 0.
pub fn subject_cells(scene: &Scene, subjects: &[usize], grid: usize) -> Vec<u32> {
    let mut marks = vec![0; grid * grid];
    for object in subjects.iter().filter_map(|&i| scene.objects.get(i)) {
        marks[token_of(object, grid)] = 1;
    }
    marks
}

/// The token under an object's centre.
fn token_of(object: &SceneObject, grid: usize) -> usize {
    let cell = |fraction: f32| ((fraction.clamp(0.0, 1.0) * grid as f32) as usize).min(grid - 1);
    cell(object.cy) * grid + cell(object.cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scene::SceneKind;

    fn object(shape: Shape, color: Color, size: Size, row: usize, col: usize) -> SceneObject {
        SceneObject::centred(shape, color, size, row, col)
    }

    #[test]
    fn each_object_marks_the_token_under_its_centre_and_the_rest_are_empty() {
        let scene = Scene {
            kind: SceneKind::Scenes,
            objects: vec![
                object(Shape::Star, Color::Teal, Size::Large, 0, 2),
                object(Shape::Circle, Color::Red, Size::Small, 2, 1),
            ],
            noise_seed: None,
        };
        let targets = cell_targets(&scene, 3).expect("scene shapes only");
        assert_eq!(targets[2], [6, 3, 1]);
        assert_eq!(targets[7], [0, 0, 0]);
        let empty = targets.iter().filter(|&&t| t == EMPTY).count();
        assert_eq!(empty, 7);
        // On a 6×6 grid the same objects fall in the tokens under their centres.
        let fine = cell_targets(&scene, 6).expect("scene shapes only");
        assert_eq!(fine[6 + 5], [6, 3, 1]);
        assert_eq!(fine[5 * 6 + 3], [0, 0, 0]);
    }

    #[test]
    fn a_shape_outside_the_scene_shapes_gives_no_targets() {
        let scene = Scene {
            kind: SceneKind::Easy,
            objects: vec![object(Shape::Rectangle, Color::Red, Size::Large, 1, 1)],
            noise_seed: None,
        };
        assert_eq!(cell_targets(&scene, 3), None);
    }

    #[test]
    fn a_question_marks_the_objects_that_agree_with_all_its_attribute_words() {
        let scene = Scene {
            kind: SceneKind::Scenes,
            objects: vec![
                object(Shape::Circle, Color::Red, Size::Large, 0, 0),
                object(Shape::Star, Color::Red, Size::Small, 1, 1),
                object(Shape::Circle, Color::Blue, Size::Small, 2, 2),
            ],
            noise_seed: None,
        };
        let marked = |q: &str| {
            mentioned_cells(&scene, q, 3).map(|m| {
                m.iter()
                    .enumerate()
                    .filter(|(_, &v)| v == 1)
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(marked("is there a red circle?"), Some(vec![0]));
        assert_eq!(marked("how many circles are there?"), Some(vec![0, 8]));
        assert_eq!(marked("what color is the small star?"), Some(vec![4]));
        assert_eq!(marked("is there a blue star?"), Some(vec![]));
        assert_eq!(
            marked("what shape is left of the small shape in the center?"),
            Some(vec![4, 8])
        );
        assert_eq!(marked("what shape is at the top left?"), None);
        assert_eq!(marked("caption"), None);
    }

    /// Every candidate question of many random scenes: the answer can be
    /// read off its subjects alone, and for a relation question the subject
    /// is not the reference object and sits where the relation says.
    #[test]
    fn the_subjects_of_a_question_are_the_objects_its_answer_is_read_from() {
        use crate::data::scene::{number_word, position_name};
        use crate::data::synth::{image_rng, random_scene};
        use crate::data::synth_text::candidate_questions;
        let mut relations_checked = 0;
        for index in 0..200 {
            let scene = random_scene(&mut image_rng(5, index), false);
            for qa in candidate_questions(&scene) {
                let subjects: Vec<&SceneObject> =
                    qa.subjects.iter().map(|&i| &scene.objects[i]).collect();
                let marks = subject_cells(&scene, &qa.subjects, 3);
                assert_eq!(marks.iter().sum::<u32>() as usize, subjects.len());
                let one = || {
                    assert_eq!(subjects.len(), 1, "{qa:?}");
                    subjects[0]
                };
                let q = qa.question.as_str();
                match qa.question_type {
                    "color" => assert_eq!(one().color.name(), qa.answer, "{q}"),
                    "shape" => assert_eq!(one().shape.name(), qa.answer, "{q}"),
                    "size" => assert_eq!(one().size.name(), qa.answer, "{q}"),
                    "position" => {
                        let o = one();
                        assert_eq!(position_name(o.row, o.col), qa.answer, "{q}");
                    }
                    "count" => assert_eq!(number_word(subjects.len()), qa.answer, "{q}"),
                    "exist" => {
                        assert_eq!(subjects.is_empty(), qa.answer == "no", "{q}");
                        // Two independent readings of "is there a red circle?".
                        assert_eq!(mentioned_cells(&scene, q, 3), Some(marks), "{q}");
                    }
                    "relation" => {
                        let target = one();
                        let answer_is = [target.shape.name(), target.color.name()];
                        assert!(answer_is.contains(&qa.answer.as_str()), "{q}");
                        let Some(named) = mentioned_cells(&scene, q, 3) else {
                            continue;
                        };
                        assert_eq!(named[token_of(target, 3)], 0, "{q}");
                        let references: Vec<&SceneObject> = scene
                            .objects
                            .iter()
                            .filter(|o| named[token_of(o, 3)] == 1)
                            .collect();
                        let [reference] = references[..] else {
                            continue;
                        };
                        let holds = if q.contains("left of") {
                            target.col < reference.col
                        } else if q.contains("right of") {
                            target.col > reference.col
                        } else if q.contains("above") {
                            target.row < reference.row
                        } else if q.contains("below") {
                            target.row > reference.row
                        } else {
                            q.contains("closest to")
                        };
                        assert!(holds, "{q}: {target:?} against {reference:?}");
                        relations_checked += 1;
                    }
                    other => panic!("unexpected question type {other}"),
                }
            }
        }
        assert!(relations_checked > 100, "{relations_checked}");
    }
}
