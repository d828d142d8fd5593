//! Scenes drawn on the fly during training, so that no two steps see the same
//! image: each batch mixes manifest examples with fresh multi-object scenes.
//!
//! Streamed item `i` depends only on (seed, i), so a resumed run sees the same
//! items. With a pool of N scenes (`StreamOptions::pool`), item `i` shows
//! scene `i mod N` with a question drawn for `i`: the images repeat, so a
//! frozen pretrained encoder's features can be cached, and the questions
//! keep varying. The scenes vary their background (white, light tints, gradients,
//! speckle noise) so that neither the task nor the caption style can be read
//! off it, and their questions are balanced by type, template and answer
//! (`synth_text::sample_balanced_question`), or drawn by type in proportions
//! of the user's choosing (`StreamOptions::type_weights`).
use std::collections::BTreeMap;

use anyhow::Result;
use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::batch::{Dataset, Example};
use super::cells::{cell_targets, mentioned_cells, subject_cells, CellTarget};
use super::draw::{render_on, Backdrop};
use super::image::Preprocess;
use super::scene::Scene;
use super::synth::{image_rng, random_scene, random_scene_of_at_most, MAX_SCENE_OBJECTS};
use super::synth_text::{candidate_questions, captions, sample_weighted_question, QUESTION_TYPES};
use crate::model::{Config, MentionTarget};
use crate::tokenizer::TextTokenizer;

/// The side, in pixels, scenes are drawn at before the model's resize; the
/// same as `fusecap data synth`'s default, so streamed and evaluated scenes
/// go through the same resize.
const DRAW_SIZE: u32 = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    pub seed: u64,
    /// Share of each training batch that is streamed scenes, in (0, 1].
    pub share: f64,
    /// Draw the scenes from this many (`--stream-pool`); none: every scene is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<u64>,
    /// Draw the streamed questions of these types this many times as often
    /// as the others (`--stream-type-weight`); empty: every type alike.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub type_weights: BTreeMap<String, f64>,
    /// A curriculum over this many steps (`--stream-ramp`): the streamed
    /// scenes hold one object in its first third, up to two in the second,
    /// up to three in the last, and up to four from then on. None: 1–4 from
    /// the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_steps: Option<u64>,
}

impl StreamOptions {
    /// Streamed examples in a batch of `batch_size`.
    pub fn per_batch(&self, batch_size: usize) -> usize {
        ((batch_size as f64 * self.share).round() as usize).clamp(1, batch_size)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(format!(
                "share {} is out of range: use a value above 0 and at most 1",
                self.share
            ));
        }
        if self.pool == Some(0) {
            return Err("a pool of 0 scenes: use at least 1".into());
        }
        match (self.ramp_steps, self.pool) {
            (Some(0), _) => return Err("a ramp of 0 steps: use at least 1, or leave it out".into()),
            (Some(_), Some(_)) => {
                return Err(
                    "a ramp draws fewer objects early on, a pool shows the same scenes throughout: use one of them".into(),
                )
            }
            _ => {}
        }
        for (name, weight) in &self.type_weights {
            if !QUESTION_TYPES.contains(&name.as_str()) {
                return Err(format!(
                    "no streamed question type is called {name:?}; use one of {}",
                    QUESTION_TYPES.join(", ")
                ));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(format!(
                    "the weight of {name} ({weight}) must be a positive number"
                ));
            }
        }
        Ok(())
    }

    /// Training item `index`, its question drawn with the type weights, its
    /// scene of up to four objects.
    pub fn item(&self, index: u64, caption: bool) -> StreamedItem {
        self.item_of_at_most(MAX_SCENE_OBJECTS, index, caption)
    }

    /// Training item `index` at `step`: as [`StreamOptions::item`], with as
    /// many objects as the ramp allows then.
    pub fn item_at_step(&self, step: usize, index: u64, caption: bool) -> StreamedItem {
        self.item_of_at_most(self.max_objects(step), index, caption)
    }

    fn item_of_at_most(&self, max_objects: usize, index: u64, caption: bool) -> StreamedItem {
        let draw = Draw {
            pool: self.pool,
            type_weights: &self.type_weights,
            max_objects,
        };
        drawn_item(self.seed, &draw, index, caption)
    }

    /// The most objects a streamed scene of `step` holds.
    pub fn max_objects(&self, step: usize) -> usize {
        match self.ramp_steps {
            Some(ramp) if (step as u64) < ramp => {
                let extra = step as u128 * (MAX_SCENE_OBJECTS as u128 - 1) / ramp as u128;
                1 + extra as usize
            }
            _ => MAX_SCENE_OBJECTS,
        }
    }
}

/// One streamed example before tokenisation.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedItem {
    pub image: RgbImage,
    /// `None`: a caption, asked with the caption prompt.
    pub question: Option<String>,
    pub answer: String,
    pub question_type: Option<&'static str>,
    /// The objects the answer is read from (`Qa::subjects`); none for a caption.
    pub subjects: Vec<usize>,
    pub scene: Scene,
}

/// Item `index` of the stream with `seed`: a question, or a caption if
/// `caption` is set (or the scene has no question).
pub fn streamed_item(seed: u64, index: u64, caption: bool) -> StreamedItem {
    drawn_item(seed, &Draw::full(None, &BTreeMap::new()), index, caption)
}

/// Item `index` of the stream with `seed` that draws its scenes from a pool
/// of `pool`: the scene and image of `streamed_item(seed, index % pool, _)`,
/// with a question (or caption) drawn for `index` itself.
pub fn pooled_item(seed: u64, index: u64, pool: u64, caption: bool) -> StreamedItem {
    drawn_item(
        seed,
        &Draw::full(Some(pool), &BTreeMap::new()),
        index,
        caption,
    )
}

/// How the stream draws its items.
struct Draw<'a> {
    pool: Option<u64>,
    type_weights: &'a BTreeMap<String, f64>,
    max_objects: usize,
}

impl<'a> Draw<'a> {
    /// Scenes of up to four objects.
    fn full(pool: Option<u64>, type_weights: &'a BTreeMap<String, f64>) -> Self {
        Draw {
            pool,
            type_weights,
            max_objects: MAX_SCENE_OBJECTS,
        }
    }
}

/// Item `index` of the stream with `seed`, from a pool if there is one. A
/// pool's questions come from another stream than its scenes', so that
/// visits to one scene differ.
fn drawn_item(seed: u64, draw: &Draw, index: u64, caption: bool) -> StreamedItem {
    let (scene, image, mut question_rng) = match draw.pool {
        Some(pool) => {
            let (scene, image) =
                drawn_scene(&mut image_rng(seed, index % pool.max(1)), draw.max_objects);
            (scene, image, image_rng(!seed, index))
        }
        None => {
            let mut rng = image_rng(seed, index);
            let (scene, image) = drawn_scene(&mut rng, draw.max_objects);
            (scene, image, rng)
        }
    };
    example_of(scene, image, caption, draw.type_weights, &mut question_rng)
}

/// A random scene of up to `max_objects` objects and its image on a random backdrop.
fn drawn_scene(rng: &mut impl Rng, max_objects: usize) -> (Scene, RgbImage) {
    let noise = rng.random_bool(0.25);
    let scene = random_scene_of_at_most(rng, noise, max_objects);
    let backdrop = random_backdrop(rng);
    let image = render_on(&scene, DRAW_SIZE, &backdrop);
    (scene, image)
}

/// A balanced question about `scene` (types weighted by `type_weights`), or
/// a caption of it if `caption` is set (or it has no question).
fn example_of(
    scene: Scene,
    image: RgbImage,
    caption: bool,
    type_weights: &BTreeMap<String, f64>,
    rng: &mut impl Rng,
) -> StreamedItem {
    let question = if caption {
        None
    } else {
        sample_weighted_question(&scene, type_weights, rng)
    };
    match question {
        Some(qa) => StreamedItem {
            image,
            question: Some(qa.question),
            answer: qa.answer,
            question_type: Some(qa.question_type),
            subjects: qa.subjects,
            scene,
        },
        None => {
            let all = captions(&scene);
            let answer = all.choose(rng).cloned().unwrap_or_default();
            StreamedItem {
                image,
                question: None,
                answer,
                question_type: None,
                subjects: Vec::new(),
                scene,
            }
        }
    }
}

/// White 30% of the time; otherwise a light tint, or a light gradient down
/// or across. Every channel stays at 200 or above, far from the eight
/// object colours.
fn random_backdrop(rng: &mut impl Rng) -> Backdrop {
    fn light(rng: &mut impl Rng) -> [u8; 3] {
        std::array::from_fn(|_| rng.random_range(200..=255))
    }
    let roll: f64 = rng.random();
    if roll < 0.3 {
        Backdrop::plain([255; 3])
    } else if roll < 0.65 {
        Backdrop::plain(light(rng))
    } else {
        let (from, to) = (light(rng), light(rng));
        Backdrop {
            from,
            to,
            horizontal: rng.random_bool(0.5),
        }
    }
}

/// Adds `item` to `ds` as the model will see it.
pub fn push_item(
    ds: &mut Dataset,
    item: StreamedItem,
    tokenizer: &TextTokenizer,
    cfg: &Config,
) -> Result<()> {
    prepare_item(item, tokenizer, cfg)?.push_to(ds);
    Ok(())
}

/// A streamed item as the model will see it, ready to join a dataset.
pub struct PreparedItem {
    image: RgbImage,
    cells: Option<Vec<CellTarget>>,
    /// Its `image` field is set when the item joins a dataset.
    example: Example,
}

impl PreparedItem {
    fn push_to(self, ds: &mut Dataset) {
        ds.images.push(self.image);
        ds.image_paths.push(Default::default());
        let image = ds.images.len() - 1;
        if let Some(targets) = self.cells {
            ds.cell_targets.insert(image, targets);
        }
        ds.examples.push(Example {
            image,
            ..self.example
        });
    }
}

/// `item` tokenised, its image at the model's input size, its cell targets
/// worked out.
pub fn prepare_item(
    item: StreamedItem,
    tokenizer: &TextTokenizer,
    cfg: &Config,
) -> Result<PreparedItem> {
    let preprocess = Preprocess::from_config(cfg);
    let text = match &item.question {
        Some(q) => tokenizer.encode(q)?,
        None => tokenizer.encode(&cfg.caption_prompt)?,
    };
    let mut target = tokenizer.encode(&item.answer)?;
    target.truncate(cfg.max_decode_len - 1);
    let cells = match cfg.attribute_loss > 0.0 {
        true => cell_targets(&item.scene, cfg.grid_side()),
        false => None,
    };
    let mentions = match &item.question {
        Some(question) if cfg.mention_loss > 0.0 => match cfg.mention_target {
            MentionTarget::Named => mentioned_cells(&item.scene, question, cfg.grid_side()),
            MentionTarget::Subjects => {
                Some(subject_cells(&item.scene, &item.subjects, cfg.grid_side()))
            }
        },
        _ => None,
    };
    Ok(PreparedItem {
        image: preprocess.resized(&item.image),
        cells,
        example: Example {
            image: 0,
            text,
            target,
            answer: item.answer.to_lowercase(),
            question_type: item.question_type.map(str::to_string),
            weight: 1.0,
            mentions,
        },
    })
}

/// The training examples of one step: `indices` of `train`, plus `count`
/// streamed items of the same kind (questions, or captions if the manifest
/// part is captions). Item numbers are `step × count + j`, so every step
/// draws new scenes.
pub fn mixed_step(
    train: &Dataset,
    indices: &[usize],
    opts: &StreamOptions,
    step: usize,
    count: usize,
    tokenizer: &TextTokenizer,
    cfg: &Config,
) -> Result<Dataset> {
    let caption = captions_asked(train, indices);
    let items = (0..count)
        .map(|j| step_item(opts, step, count, j, caption, tokenizer, cfg))
        .collect::<Result<_>>()?;
    Ok(step_dataset(train, indices, items))
}

/// Do `indices` of `train` ask for captions? Then a step's streamed items
/// are captions too.
pub fn captions_asked(train: &Dataset, indices: &[usize]) -> bool {
    indices
        .first()
        .is_some_and(|&i| train.examples[i].question_type.is_none())
}

/// Streamed item `j` of the `count` in `step`, prepared. A pure function of
/// its arguments, so items can be made on any thread, in any order.
pub fn step_item(
    opts: &StreamOptions,
    step: usize,
    count: usize,
    j: usize,
    caption: bool,
    tokenizer: &TextTokenizer,
    cfg: &Config,
) -> Result<PreparedItem> {
    let item = opts.item_at_step(step, (step * count + j) as u64, caption);
    prepare_item(item, tokenizer, cfg)
}

/// `indices` of `train`, each image once, then `items`.
pub fn step_dataset(train: &Dataset, indices: &[usize], items: Vec<PreparedItem>) -> Dataset {
    let mut ds = Dataset::default();
    let mut rows = std::collections::HashMap::new();
    for &i in indices {
        let e = &train.examples[i];
        let image = *rows.entry(e.image).or_insert_with(|| {
            ds.images.push(train.images[e.image].clone());
            ds.image_paths.push(train.image_paths[e.image].clone());
            if let Some(targets) = train.cell_targets.get(&e.image) {
                ds.cell_targets.insert(ds.images.len() - 1, targets.clone());
            }
            ds.images.len() - 1
        });
        ds.examples.push(Example { image, ..e.clone() });
    }
    for item in items {
        item.push_to(&mut ds);
    }
    ds
}

/// `count` held-out streamed questions, from another stream than training's.
pub fn validation_set(
    opts: &StreamOptions,
    count: usize,
    tokenizer: &TextTokenizer,
    cfg: &Config,
) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for i in 0..count as u64 {
        push_item(&mut ds, streamed_item(!opts.seed, i, false), tokenizer, cfg)?;
    }
    Ok(ds)
}

/// Every word the stream can produce, as texts a tokenizer can learn from.
pub fn vocabulary_texts() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..500 {
        let mut rng = image_rng(0, i);
        let scene = random_scene(&mut rng, false);
        out.extend(captions(&scene));
        for qa in candidate_questions(&scene) {
            out.push(qa.question);
            out.push(qa.answer);
        }
    }
    out
}
