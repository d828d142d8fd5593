//! What each vision token of a scene image should see: the colour, shape and
//! size of the object whose centre lies in the token's square, or nothing.
//!
//! These are the targets of the auxiliary attribute loss (`attribute_loss` in
//! the model config), which asks every token to name its own object, so that
//! the decoder can find an object by its attributes instead of reading them
//! off a mixture of the scene.
use super::scene::{Color, Scene, Shape, Size};
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
    let cell = |fraction: f32| ((fraction.clamp(0.0, 1.0) * grid as f32) as usize).min(grid - 1);
    for object in &scene.objects {
        let color = Color::ALL.iter().position(|&c| c == object.color)?;
        let shape = Shape::SCENE.iter().position(|&s| s == object.shape)?;
        let size = match object.size {
            Size::Small => 0,
            Size::Large => 1,
        };
        targets[cell(object.cy) * grid + cell(object.cx)] = [color as u32, shape as u32, size];
    }
    Some(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scene::{SceneKind, SceneObject};

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
}
