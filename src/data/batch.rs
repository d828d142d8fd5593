//! Training examples, their images held in memory, and batches.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::Result;
use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::cells::{CellTarget, EMPTY as EMPTY_CELL};
use super::image::{decode_rgb, Preprocess};
use super::manifest::{Record, Task};
use crate::model::{pad_tokens, Config};
use crate::tokenizer::TextTokenizer;

/// One (image, text input, target) triple. A caption record gives one example per caption.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: usize,
    /// Text-encoder input: the question, or the caption prompt.
    pub text: Vec<u32>,
    /// Target tokens, without BOS/EOS.
    pub target: Vec<u32>,
    /// The expected text, for exact-match accuracy.
    pub answer: String,
    /// `Some` for VQA examples: the question type, or "vqa" if the record has none.
    pub question_type: Option<String>,
    /// The example's weight in the loss (1 unless answers are balanced or
    /// question types weighted).
    pub weight: f32,
    /// Per vision token, 1 if the question describes the object under it
    /// (`cells::mentioned_cells`): streamed scenes, when the model has a
    /// mention loss.
    pub mentions: Option<Vec<u32>>,
}

/// Examples plus their decoded images at the model's input size.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub images: Vec<RgbImage>,
    pub image_paths: Vec<PathBuf>,
    pub examples: Vec<Example>,
    /// Per-token attribute targets of the images that have them (streamed
    /// scenes, when the model has an attribute loss), by image index.
    pub cell_targets: HashMap<usize, Vec<CellTarget>>,
}

impl Dataset {
    /// Decodes every distinct image once. Records whose image fails are skipped
    /// and reported in the returned messages.
    pub fn build(
        records: &[&Record],
        tokenizer: &TextTokenizer,
        cfg: &Config,
    ) -> Result<(Dataset, Vec<String>)> {
        let preprocess = Preprocess::from_config(cfg);
        let prompt = tokenizer.encode(&cfg.caption_prompt)?;
        let mut ds = Dataset::default();
        let mut index: HashMap<PathBuf, Option<usize>> = HashMap::new();
        let mut problems = Vec::new();
        for record in records {
            let image = match index.get(&record.image) {
                Some(found) => *found,
                None => {
                    let loaded = match decode_rgb(&record.image) {
                        Ok(img) => {
                            ds.images.push(preprocess.resized(&img));
                            ds.image_paths.push(record.image.clone());
                            Some(ds.images.len() - 1)
                        }
                        Err(e) => {
                            problems
                                .push(format!("{}: {e:#}; its records are skipped", record.source));
                            None
                        }
                    };
                    index.insert(record.image.clone(), loaded);
                    loaded
                }
            };
            let Some(image) = image else { continue };
            let max_target = cfg.max_decode_len - 1;
            match &record.task {
                Task::Caption { captions } => {
                    for caption in captions {
                        let mut target = tokenizer.encode(caption)?;
                        target.truncate(max_target);
                        ds.examples.push(Example {
                            image,
                            text: prompt.clone(),
                            target,
                            answer: caption.to_lowercase(),
                            question_type: None,
                            weight: 1.0,
                            mentions: None,
                        });
                    }
                }
                Task::Vqa {
                    question,
                    answer,
                    question_type,
                    ..
                } => {
                    let mut target = tokenizer.encode(answer)?;
                    target.truncate(max_target);
                    ds.examples.push(Example {
                        image,
                        text: tokenizer.encode(question)?,
                        target,
                        answer: answer.to_lowercase(),
                        question_type: Some(question_type.clone().unwrap_or_else(|| "vqa".into())),
                        weight: 1.0,
                        mentions: None,
                    });
                }
            }
        }
        Ok((ds, problems))
    }
    /// Adds `other`'s images and examples after this data set's.
    pub fn append(&mut self, other: Dataset) {
        let offset = self.images.len();
        self.images.extend(other.images);
        self.image_paths.extend(other.image_paths);
        self.cell_targets.extend(
            other
                .cell_targets
                .into_iter()
                .map(|(image, targets)| (image + offset, targets)),
        );
        self.examples
            .extend(other.examples.into_iter().map(|e| Example {
                image: e.image + offset,
                ..e
            }));
    }

    /// Weighs each question so that, within its question type, every answer
    /// carries the same total weight, as if the answers were balanced.
    /// Weights are clipped to [1/`max_weight`, `max_weight`]; captions keep 1.
    ///
    /// Unbalanced, "is there a red shape?" is answered "no" 7 times in 8 on
    /// easy-VQA, and the answer prior is a plateau training sits on for a
    /// long time before it learns to compare the colour word with the image.
    pub fn balance_answers(&mut self, max_weight: f32) {
        let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
        let mut per_type: HashMap<&str, (usize, usize)> = HashMap::new();
        for e in &self.examples {
            if let Some(t) = &e.question_type {
                let n = counts.entry((t, &e.answer)).or_default();
                *n += 1;
                let (total, answers) = per_type.entry(t).or_default();
                *total += 1;
                *answers += usize::from(*n == 1);
            }
        }
        let weights: Vec<f32> = self
            .examples
            .iter()
            .map(|e| match &e.question_type {
                Some(t) => {
                    let (total, answers) = per_type[t.as_str()];
                    let share = total as f32 / answers as f32;
                    let w = share / counts[&(t.as_str(), e.answer.as_str())] as f32;
                    w.clamp(1.0 / max_weight, max_weight)
                }
                None => 1.0,
            })
            .collect();
        for (e, w) in self.examples.iter_mut().zip(weights) {
            e.weight = w;
        }
    }

    /// The question types of the examples.
    pub fn question_types(&self) -> BTreeSet<&str> {
        self.examples
            .iter()
            .filter_map(|e| e.question_type.as_deref())
            .collect()
    }

    /// Multiplies the weight of every question of a listed type by its factor
    /// (`shape = 2` makes each shape question count twice in the loss).
    /// Returns the listed types that no example has, so a typo can be reported.
    pub fn weigh_question_types(&mut self, factors: &BTreeMap<String, f32>) -> Vec<String> {
        for e in &mut self.examples {
            if let Some(f) = e.question_type.as_ref().and_then(|t| factors.get(t)) {
                e.weight *= f;
            }
        }
        let known = self.question_types();
        factors
            .keys()
            .filter(|name| !known.contains(name.as_str()))
            .cloned()
            .collect()
    }
}

/// Light augmentation that keeps colours and coarse positions: a shift of a few
/// pixels (edges replicated) and Gaussian pixel noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub max_shift: i64,
    pub noise: f32,
}

impl Augment {
    pub const NONE: Augment = Augment {
        max_shift: 0,
        noise: 0.0,
    };

    fn apply(&self, image: &RgbImage, rng: &mut StdRng) -> RgbImage {
        if *self == Augment::NONE {
            return image.clone();
        }
        let (w, h) = (image.width() as i64, image.height() as i64);
        let dx = rng.random_range(-self.max_shift..=self.max_shift);
        let dy = rng.random_range(-self.max_shift..=self.max_shift);
        RgbImage::from_fn(image.width(), image.height(), |x, y| {
            let sx = (x as i64 - dx).clamp(0, w - 1) as u32;
            let sy = (y as i64 - dy).clamp(0, h - 1) as u32;
            let mut p = *image.get_pixel(sx, sy);
            if self.noise > 0.0 {
                for c in p.0.iter_mut() {
                    let n = gaussian(rng) * self.noise * 255.0;
                    *c = (*c as f32 + n).round().clamp(0.0, 255.0) as u8;
                }
            }
            p
        })
    }
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Model inputs and targets for a batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// [N, 3, S, S]: each distinct image of the batch once.
    pub images: Tensor,
    /// [B] u32: the row of `images` each example asks about.
    pub image_of: Tensor,
    /// [B, Nt] and its validity mask.
    pub text_ids: Tensor,
    pub text_valid: Tensor,
    /// [B, T]: BOS + target, padded.
    pub decoder_input: Tensor,
    /// [B, T]: target + EOS, padded.
    pub decoder_target: Tensor,
    /// [B, T]: 1 where `decoder_target` is a real token.
    pub target_mask: Tensor,
    /// [B]: each example's weight in the loss.
    pub weights: Tensor,
    /// The attribute loss's targets, if the model has one and an image of
    /// the batch has targets.
    pub cells: Option<CellBatch>,
    /// The mention loss's targets, if the model has one and an example has targets.
    pub mentions: Option<MentionBatch>,
}

/// Targets of the attribute loss for a batch.
#[derive(Debug, Clone)]
pub struct CellBatch {
    /// [N, Nv, 3] u32: per image of the batch, each token's colour, shape and size class.
    pub targets: Tensor,
    /// [B]: each example's share of the loss (`shares`).
    pub weights: Tensor,
}

impl CellBatch {
    /// `None` unless some example's image has targets.
    fn new(
        ds: &Dataset,
        image_rows: &[usize],
        examples: &[&Example],
        tokens: usize,
        device: &Device,
    ) -> Result<Option<CellBatch>> {
        let Some(weights) = shares(examples, |e| ds.cell_targets.contains_key(&e.image)) else {
            return Ok(None);
        };
        let empty = vec![EMPTY_CELL; tokens];
        let mut targets: Vec<u32> = Vec::with_capacity(image_rows.len() * tokens * 3);
        for image in image_rows {
            let cells = ds.cell_targets.get(image).unwrap_or(&empty);
            anyhow::ensure!(
                cells.len() == tokens,
                "image {image} has {} attribute targets for {tokens} vision tokens",
                cells.len()
            );
            targets.extend(cells.iter().flatten());
        }
        Ok(Some(CellBatch {
            targets: Tensor::from_vec(targets, (image_rows.len(), tokens, 3), device)?,
            weights: Tensor::new(weights, device)?,
        }))
    }
}

/// Targets of the mention loss for a batch.
#[derive(Debug, Clone)]
pub struct MentionBatch {
    /// [B, Nv] f32: 1 where the example's question describes the token's object.
    pub targets: Tensor,
    /// [B]: as `CellBatch::weights`, over the examples that have mention targets.
    pub weights: Tensor,
}

impl MentionBatch {
    /// `None` unless some example has mention targets.
    fn new(examples: &[&Example], tokens: usize, device: &Device) -> Result<Option<MentionBatch>> {
        let Some(weights) = shares(examples, |e| e.mentions.is_some()) else {
            return Ok(None);
        };
        let mut targets: Vec<f32> = Vec::with_capacity(examples.len() * tokens);
        for e in examples {
            match &e.mentions {
                Some(marks) => {
                    anyhow::ensure!(
                        marks.len() == tokens,
                        "an example has {} mention targets for {tokens} vision tokens",
                        marks.len()
                    );
                    targets.extend(marks.iter().map(|&m| m as f32));
                }
                None => targets.extend(std::iter::repeat_n(0.0, tokens)),
            }
        }
        Ok(Some(MentionBatch {
            targets: Tensor::from_vec(targets, (examples.len(), tokens), device)?,
            weights: Tensor::new(weights, device)?,
        }))
    }
}

/// Each example's share of an auxiliary loss: 1 / (examples that have
/// targets) for those, 0 for the others, so that the weighted sum over any
/// shard of the batch adds up to the batch's mean. `None` if none has targets.
fn shares(examples: &[&Example], has_targets: impl Fn(&Example) -> bool) -> Option<Vec<f32>> {
    let count = examples.iter().filter(|e| has_targets(e)).count();
    (count > 0).then(|| {
        examples
            .iter()
            .map(|e| {
                if has_targets(e) {
                    1.0 / count as f32
                } else {
                    0.0
                }
            })
            .collect()
    })
}

impl Batch {
    pub fn new(
        ds: &Dataset,
        indices: &[usize],
        cfg: &Config,
        augment: Augment,
        seed: u64,
        device: &Device,
    ) -> Result<Batch> {
        let preprocess = Preprocess::from_config(cfg);
        let mut rng = StdRng::seed_from_u64(seed);
        let examples: Vec<&Example> = indices.iter().map(|&i| &ds.examples[i]).collect();
        let mut rows: HashMap<usize, u32> = HashMap::new();
        let mut pixels: Vec<Vec<f32>> = Vec::new();
        let mut image_rows = Vec::new();
        let mut image_of = Vec::with_capacity(examples.len());
        for e in &examples {
            let row = *rows.entry(e.image).or_insert_with(|| {
                pixels.push(preprocess.normalise(&augment.apply(&ds.images[e.image], &mut rng)));
                image_rows.push(e.image);
                pixels.len() as u32 - 1
            });
            image_of.push(row);
        }
        let cells = if cfg.attribute_loss > 0.0 {
            CellBatch::new(ds, &image_rows, &examples, cfg.num_patches(), device)?
        } else {
            None
        };
        let mentions = if cfg.mention_loss > 0.0 {
            MentionBatch::new(&examples, cfg.num_patches(), device)?
        } else {
            None
        };
        let images = super::image::batch_tensor(&pixels, cfg.image_size, device)?;
        let image_of = Tensor::new(image_of, device)?;
        let texts: Vec<Vec<u32>> = examples.iter().map(|e| e.text.clone()).collect();
        let (text_ids, text_valid) = pad_tokens(&texts, cfg.pad_id, cfg.max_text_len, device)?;
        let inputs: Vec<Vec<u32>> = examples
            .iter()
            .map(|e| [&[cfg.bos_id][..], &e.target].concat())
            .collect();
        let targets: Vec<Vec<u32>> = examples
            .iter()
            .map(|e| [&e.target[..], &[cfg.eos_id]].concat())
            .collect();
        let (decoder_input, _) = pad_tokens(&inputs, cfg.pad_id, cfg.max_decode_len, device)?;
        let (decoder_target, target_mask) =
            pad_tokens(&targets, cfg.pad_id, cfg.max_decode_len, device)?;
        let weights: Vec<f32> = examples.iter().map(|e| e.weight).collect();
        Ok(Batch {
            weights: Tensor::new(weights, device)?,
            images,
            image_of,
            text_ids,
            text_valid,
            decoder_input,
            decoder_target,
            target_mask,
            cells,
            mentions,
        })
    }
}

/// The order in which training visits the examples.
///
/// An epoch cuts each image's examples into groups of up to `group_size`
/// (questions and captions apart) and fills each batch with whole groups of
/// one kind. An image asked several questions in a batch is encoded once, and
/// a batch of one-word answers is not padded to the length of a caption.
/// The order depends only on (seed, step), so resuming picks up exactly where
/// a run stopped.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Per kind (questions, captions): each image's example indices.
    by_image: [Vec<Vec<usize>>; 2],
    groups_per_batch: usize,
    group_size: usize,
    seed: u64,
}

impl Sampler {
    pub fn new(ds: &Dataset, batch_size: usize, group_size: usize, seed: u64) -> Sampler {
        let group_size = group_size.clamp(1, batch_size.max(1));
        let mut by_image: [BTreeMap<usize, Vec<usize>>; 2] = Default::default();
        for (i, e) in ds.examples.iter().enumerate() {
            let kind = usize::from(e.question_type.is_none());
            by_image[kind].entry(e.image).or_default().push(i);
        }
        Sampler {
            by_image: by_image.map(|m| m.into_values().collect()),
            groups_per_batch: (batch_size / group_size).max(1),
            group_size,
            seed,
        }
    }

    /// The number of batches in every epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.by_image
            .iter()
            .map(|images| {
                let groups: usize = images
                    .iter()
                    .map(|e| e.len().div_ceil(self.group_size))
                    .sum();
                groups.div_ceil(self.groups_per_batch)
            })
            .sum::<usize>()
            .max(1)
    }

    /// Every batch of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut batches = Vec::new();
        for images in &self.by_image {
            let mut groups = Vec::new();
            for examples in images {
                let mut examples = examples.clone();
                examples.shuffle(&mut rng);
                groups.extend(examples.chunks(self.group_size).map(<[usize]>::to_vec));
            }
            groups.shuffle(&mut rng);
            batches.extend(groups.chunks(self.groups_per_batch).map(|g| g.concat()));
        }
        batches.shuffle(&mut rng);
        batches
    }

    /// The batches of steps `start`, `start + 1`, ... epoch after epoch.
    pub fn batches_from(&self, start: usize) -> impl Iterator<Item = Vec<usize>> + '_ {
        let per_epoch = self.batches_per_epoch();
        (start / per_epoch..)
            .flat_map(move |epoch| self.epoch(epoch))
            .skip(start % per_epoch)
    }
}
