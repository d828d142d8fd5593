//! Properties of the synthetic data set. Answers are re-derived here from `scenes.jsonl`
//! with logic of the test's own (plain JSON and string matching), not the generator's.

use fusecap::data::manifest::{load_manifest, Task};
use fusecap::data::scene::{Color, SceneKind};
use fusecap::data::synth::{write_dataset, SynthConfig};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

#[derive(Debug, Clone)]
struct Obj {
    shape: String,
    color: String,
    size: String,
    row: i64,
    col: i64,
}

const POSITIONS: [(&str, i64, i64); 9] = [
    ("top left", 0, 0),
    ("top", 0, 1),
    ("top right", 0, 2),
    ("left", 1, 0),
    ("center", 1, 1),
    ("right", 1, 2),
    ("bottom left", 2, 0),
    ("bottom", 2, 1),
    ("bottom right", 2, 2),
];
const SHAPES: [&str; 5] = ["circle", "square", "triangle", "star", "rectangle"];
const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "black", "gray", "teal", "brown",
];
const NUMBERS: [&str; 5] = ["zero", "one", "two", "three", "four"];

fn make(cfg: &SynthConfig) -> (tempfile::TempDir, SynthConfig) {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(cfg, dir.path()).unwrap();
    (dir, cfg.clone())
}

fn scenes_cfg(count: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        count,
        seed,
        ..SynthConfig::default()
    }
}

/// Each line of `scenes.jsonl` in `dir`, with its image.
fn scenes_with_images(dir: &Path) -> Vec<(Value, image::RgbImage)> {
    let text = std::fs::read_to_string(dir.join("scenes.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let img = image::open(dir.join(v["image"].as_str().unwrap()))
                .unwrap()
                .to_rgb8();
            (v, img)
        })
        .collect()
}

/// image path → objects, read as plain JSON.
fn read_scenes(dir: &Path) -> HashMap<String, Vec<Obj>> {
    let text = std::fs::read_to_string(dir.join("scenes.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let objects = v["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| Obj {
                    shape: o["shape"].as_str().unwrap().into(),
                    color: o["color"].as_str().unwrap().into(),
                    size: o["size"].as_str().unwrap().into(),
                    row: o["row"].as_i64().unwrap(),
                    col: o["col"].as_i64().unwrap(),
                })
                .collect();
            (v["image"].as_str().unwrap().to_string(), objects)
        })
        .collect()
}

fn position_of(phrase: &str) -> Option<(i64, i64)> {
    let name = ["at the ", "on the ", "in the "]
        .iter()
        .find_map(|p| phrase.strip_prefix(p))?;
    POSITIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, r, c)| (r, c))
}

/// The one object a phrase like "the small red star", "the red shape" or "the shape at
/// the top left" refers to; panics if it fits none or several (an ambiguous question).
fn resolve<'a>(objects: &'a [Obj], phrase: &str, question: &str) -> &'a Obj {
    let matching: Vec<&Obj> = if let Some(pos) = phrase.strip_prefix("the shape ") {
        let (r, c) = position_of(pos).unwrap_or_else(|| panic!("bad position in {question:?}"));
        objects
            .iter()
            .filter(|o| o.row == r && o.col == c)
            .collect()
    } else {
        let words: Vec<&str> = phrase
            .strip_prefix("the ")
            .unwrap_or_else(|| panic!("reference without 'the' in {question:?}"))
            .split(' ')
            .collect();
        objects
            .iter()
            .filter(|o| {
                words.iter().all(|w| match *w {
                    "shape" => true,
                    "small" | "large" => o.size == *w,
                    w if COLORS.contains(&w) => o.color == w,
                    w if SHAPES.contains(&w) => o.shape == w,
                    other => panic!("unknown word {other:?} in {question:?}"),
                })
            })
            .collect()
    };
    assert_eq!(
        matching.len(),
        1,
        "{phrase:?} must pick out exactly one object in {question:?}: {objects:?}"
    );
    matching[0]
}

/// The object standing in `relation` to `reference`; panics unless exactly one does.
fn related<'a>(objects: &'a [Obj], relation: &str, reference: &Obj, question: &str) -> &'a Obj {
    let others: Vec<&Obj> = objects
        .iter()
        .filter(|o| !(o.row == reference.row && o.col == reference.col))
        .collect();
    let hits: Vec<&Obj> = match relation {
        "left of" => others
            .into_iter()
            .filter(|o| o.col < reference.col)
            .collect(),
        "right of" => others
            .into_iter()
            .filter(|o| o.col > reference.col)
            .collect(),
        "above" => others
            .into_iter()
            .filter(|o| o.row < reference.row)
            .collect(),
        "below" => others
            .into_iter()
            .filter(|o| o.row > reference.row)
            .collect(),
        "closest to" => {
            let d = |o: &Obj| (o.row - reference.row).pow(2) + (o.col - reference.col).pow(2);
            let best = others.iter().map(|o| d(o)).min().expect("no other object");
            others.into_iter().filter(|o| d(o) == best).collect()
        }
        other => panic!("unknown relation {other:?}"),
    };
    assert_eq!(hits.len(), 1, "{question:?} is ambiguous in {objects:?}");
    hits[0]
}

fn split_relation(rest: &str) -> Option<(&'static str, &str)> {
    ["left of ", "right of ", "above ", "below ", "closest to "]
        .iter()
        .find_map(|r| rest.strip_prefix(r).map(|t| (r.trim_end(), t)))
}

fn count_word(n: usize) -> String {
    NUMBERS[n].to_string()
}

/// (answer, question type) derived from the question text and the objects alone.
fn derive(objects: &[Obj], question: &str) -> (String, &'static str) {
    let q = question
        .strip_suffix('?')
        .unwrap_or_else(|| panic!("question without '?': {question:?}"));
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    if let Some(rest) = q.strip_prefix("what color is the shape ") {
        if let Some((relation, phrase)) = split_relation(rest) {
            let reference = resolve(objects, phrase, question);
            return (
                related(objects, relation, reference, question)
                    .color
                    .clone(),
                "relation",
            );
        }
    }
    if let Some(rest) = q.strip_prefix("what shape is ") {
        if let Some((relation, phrase)) = split_relation(rest) {
            let reference = resolve(objects, phrase, question);
            return (
                related(objects, relation, reference, question)
                    .shape
                    .clone(),
                "relation",
            );
        }
        if rest == "in the image" || rest == "present" {
            assert_eq!(objects.len(), 1, "{question:?} needs a single shape");
            return (objects[0].shape.clone(), "shape");
        }
        let (r, c) = position_of(rest).unwrap_or_else(|| panic!("unparsed {question:?}"));
        let o = resolve(objects, &format!("the shape {rest}"), question);
        assert_eq!((o.row, o.col), (r, c));
        return (o.shape.clone(), "shape");
    }
    if let Some(phrase) = q.strip_prefix("what is the color of ") {
        return (resolve(objects, phrase, question).color.clone(), "color");
    }
    if let Some(phrase) = q.strip_prefix("what color is ") {
        return (resolve(objects, phrase, question).color.clone(), "color");
    }
    if let Some(phrase) = q.strip_prefix("what size is ") {
        return (resolve(objects, phrase, question).size.clone(), "size");
    }
    if let Some(phrase) = q.strip_prefix("what is ") {
        return (resolve(objects, phrase, question).shape.clone(), "shape");
    }
    if let Some(phrase) = q.strip_prefix("where is ") {
        let o = resolve(objects, phrase, question);
        let name = POSITIONS
            .iter()
            .find(|(_, r, c)| (*r, *c) == (o.row, o.col))
            .unwrap()
            .0;
        return (name.to_string(), "position");
    }
    if let Some(rest) = q.strip_prefix("how many ") {
        let what = rest
            .strip_suffix(" are there")
            .expect("how many ... are there");
        let n = if what == "shapes" {
            objects.len()
        } else if let Some(color) = what.strip_suffix(" shapes") {
            assert!(COLORS.contains(&color), "{question:?}");
            objects.iter().filter(|o| o.color == color).count()
        } else {
            let shape = what.strip_suffix('s').expect("plural");
            assert!(SHAPES.contains(&shape), "{question:?}");
            objects.iter().filter(|o| o.shape == shape).count()
        };
        return (count_word(n), "count");
    }
    if let Some(rest) = q.strip_prefix("is there a ") {
        let words: Vec<&str> = rest.split(' ').collect();
        let present = match words.as_slice() {
            [color, "shape"] => objects.iter().any(|o| o.color == *color),
            [shape] => objects.iter().any(|o| o.shape == *shape),
            [color, shape] => objects
                .iter()
                .any(|o| o.color == *color && o.shape == *shape),
            _ => panic!("unparsed {question:?}"),
        };
        return (yes_no(present), "exist");
    }
    panic!("unparsed question {question:?}");
}

struct Loaded {
    objects: HashMap<String, Vec<Obj>>,
    vqa: Vec<(String, String, String, Option<String>)>,
    captions: Vec<(String, Vec<String>)>,
}

fn load(dir: &Path) -> Loaded {
    let manifest = load_manifest(&dir.join("manifest.jsonl")).unwrap();
    assert!(manifest.problems.is_empty(), "{:?}", manifest.problems);
    let mut vqa = Vec::new();
    let mut captions = Vec::new();
    for r in manifest.records {
        let rel = r
            .image
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        match r.task {
            Task::Vqa {
                question,
                answer,
                question_type,
                answers,
            } => {
                assert_eq!(answers, vec![answer.clone()]);
                vqa.push((rel, question, answer, question_type));
            }
            Task::Caption { captions: c } => captions.push((rel, c)),
        }
    }
    Loaded {
        objects: read_scenes(dir),
        vqa,
        captions,
    }
}

#[test]
fn every_answer_follows_from_the_scene() {
    for kind in [SceneKind::Scenes, SceneKind::Easy] {
        let (dir, _) = make(&SynthConfig {
            kind,
            ..scenes_cfg(400, 11)
        });
        let data = load(dir.path());
        assert!(data.vqa.len() >= 400 * 3);
        for (image, question, answer, qtype) in &data.vqa {
            let objects = &data.objects[image];
            let (derived, derived_type) = derive(objects, question);
            assert_eq!(&derived, answer, "{image}: {question}");
            assert_eq!(qtype.as_deref(), Some(derived_type), "{image}: {question}");
            assert!(answer.split(' ').count() <= 2, "long answer {answer:?}");
        }
    }
}

#[test]
fn relation_questions_are_at_least_thirty_percent_and_all_types_appear() {
    let (dir, _) = make(&scenes_cfg(500, 5));
    let data = load(dir.path());
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, _, t) in &data.vqa {
        *types.entry(t.clone().unwrap()).or_default() += 1;
    }
    let share = types["relation"] as f64 / data.vqa.len() as f64;
    assert!(share >= 0.3, "relation share {share:.3} in {types:?}");
    for t in [
        "color", "shape", "count", "exist", "position", "relation", "size",
    ] {
        assert!(
            types.get(t).copied().unwrap_or(0) >= 20,
            "few {t}: {types:?}"
        );
    }
    // Both yes/no answers appear in comparable numbers.
    let exist: Vec<&str> = data
        .vqa
        .iter()
        .filter(|v| v.3.as_deref() == Some("exist"))
        .map(|v| v.2.as_str())
        .collect();
    let yes = exist.iter().filter(|a| **a == "yes").count() as f64 / exist.len() as f64;
    assert!((0.3..=0.7).contains(&yes), "yes share {yes}");
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_does_not() {
    let cfg = SynthConfig {
        noise: true,
        ..scenes_cfg(30, 42)
    };
    let (a, _) = make(&cfg);
    let (b, _) = make(&cfg);
    let (c, _) = make(&SynthConfig {
        seed: 43,
        ..cfg.clone()
    });
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    for file in [
        "manifest.jsonl",
        "scenes.jsonl",
        "images/00000.png",
        "images/00029.png",
    ] {
        assert_eq!(read(a.path(), file), read(b.path(), file), "{file}");
    }
    assert_ne!(
        read(a.path(), "manifest.jsonl"),
        read(c.path(), "manifest.jsonl")
    );
    assert_ne!(
        read(a.path(), "images/00000.png"),
        read(c.path(), "images/00000.png")
    );
}

#[test]
fn scenes_respect_the_grid_and_the_split_fraction() {
    let cfg = SynthConfig {
        test_fraction: 0.25,
        ..scenes_cfg(200, 9)
    };
    let (dir, _) = make(&cfg);
    let data = load(dir.path());
    let mut sizes = BTreeSet::new();
    for objects in data.objects.values() {
        assert!((1..=4).contains(&objects.len()));
        let cells: BTreeSet<(i64, i64)> = objects.iter().map(|o| (o.row, o.col)).collect();
        assert_eq!(cells.len(), objects.len(), "two objects share a cell");
        assert!(cells
            .iter()
            .all(|&(r, c)| (0..3).contains(&r) && (0..3).contains(&c)));
        sizes.extend(objects.iter().map(|o| o.size.clone()));
    }
    assert_eq!(sizes.len(), 2);
    let manifest = load_manifest(&dir.path().join("manifest.jsonl")).unwrap();
    let test_images: BTreeSet<_> = manifest
        .records
        .iter()
        .filter(|r| r.in_split("test"))
        .map(|r| r.image.clone())
        .collect();
    assert_eq!(test_images.len(), 50);
    // An image's records all share its split.
    for r in &manifest.records {
        assert_eq!(r.in_split("test"), test_images.contains(&r.image));
    }
}

#[test]
fn captions_are_lower_case_from_a_small_vocabulary_and_name_every_object() {
    let vocabulary: BTreeSet<&str> = [
        "a",
        "and",
        "at",
        "the",
        "in",
        "on",
        "of",
        "to",
        "it",
        "there",
        "is",
        "image",
        "shape",
        "shapes",
        "small",
        "large",
        "top",
        "bottom",
        "left",
        "right",
        "center",
        "above",
        "below",
        "next",
        "circles",
        "squares",
        "triangles",
        "stars",
        "rectangles",
    ]
    .into_iter()
    .chain(SHAPES)
    .chain(COLORS)
    .chain(NUMBERS)
    .collect();
    for kind in [SceneKind::Scenes, SceneKind::Easy] {
        let (dir, _) = make(&SynthConfig {
            kind,
            ..scenes_cfg(150, 3)
        });
        let data = load(dir.path());
        assert_eq!(data.captions.len(), 150);
        for (image, captions) in &data.captions {
            assert!(captions.len() >= 3, "{captions:?}");
            for caption in captions {
                for word in caption.split([' ', ',', ':']) {
                    assert!(
                        word.is_empty() || vocabulary.contains(word),
                        "word {word:?} in {caption:?}"
                    );
                }
            }
            // Some phrasing lists every object with its colour and shape.
            let objects = &data.objects[image];
            assert!(captions.iter().any(|c| objects
                .iter()
                .all(|o| c.contains(&format!("{} {}", o.color, o.shape)))));
        }
    }
}

#[test]
fn images_show_each_object_in_its_colour_on_white() {
    let (dir, _) = make(&scenes_cfg(40, 8));
    for (v, img) in scenes_with_images(dir.path()) {
        assert_eq!(img.dimensions(), (64, 64));
        let mut occupied = BTreeSet::new();
        for o in v["objects"].as_array().unwrap() {
            let x = (o["cx"].as_f64().unwrap() * 64.0) as u32;
            let y = (o["cy"].as_f64().unwrap() * 64.0) as u32;
            let color: Color = serde_json::from_value(o["color"].clone()).unwrap();
            assert_eq!(img.get_pixel(x, y).0, color.rgb(), "{v}");
            occupied.insert((o["row"].as_u64().unwrap(), o["col"].as_u64().unwrap()));
        }
        for r in 0..3u64 {
            for c in 0..3u64 {
                if !occupied.contains(&(r, c)) {
                    let (x, y) = ((c * 64 + 32) / 3, (r * 64 + 32) / 3);
                    assert_eq!(img.get_pixel(x as u32, y as u32).0, [255, 255, 255]);
                }
            }
        }
    }
}

#[test]
fn easy_images_are_drawn_on_a_tinted_background_like_easy_vqa() {
    let (dir, _) = make(&SynthConfig {
        kind: SceneKind::Easy,
        ..scenes_cfg(20, 4)
    });
    let tint = SceneKind::Easy.background();
    assert_ne!(tint, SceneKind::Scenes.background());
    for (v, img) in scenes_with_images(dir.path()) {
        // No easy shape reaches a corner.
        assert_eq!(img.get_pixel(0, 0).0, tint, "{v}");
        assert_eq!(img.get_pixel(63, 63).0, tint, "{v}");
    }
}

#[test]
fn colours_are_far_apart_and_far_from_both_backgrounds() {
    for kind in [SceneKind::Scenes, SceneKind::Easy] {
        let colours: Vec<[u8; 3]> = Color::ALL.iter().map(|c| c.rgb_in(kind)).collect();
        let backgrounds = [SceneKind::Scenes.background(), SceneKind::Easy.background()];
        let distance = |a: &[u8; 3], b: &[u8; 3]| -> f64 {
            (0..3)
                .map(|k| (a[k] as f64 - b[k] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        for (i, a) in colours.iter().enumerate() {
            for b in colours[i + 1..].iter().chain(&backgrounds) {
                let d = distance(a, b);
                assert!(d >= 80.0, "{kind:?}: {a:?} and {b:?} are only {d:.0} apart");
            }
        }
    }
}

#[test]
fn bad_settings_are_rejected_with_the_value_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_dataset(
        &SynthConfig {
            test_fraction: 1.5,
            ..scenes_cfg(5, 0)
        },
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
    let err = write_dataset(&scenes_cfg(0, 0), dir.path()).unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
}

/// easy-VQA draws in CSS named colours (measured on its images: red is
/// (255, 0, 0), brown (165, 42, 42)); easy-style scenes must too, or the
/// scenes' red (220, 30, 30) reads as easy-VQA's brown.
#[test]
fn easy_images_use_easy_vqa_colours() {
    let (dir, _) = make(&SynthConfig {
        kind: SceneKind::Easy,
        ..scenes_cfg(40, 4)
    });
    let easy_vqa = [
        ("red", [255, 0, 0]),
        ("green", [0, 255, 0]),
        ("blue", [0, 0, 255]),
        ("yellow", [255, 255, 0]),
        ("black", [0, 0, 0]),
        ("gray", [128, 128, 128]),
        ("teal", [0, 128, 128]),
        ("brown", [165, 42, 42]),
    ];
    for (v, img) in scenes_with_images(dir.path()) {
        let object = &v["objects"][0];
        let name = object["color"].as_str().unwrap();
        let (_, rgb) = easy_vqa.iter().find(|(n, _)| *n == name).unwrap();
        let at = |key: &str| (object[key].as_f64().unwrap() * 64.0) as u32;
        assert_eq!(&img.get_pixel(at("cx"), at("cy")).0, rgb, "{v}");
    }
}

/// `--balanced` asks what training's stream asks: many more "is there a red
/// circle?" questions whose colour and shape sit on different objects than
/// the default sampler, never the same question twice for one image, and
/// every type of question.
#[test]
fn balanced_questions_probe_binding() {
    use fusecap::data::synth::generate_item;
    use fusecap::data::synth_text::is_split_conjunction;
    let count = |balanced: bool| {
        let cfg = SynthConfig {
            balanced,
            ..scenes_cfg(300, 13)
        };
        let mut split = 0;
        let mut types = BTreeSet::new();
        for i in 0..cfg.count {
            let (scene, questions) = generate_item(&cfg, i);
            let distinct: BTreeSet<&str> = questions.iter().map(|q| q.question.as_str()).collect();
            assert_eq!(
                distinct.len(),
                questions.len(),
                "image {i} repeats a question"
            );
            split += questions
                .iter()
                .filter(|q| is_split_conjunction(&scene, &q.question))
                .count();
            types.extend(questions.iter().map(|q| q.question_type));
        }
        (split, types.len())
    };
    let (default_split, _) = count(false);
    let (balanced_split, balanced_types) = count(true);
    assert!(
        balanced_split >= 20 && balanced_split > 4 * default_split,
        "split conjunctions: {balanced_split} balanced against {default_split} by default"
    );
    assert_eq!(balanced_types, 7);
}
