//! The synthetic scene data set: random scenes, rendered, captioned and questioned.
//!
//! Everything derives from the seed: image `i` uses its own random stream made from
//! (seed, i), so the same seed gives identical files, and a larger `count` extends a
//! smaller data set instead of reshuffling it (only the train/test split changes).

use super::draw::render;
use super::manifest::{write_manifest, ManifestLine};
use super::scene::{Color, Scene, SceneKind, SceneObject, Shape, Size};
use super::synth_text::{captions, sample_balanced_questions, sample_questions, Qa};
use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub count: usize,
    pub seed: u64,
    /// Side of the square images, in pixels.
    pub image_size: u32,
    /// Draw random speckle noise on the background.
    pub noise: bool,
    /// Share of images in the "test" split.
    pub test_fraction: f64,
    pub questions_per_image: usize,
    /// Draw questions as training's scene stream does (balanced over type,
    /// template and answer, with split-binding "is there a red circle?"
    /// questions) instead of half relation questions.
    pub balanced: bool,
    pub kind: SceneKind,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            count: 1000,
            seed: 0,
            image_size: 64,
            noise: false,
            test_fraction: 0.1,
            questions_per_image: 6,
            balanced: false,
            kind: SceneKind::Scenes,
        }
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SynthSummary {
    pub images: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub caption_records: usize,
    pub vqa_records: usize,
    pub question_types: BTreeMap<String, usize>,
}

/// A line of `scenes.jsonl`: the scene behind each image, for checking and analysis.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SceneLine {
    pub image: String,
    pub split: String,
    #[serde(flatten)]
    pub scene: Scene,
}

/// How far an object's centre may move from its cell's centre (fraction of the side).
const MAX_JITTER: f32 = 0.01;

/// The most objects a scene holds.
pub const MAX_SCENE_OBJECTS: usize = 4;

/// A random scene of 1–4 objects, at most one per grid cell.
pub fn random_scene(rng: &mut impl Rng, noise: bool) -> Scene {
    random_scene_of_at_most(rng, noise, MAX_SCENE_OBJECTS)
}

/// A random scene of 1 to `max_objects` objects (at most 4), at most one per
/// grid cell; with 4, the same draws as [`random_scene`].
pub fn random_scene_of_at_most(rng: &mut impl Rng, noise: bool, max_objects: usize) -> Scene {
    let n = rng.random_range(1..=max_objects.clamp(1, MAX_SCENE_OBJECTS));
    let mut cells: Vec<usize> = (0..9).collect();
    cells.shuffle(rng);
    let objects = cells[..n]
        .iter()
        .map(|&cell| {
            let (row, col) = (cell / 3, cell % 3);
            let size = if rng.random_bool(0.5) {
                Size::Large
            } else {
                Size::Small
            };
            let shape = *Shape::SCENE.choose(rng).unwrap_or(&Shape::Circle);
            let color = *Color::ALL.choose(rng).unwrap_or(&Color::Red);
            let jx = rng.random_range(-MAX_JITTER..=MAX_JITTER);
            let jy = rng.random_range(-MAX_JITTER..=MAX_JITTER);
            let centred = SceneObject::centred(shape, color, size, row, col);
            SceneObject {
                cx: centred.cx + jx,
                cy: centred.cy + jy,
                ..centred
            }
        })
        .collect();
    Scene {
        kind: SceneKind::Scenes,
        objects,
        noise_seed: noise.then(|| rng.random()),
    }
}

/// One shape of one colour anywhere on the background, like easy-VQA.
pub fn random_easy_scene(rng: &mut impl Rng, noise: bool) -> Scene {
    let radius = rng.random_range(0.12f32..0.3);
    let cx = rng.random_range(radius..1.0 - radius);
    let cy = rng.random_range(radius..1.0 - radius);
    let object = SceneObject {
        shape: *Shape::EASY.choose(rng).unwrap_or(&Shape::Circle),
        color: *Color::ALL.choose(rng).unwrap_or(&Color::Red),
        size: if radius >= 0.21 {
            Size::Large
        } else {
            Size::Small
        },
        row: ((cy * 3.0) as usize).min(2),
        col: ((cx * 3.0) as usize).min(2),
        cx,
        cy,
        radius,
    };
    Scene {
        kind: SceneKind::Easy,
        objects: vec![object],
        noise_seed: noise.then(|| rng.random()),
    }
}

/// The random stream of image `index`: independent of every other image.
pub(crate) fn image_rng(seed: u64, index: u64) -> StdRng {
    // splitmix64 of (seed, index), so nearby seeds and indices give unrelated streams.
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// The scene and questions of image `index` under `cfg`.
pub fn generate_item(cfg: &SynthConfig, index: usize) -> (Scene, Vec<Qa>) {
    let mut rng = image_rng(cfg.seed, index as u64);
    let scene = match cfg.kind {
        SceneKind::Scenes => random_scene(&mut rng, cfg.noise),
        SceneKind::Easy => random_easy_scene(&mut rng, cfg.noise),
    };
    let questions = if cfg.balanced {
        sample_balanced_questions(&scene, &mut rng, cfg.questions_per_image)
    } else {
        sample_questions(&scene, &mut rng, cfg.questions_per_image)
    };
    (scene, questions)
}

/// Which images are in the test split. Image `i`'s place depends on the seed,
/// `i` and the fraction only, never on `count`, so the test images of a data
/// set stay test images in a larger one of the same seed (or its training
/// images would be a smaller one's test images). Images go in blocks of 100,
/// round(100 × test_fraction) of each block chosen at random, so the share is
/// exact for whole blocks.
pub fn test_split(cfg: &SynthConfig) -> Vec<bool> {
    const BLOCK: usize = 100;
    let per_block = (BLOCK as f64 * cfg.test_fraction).round() as usize;
    let mut is_test = vec![false; cfg.count];
    for (block, flags) in is_test.chunks_mut(BLOCK).enumerate() {
        let mut order: Vec<usize> = (0..BLOCK).collect();
        // Stream indices count down from the top, far from any image's own.
        order.shuffle(&mut image_rng(cfg.seed, u64::MAX - block as u64));
        for &offset in order.iter().take(per_block) {
            if let Some(flag) = flags.get_mut(offset) {
                *flag = true;
            }
        }
    }
    is_test
}

/// Writes `out/images/NNNNN.png`, `out/manifest.jsonl` and `out/scenes.jsonl`.
pub fn write_dataset(cfg: &SynthConfig, out: &Path) -> anyhow::Result<SynthSummary> {
    if cfg.count == 0 {
        bail!("count must be at least 1");
    }
    if !(8..=4096).contains(&cfg.image_size) {
        bail!(
            "image size {} is out of range: use 8 to 4096 pixels",
            cfg.image_size
        );
    }
    if !(0.0..=1.0).contains(&cfg.test_fraction) {
        bail!(
            "test fraction {} is out of range: use a value from 0 to 1",
            cfg.test_fraction
        );
    }
    let images_dir = out.join("images");
    std::fs::create_dir_all(&images_dir)
        .with_context(|| format!("cannot create {}", images_dir.display()))?;
    let width = (cfg.count - 1).to_string().len().max(5);
    let is_test = test_split(cfg);

    let mut summary = SynthSummary::default();
    let mut lines = Vec::new();
    let mut scene_lines = Vec::new();
    for (index, &test) in is_test.iter().enumerate() {
        let (scene, questions) = generate_item(cfg, index);
        let rel = format!("images/{index:0width$}.png");
        let path = out.join(&rel);
        render(&scene, cfg.image_size)
            .save(&path)
            .with_context(|| format!("cannot write image {}", path.display()))?;
        let split = if test { "test" } else { "train" };
        if test {
            summary.test_images += 1;
        } else {
            summary.train_images += 1;
        }
        lines.push(ManifestLine::caption(
            rel.clone(),
            captions(&scene),
            Some(split.into()),
        ));
        summary.caption_records += 1;
        for qa in questions {
            *summary
                .question_types
                .entry(qa.question_type.to_string())
                .or_default() += 1;
            summary.vqa_records += 1;
            lines.push(ManifestLine::vqa(
                rel.clone(),
                qa.question,
                qa.answer.clone(),
                vec![qa.answer],
                Some(qa.question_type.to_string()),
                Some(split.into()),
            ));
        }
        scene_lines.push(SceneLine {
            image: rel,
            split: split.into(),
            scene,
        });
    }
    summary.images = cfg.count;
    write_scenes(&out.join("scenes.jsonl"), &scene_lines)?;
    write_manifest(&out.join("manifest.jsonl"), &lines)?;
    Ok(summary)
}

fn write_scenes(path: &Path, scenes: &[SceneLine]) -> anyhow::Result<()> {
    let write = || -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for line in scenes {
            serde_json::to_writer(&mut out, line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}
