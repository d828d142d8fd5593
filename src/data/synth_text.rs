//! Captions and questions for synthetic scenes.
//!
//! Every question is answerable from the scene alone and unambiguous: an object is only
//! referred to by a description that fits it and nothing else ("the star" only when there
//! is exactly one star). Spatial words mean:
//! - "left of X" / "right of X": in a column strictly left / right of X's, any row;
//! - "above X" / "below X": in a row strictly above / below X's, any column;
//! - "closest to X": smallest grid distance (between cell centres) to X; ties are never asked.
//!
//! A relation question is asked only when exactly one object satisfies the relation.

use super::scene::{number_word, position_name, position_phrase, Color, Scene, SceneKind};
use super::scene::{SceneObject, Shape, Size};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use std::collections::BTreeMap;

/// One question with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qa {
    pub question: String,
    pub answer: String,
    pub question_type: &'static str,
    /// The scene's objects (indices) that the answer is read from: the one
    /// asked about, the ones counted, the ones whose presence makes a "yes".
    pub subjects: Vec<usize>,
}

/// Question types of multi-object scenes; easy scenes use color, shape and exist.
pub const QUESTION_TYPES: [&str; 7] = [
    "color", "shape", "size", "count", "exist", "position", "relation",
];

/// Several phrasings describing the whole scene, all lower case.
pub fn captions(scene: &Scene) -> Vec<String> {
    match (scene.kind, scene.objects.as_slice()) {
        (SceneKind::Easy, [o]) => easy_captions(o.color.name(), o.shape.name()),
        _ => scene_captions(scene),
    }
}

/// Captions of a single coloured shape; shared with the easy-VQA importer.
pub fn easy_captions(color: &str, shape: &str) -> Vec<String> {
    vec![
        format!("a {color} {shape}"),
        format!("there is a {color} {shape}"),
        format!("a {color} {shape} in the image"),
    ]
}

fn scene_captions(scene: &Scene) -> Vec<String> {
    let mut objects: Vec<&SceneObject> = scene.objects.iter().collect();
    objects.sort_by_key(|o| (o.row, o.col));
    let phrases: Vec<String> = objects.iter().map(|o| noun_phrase(o)).collect();
    let n = objects.len();
    let mut out = Vec::new();

    // "a small red circle at the top left and a large blue square in the center"
    let placed: Vec<String> = objects
        .iter()
        .zip(&phrases)
        .map(|(o, p)| format!("{p} {}", position_phrase(o.row, o.col)))
        .collect();
    out.push(join_and(&placed));

    // "two shapes: a small red circle and a large blue square"
    let noun = if n == 1 { "shape" } else { "shapes" };
    out.push(format!("{} {noun}: {}", number_word(n), join_and(&phrases)));

    // "a small red circle at the top left and a large blue square below it"
    if n >= 2 {
        let mut chained = vec![placed[0].clone()];
        for pair in objects.windows(2) {
            let phrase = noun_phrase(pair[1]);
            chained.push(format!("{phrase} {} it", relative_phrase(pair[0], pair[1])));
        }
        out.push(join_and(&chained));
    }

    // "two circles and one star"
    let counts: Vec<String> = Shape::SCENE
        .iter()
        .filter_map(|&shape| {
            let k = objects.iter().filter(|o| o.shape == shape).count();
            let noun = if k == 1 { shape.name() } else { shape.plural() };
            (k > 0).then(|| format!("{} {noun}", number_word(k)))
        })
        .collect();
    out.push(join_and(&counts));
    out
}

fn noun_phrase(o: &SceneObject) -> String {
    format!("a {} {} {}", o.size.name(), o.color.name(), o.shape.name())
}

/// Where `b` is relative to `a`: "below", "to the right of", "above and to the left of".
fn relative_phrase(a: &SceneObject, b: &SceneObject) -> String {
    let vertical = match b.row.cmp(&a.row) {
        std::cmp::Ordering::Greater => Some("below"),
        std::cmp::Ordering::Less => Some("above"),
        std::cmp::Ordering::Equal => None,
    };
    let horizontal = match b.col.cmp(&a.col) {
        std::cmp::Ordering::Greater => Some("to the right of"),
        std::cmp::Ordering::Less => Some("to the left of"),
        std::cmp::Ordering::Equal => None,
    };
    match (vertical, horizontal) {
        (Some(v), Some(h)) => format!("{v} and {h}"),
        (Some(v), None) => v.to_string(),
        (None, Some(h)) => h.to_string(),
        // Two objects never share a cell; keep a sensible phrase anyway.
        (None, None) => "next to".to_string(),
    }
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Every question the scene can answer unambiguously, without duplicates.
pub fn candidate_questions(scene: &Scene) -> Vec<Qa> {
    let mut out = match (scene.kind, scene.objects.as_slice()) {
        (SceneKind::Easy, [o]) => easy_questions(o),
        _ => scene_questions(scene),
    };
    let mut seen = std::collections::HashSet::new();
    let first_asked: Vec<bool> = out
        .iter()
        .map(|qa| seen.insert(qa.question.as_str()))
        .collect();
    let mut first = first_asked.into_iter();
    out.retain(|_| first.next().unwrap_or(false));
    out
}

/// Picks up to `n` questions: half (rounded up) relation questions where the scene has
/// them, the rest spread over the other types; within a type, answers are balanced
/// (e.g. as many "yes" as "no").
pub fn sample_questions(scene: &Scene, rng: &mut impl Rng, n: usize) -> Vec<Qa> {
    let mut groups: BTreeMap<&'static str, Vec<Qa>> = BTreeMap::new();
    for qa in candidate_questions(scene) {
        groups.entry(qa.question_type).or_default().push(qa);
    }
    let mut chosen = Vec::new();
    if let Some(relation) = groups.get_mut("relation") {
        for _ in 0..n.div_ceil(2) {
            match take_balanced(relation, rng) {
                Some(qa) => chosen.push(qa),
                None => break,
            }
        }
    }
    let mut types: Vec<&'static str> = groups.keys().copied().collect();
    types.shuffle(rng);
    // Relation questions go last so that they only fill what other types cannot.
    types.sort_by_key(|t| *t == "relation");
    while chosen.len() < n {
        let before = chosen.len();
        for t in &types {
            if chosen.len() >= n {
                break;
            }
            if let Some(qa) = groups.get_mut(t).and_then(|g| take_balanced(g, rng)) {
                chosen.push(qa);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    chosen
}

/// Removes a random question whose answer is drawn uniformly from the group's answers.
fn take_balanced(group: &mut Vec<Qa>, rng: &mut impl Rng) -> Option<Qa> {
    let mut answers: Vec<&str> = group.iter().map(|qa| qa.answer.as_str()).collect();
    answers.sort_unstable();
    answers.dedup();
    let answer = answers.choose(rng)?.to_string();
    let matching: Vec<usize> = (0..group.len())
        .filter(|&i| group[i].answer == answer)
        .collect();
    let &index = matching.choose(rng)?;
    Some(group.swap_remove(index))
}

fn qa(
    question: String,
    answer: impl Into<String>,
    question_type: &'static str,
    subjects: Vec<usize>,
) -> Qa {
    Qa {
        question,
        answer: answer.into(),
        question_type,
        subjects,
    }
}

/// The indices of the objects for which `select` holds.
fn objects_where(scene: &Scene, select: impl Fn(&SceneObject) -> bool) -> Vec<usize> {
    (0..scene.objects.len())
        .filter(|&i| select(&scene.objects[i]))
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn easy_questions(o: &SceneObject) -> Vec<Qa> {
    let (shape, color) = (o.shape.name(), o.color.name());
    let mut out = vec![
        qa(
            "what shape is in the image?".into(),
            shape,
            "shape",
            vec![0],
        ),
        qa("what shape is present?".into(), shape, "shape", vec![0]),
        qa(
            format!("what is the {color} shape?"),
            shape,
            "shape",
            vec![0],
        ),
        qa("what color is the shape?".into(), color, "color", vec![0]),
        qa(
            format!("what color is the {shape}?"),
            color,
            "color",
            vec![0],
        ),
        qa(
            format!("what is the color of the {shape}?"),
            color,
            "color",
            vec![0],
        ),
    ];
    let present = |yes: bool| if yes { vec![0] } else { Vec::new() };
    for s in Shape::EASY {
        out.push(qa(
            format!("is there a {}?", s.name()),
            yes_no(s == o.shape),
            "exist",
            present(s == o.shape),
        ));
    }
    for c in Color::ALL {
        out.push(qa(
            format!("is there a {} shape?", c.name()),
            yes_no(c == o.color),
            "exist",
            present(c == o.color),
        ));
    }
    out
}

/// Which attribute a question asks about, so a description must not give it away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attr {
    Shape,
    Color,
    Size,
    Position,
}

/// A description by attributes; `None` fields are not mentioned.
#[derive(Clone, Copy)]
struct Description {
    shape: Option<Shape>,
    color: Option<Color>,
    size: Option<Size>,
}

impl Description {
    fn matches(&self, o: &SceneObject) -> bool {
        self.shape.is_none_or(|s| s == o.shape)
            && self.color.is_none_or(|c| c == o.color)
            && self.size.is_none_or(|s| s == o.size)
    }

    fn mentions(&self, attr: Attr) -> bool {
        match attr {
            Attr::Shape => self.shape.is_some(),
            Attr::Color => self.color.is_some(),
            Attr::Size => self.size.is_some(),
            Attr::Position => false,
        }
    }

    /// Is every attribute of `self` also given in `other`?
    fn within(&self, other: &Description) -> bool {
        (self.shape.is_none() || other.shape.is_some())
            && (self.color.is_none() || other.color.is_some())
            && (self.size.is_none() || other.size.is_some())
    }

    /// "the small red star", "the red shape", "the star".
    fn text(&self) -> String {
        let mut words = vec!["the"];
        words.extend(self.size.map(Size::name));
        words.extend(self.color.map(Color::name));
        words.push(self.shape.map_or("shape", Shape::name));
        words.join(" ")
    }
}

/// The shortest descriptions that pick out object `i` alone without mentioning `avoid`:
/// attribute descriptions, plus "the shape at the top left" unless position is avoided.
fn references(scene: &Scene, i: usize, avoid: Attr) -> Vec<String> {
    let o = &scene.objects[i];
    let mut found: Vec<Description> = Vec::new();
    // Subsets of {shape, color, size}, smallest first.
    for mask in [1u8, 2, 4, 3, 5, 6, 7] {
        let d = Description {
            shape: (mask & 1 != 0).then_some(o.shape),
            color: (mask & 2 != 0).then_some(o.color),
            size: (mask & 4 != 0).then_some(o.size),
        };
        if d.mentions(avoid) || found.iter().any(|f| f.within(&d)) {
            continue;
        }
        if scene
            .objects
            .iter()
            .filter(|other| d.matches(other))
            .count()
            == 1
        {
            found.push(d);
        }
    }
    let mut out: Vec<String> = found.iter().map(Description::text).collect();
    if avoid != Attr::Position {
        out.push(format!("the shape {}", position_phrase(o.row, o.col)));
    }
    out
}

/// Squared distance between two objects' grid cells.
fn cell_distance(a: &SceneObject, b: &SceneObject) -> usize {
    let dr = a.row.abs_diff(b.row);
    let dc = a.col.abs_diff(b.col);
    dr * dr + dc * dc
}

fn scene_questions(scene: &Scene) -> Vec<Qa> {
    let objects = &scene.objects;
    let mut out = Vec::new();

    for (i, o) in objects.iter().enumerate() {
        let this = || vec![i];
        for r in references(scene, i, Attr::Color) {
            out.push(qa(
                format!("what color is {r}?"),
                o.color.name(),
                "color",
                this(),
            ));
        }
        out.push(qa(
            format!("what shape is {}?", position_phrase(o.row, o.col)),
            o.shape.name(),
            "shape",
            this(),
        ));
        for r in references(scene, i, Attr::Shape) {
            if !r.starts_with("the shape ") {
                out.push(qa(format!("what is {r}?"), o.shape.name(), "shape", this()));
            }
        }
        for r in references(scene, i, Attr::Size) {
            out.push(qa(
                format!("what size is {r}?"),
                o.size.name(),
                "size",
                this(),
            ));
        }
        for r in references(scene, i, Attr::Position) {
            out.push(qa(
                format!("where is {r}?"),
                position_name(o.row, o.col),
                "position",
                this(),
            ));
        }
    }

    out.push(qa(
        "how many shapes are there?".into(),
        number_word(objects.len()),
        "count",
        objects_where(scene, |_| true),
    ));
    for shape in Shape::SCENE {
        let these = objects_where(scene, |o| o.shape == shape);
        out.push(qa(
            format!("how many {} are there?", shape.plural()),
            number_word(these.len()),
            "count",
            these.clone(),
        ));
        out.push(qa(
            format!("is there a {}?", shape.name()),
            yes_no(!these.is_empty()),
            "exist",
            these,
        ));
    }
    for color in Color::ALL {
        let these = objects_where(scene, |o| o.color == color);
        out.push(qa(
            format!("how many {} shapes are there?", color.name()),
            number_word(these.len()),
            "count",
            these.clone(),
        ));
        out.push(qa(
            format!("is there a {} shape?", color.name()),
            yes_no(!these.is_empty()),
            "exist",
            these,
        ));
        for shape in Shape::SCENE {
            let these = objects_where(scene, |o| o.color == color && o.shape == shape);
            out.push(qa(
                format!("is there a {} {}?", color.name(), shape.name()),
                yes_no(!these.is_empty()),
                "exist",
                these,
            ));
        }
    }

    out.extend(relation_questions(scene));
    out
}

fn relation_questions(scene: &Scene) -> Vec<Qa> {
    let objects = &scene.objects;
    let mut out = Vec::new();
    type Test = fn(&SceneObject, &SceneObject) -> bool;
    let relations: [(&str, Test); 4] = [
        ("left of", |t, r| t.col < r.col),
        ("right of", |t, r| t.col > r.col),
        ("above", |t, r| t.row < r.row),
        ("below", |t, r| t.row > r.row),
    ];
    for (i, reference) in objects.iter().enumerate() {
        let names = references(scene, i, Attr::Position);
        let mut targets: Vec<(&str, usize)> = Vec::new();
        for (word, test) in relations {
            if let [t] = objects_where(scene, |t| test(t, reference))[..] {
                targets.push((word, t));
            }
        }
        let distance = |t: usize| cell_distance(&objects[t], reference);
        let mut others: Vec<usize> = (0..objects.len()).filter(|&j| j != i).collect();
        others.sort_by_key(|&t| distance(t));
        if let Some(&nearest) = others.first() {
            let tie = others
                .get(1)
                .is_some_and(|&t| distance(t) == distance(nearest));
            if !tie {
                targets.push(("closest to", nearest));
            }
        }
        for name in &names {
            for &(word, t) in &targets {
                out.push(qa(
                    format!("what shape is {word} {name}?"),
                    objects[t].shape.name(),
                    "relation",
                    vec![t],
                ));
                out.push(qa(
                    format!("what color is the shape {word} {name}?"),
                    objects[t].color.name(),
                    "relation",
                    vec![t],
                ));
            }
        }
    }
    out
}

/// A question's template: the question with every colour, shape, size and
/// position word replaced by a placeholder, so that "what color is the red
/// star?" and "what color is the blue circle?" share one.
pub fn template(question: &str) -> String {
    let mut out = String::with_capacity(question.len() + 16);
    for (i, word) in question.trim_end_matches('?').split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(if Color::ALL.iter().any(|c| c.name() == word) {
            "<color>"
        } else if Shape::SCENE
            .iter()
            .any(|s| s.name() == word || s.plural() == word)
        {
            "<shape>"
        } else if matches!(word, "small" | "large") {
            "<size>"
        } else if matches!(word, "top" | "bottom" | "left" | "right" | "center") {
            "<position>"
        } else {
            word
        });
    }
    out
}

/// One question about `scene`, drawn so that every question type is equally
/// likely, then every template of that type, then every answer of that
/// template. So "how many red shapes?" is answered "two" as often as the
/// scene allows, and not only "zero".
///
/// "is there a red circle?" answered "no" is asked, where the scene allows,
/// about a colour and a shape that are both present on different objects:
/// the question can then only be answered by binding the colour to its object.
pub fn sample_balanced_question(scene: &Scene, rng: &mut impl Rng) -> Option<Qa> {
    sample_weighted_question(scene, &BTreeMap::new(), rng)
}

/// As [`sample_balanced_question`], with each question type drawn in
/// proportion to its weight in `type_weights` (1 for a type not named).
/// Without weights the draw is exactly `sample_balanced_question`'s.
pub fn sample_weighted_question(
    scene: &Scene,
    type_weights: &BTreeMap<String, f64>,
    rng: &mut impl Rng,
) -> Option<Qa> {
    let hard_negatives = has_split_pair(scene);
    let mut by_type: BTreeMap<&'static str, BTreeMap<String, Vec<Qa>>> = BTreeMap::new();
    for qa in candidate_questions(scene) {
        let template = template(&qa.question);
        let easy_negative = template == CONJUNCTION_TEMPLATE
            && qa.answer == "no"
            && !splits_binding(scene, &qa.question);
        if hard_negatives && easy_negative {
            continue;
        }
        by_type
            .entry(qa.question_type)
            .or_default()
            .entry(template)
            .or_default()
            .push(qa);
    }
    let types: Vec<&'static str> = by_type.keys().copied().collect();
    let chosen_type = if type_weights.is_empty() {
        *types.choose(rng)?
    } else {
        *types
            .choose_weighted(rng, |t| type_weights.get(*t).copied().unwrap_or(1.0))
            .ok()?
    };
    let mut groups = by_type.remove(chosen_type)?;
    let templates: Vec<&String> = groups.keys().collect();
    let chosen_template = (*templates.choose(rng)?).clone();
    let mut group = groups.remove(&chosen_template)?;
    take_balanced(&mut group, rng)
}

/// Up to `n` different questions, each drawn by [`sample_balanced_question`].
pub fn sample_balanced_questions(scene: &Scene, rng: &mut impl Rng, n: usize) -> Vec<Qa> {
    let mut out: Vec<Qa> = Vec::with_capacity(n);
    // Repeats are skipped; a scene with fewer than n questions stops early.
    for _ in 0..n.saturating_mul(8) {
        if out.len() == n {
            break;
        }
        match sample_balanced_question(scene, rng) {
            Some(qa) if !out.iter().any(|o| o.question == qa.question) => out.push(qa),
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// "is there a <color> <shape>?"
fn is_conjunction(question: &str) -> bool {
    template(question) == CONJUNCTION_TEMPLATE
}

const CONJUNCTION_TEMPLATE: &str = "is there a <color> <shape>";

/// The colour and shape words of "is there a <color> <shape>?".
fn conjunction_words(question: &str) -> Option<(&str, &str)> {
    if !is_conjunction(question) {
        return None;
    }
    let mut words = question.trim_end_matches('?').split(' ').skip(3);
    Some((words.next()?, words.next()?))
}

/// Are the conjunction's colour and shape both in the scene? Asked of a
/// question answered "no", they then sit on different objects.
fn splits_binding(scene: &Scene, question: &str) -> bool {
    let Some((color, shape)) = conjunction_words(question) else {
        return false;
    };
    let has_color = scene.objects.iter().any(|o| o.color.name() == color);
    let has_shape = scene.objects.iter().any(|o| o.shape.name() == shape);
    has_color && has_shape
}

/// "is there a <color> <shape>?" where the scene holds that colour and that
/// shape, but on different objects: only an answer that binds them says "no".
pub fn is_split_conjunction(scene: &Scene, question: &str) -> bool {
    let Some((color, shape)) = conjunction_words(question) else {
        return false;
    };
    splits_binding(scene, question)
        && !scene
            .objects
            .iter()
            .any(|o| o.color.name() == color && o.shape.name() == shape)
}

/// Does the scene have a colour and a shape that are present, but never together?
fn has_split_pair(scene: &Scene) -> bool {
    scene.objects.iter().any(|a| {
        scene.objects.iter().any(|b| {
            !scene
                .objects
                .iter()
                .any(|o| o.color == a.color && o.shape == b.shape)
        })
    })
}
