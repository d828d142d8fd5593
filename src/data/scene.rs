//! Scene descriptions for the synthetic data set: what is drawn where.
//!
//! Scenes place objects on a 3×3 grid, at most one per cell. Geometry (`cx`, `cy`,
//! `radius`) is stored as fractions of the image side so a scene renders at any size.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    /// Used by easy-VQA-style images only.
    Rectangle,
}

impl Shape {
    /// Shapes of multi-object scenes.
    pub const SCENE: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star];
    /// Shapes of easy-VQA-style images (the same three easy-VQA uses).
    pub const EASY: [Shape; 3] = [Shape::Circle, Shape::Rectangle, Shape::Triangle];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Rectangle => "rectangle",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
            Shape::Rectangle => "rectangles",
        }
    }
}

/// The eight colours of easy-VQA, with RGB values far apart from each other and from white.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Black,
    Gray,
    Teal,
    Brown,
}

impl Color {
    pub const ALL: [Color; 8] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Black,
        Color::Gray,
        Color::Teal,
        Color::Brown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Black => "black",
            Color::Gray => "gray",
            Color::Teal => "teal",
            Color::Brown => "brown",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 30, 30],
            Color::Green => [30, 170, 50],
            Color::Blue => [30, 70, 230],
            Color::Yellow => [245, 215, 20],
            Color::Black => [20, 20, 20],
            Color::Gray => [140, 140, 140],
            Color::Teal => [0, 150, 160],
            Color::Brown => [130, 75, 25],
        }
    }

    /// The colour as easy-VQA draws it (CSS named colours; its brown,
    /// (165, 42, 42), is close to the scenes' red).
    pub fn easy_vqa_rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [255, 0, 0],
            Color::Green => [0, 255, 0],
            Color::Blue => [0, 0, 255],
            Color::Yellow => [255, 255, 0],
            Color::Black => [0, 0, 0],
            Color::Gray => [128, 128, 128],
            Color::Teal => [0, 128, 128],
            Color::Brown => [165, 42, 42],
        }
    }

    /// The colour as drawn in scenes of `kind`: easy-VQA-style scenes use
    /// easy-VQA's palette, so that a model trained on easy-VQA reads them.
    pub fn rgb_in(self, kind: SceneKind) -> [u8; 3] {
        match kind {
            SceneKind::Scenes => self.rgb(),
            SceneKind::Easy => self.easy_vqa_rgb(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// Radius as a fraction of the image side; a cell's half-width is 1/6,
    /// so an object stays inside its cell after jitter.
    pub fn radius(self) -> f32 {
        match self {
            Size::Large => 0.155,
            Size::Small => 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SceneKind {
    /// 1–4 objects on a 3×3 grid.
    Scenes,
    /// One shape on a light tinted background, like easy-VQA.
    Easy,
}

impl SceneKind {
    /// The plain background. Easy scenes are tinted as easy-VQA's images are:
    /// the shipped models, trained on white scenes and tinted easy-VQA images,
    /// caption a single shape on white as a scene.
    pub fn background(self) -> [u8; 3] {
        match self {
            SceneKind::Scenes => [255, 255, 255],
            SceneKind::Easy => [238, 246, 250],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    pub shape: Shape,
    pub color: Color,
    pub size: Size,
    /// Grid cell, 0..3 each, row 0 at the top.
    pub row: usize,
    pub col: usize,
    /// Centre and radius as fractions of the image side.
    pub cx: f32,
    pub cy: f32,
    pub radius: f32,
}

impl SceneObject {
    /// An object in the centre of grid cell (`row`, `col`), with its size's radius.
    pub fn centred(shape: Shape, color: Color, size: Size, row: usize, col: usize) -> Self {
        SceneObject {
            shape,
            color,
            size,
            row,
            col,
            cx: (col as f32 + 0.5) / 3.0,
            cy: (row as f32 + 0.5) / 3.0,
            radius: size.radius(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub kind: SceneKind,
    pub objects: Vec<SceneObject>,
    /// Seed of the background noise; `None` draws a plain background.
    #[serde(default)]
    pub noise_seed: Option<u64>,
}

const POSITIONS: [[&str; 3]; 3] = [
    ["top left", "top", "top right"],
    ["left", "center", "right"],
    ["bottom left", "bottom", "bottom right"],
];

/// The answer to "where is ...?": "top left", "center", ...
pub fn position_name(row: usize, col: usize) -> &'static str {
    POSITIONS[row.min(2)][col.min(2)]
}

/// The phrase placing an object in a cell: "at the top left", "on the left", "in the center".
pub fn position_phrase(row: usize, col: usize) -> String {
    let name = position_name(row, col);
    let preposition = match (row.min(2), col.min(2)) {
        (1, 1) => "in",
        (1, _) => "on",
        _ => "at",
    };
    format!("{preposition} the {name}")
}

/// "zero" … "four", and digits beyond.
pub fn number_word(n: usize) -> String {
    const WORDS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    WORDS
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_string())
}
