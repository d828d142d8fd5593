//! Importer for easy-VQA (PyPI `easy-vqa==1.0`, MIT licence): 64×64 images of one
//! coloured shape, with `[question, answer, image_id]` triples in
//! `easy_vqa/data/{train,test}/questions.json` and images in `.../{train,test}/images/ID.png`.
//!
//! Reads the wheel (a zip) or its unpacked folder and writes `images/{train,test}/ID.png`
//! plus a manifest keeping the official split. Each image also gets a caption record
//! ("a blue rectangle"): its shape and colour are deduced from its questions and answers;
//! where those leave a choice open, the image's pixels decide between the remaining
//! candidates (nearest mean colour and fill ratio of images whose answers are certain).

use super::manifest::{write_manifest, ManifestLine};
use super::synth_text::easy_captions;
use anyhow::{bail, Context};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const COLORS: [&str; 8] = [
    "red", "green", "blue", "black", "gray", "teal", "brown", "yellow",
];
pub const SHAPES: [&str; 3] = ["circle", "rectangle", "triangle"];
const SPLITS: [&str; 2] = ["train", "test"];

/// What [`convert_easy_vqa`] wrote and deduced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EasyVqaSummary {
    pub train_images: usize,
    pub test_images: usize,
    pub vqa_records: usize,
    pub caption_records: usize,
    pub question_types: BTreeMap<String, usize>,
    /// Questions whose image is not in the archive (skipped).
    pub questions_without_image: usize,
    /// Captions whose shape and colour the questions alone determine.
    pub captions_from_questions: usize,
    /// Captions where the pixels chose among candidates the questions left open.
    pub captions_from_pixels: usize,
    /// Captions naming only the shape or only the colour.
    pub partial_captions: usize,
    /// Images whose answers contradict each other (their caption relies on pixels).
    pub contradictory_images: usize,
    /// On images whose answers are certain: how often the pixel classifier, choosing
    /// among all shapes and colours, agrees with them (a check of the fallback).
    pub pixel_check_agree: usize,
    pub pixel_check_total: usize,
}

/// Converts the easy-VQA wheel or folder at `from` into a data set in `out`.
pub fn convert_easy_vqa(from: &Path, out: &Path) -> anyhow::Result<EasyVqaSummary> {
    let mut source = Source::open(from)?;
    let mut summary = EasyVqaSummary::default();
    let mut images: Vec<ImageInfo> = Vec::new();
    let mut vqa: BTreeMap<(usize, u64), Vec<ManifestLine>> = BTreeMap::new();

    for (split_index, split) in SPLITS.iter().enumerate() {
        let ids = source.image_ids(split);
        if ids.is_empty() {
            bail!(
                "{} has no images under {split}/images/: is it the easy-VQA wheel or its unpacked folder?",
                from.display()
            );
        }
        let dir = out.join("images").join(split);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut by_id: HashMap<u64, usize> = HashMap::new();
        for id in &ids {
            let rel = format!("{split}/images/{id}.png");
            let bytes = source.read(&rel)?;
            let target = dir.join(format!("{id}.png"));
            std::fs::write(&target, &bytes)
                .with_context(|| format!("cannot write {}", target.display()))?;
            by_id.insert(*id, images.len());
            images.push(ImageInfo {
                split_index,
                id: *id,
                colors: COLORS.iter().copied().collect(),
                shapes: SHAPES.iter().copied().collect(),
                features: pixel_features(&bytes),
            });
        }
        match split_index {
            0 => summary.train_images = ids.len(),
            _ => summary.test_images = ids.len(),
        }

        let questions_rel = format!("{split}/questions.json");
        let bytes = source.read(&questions_rel)?;
        let questions: Vec<(String, String, u64)> =
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} in {} is not a list of [question, answer, image_id] triples",
                    questions_rel,
                    from.display()
                )
            })?;
        for (question, answer, id) in questions {
            let Some(&index) = by_id.get(&id) else {
                summary.questions_without_image += 1;
                continue;
            };
            let words: Vec<&str> = question
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            images[index].learn(&words, &answer);
            let question_type = question_type(&words, &answer);
            *summary
                .question_types
                .entry(question_type.to_string())
                .or_default() += 1;
            summary.vqa_records += 1;
            vqa.entry((split_index, id))
                .or_default()
                .push(ManifestLine::vqa(
                    format!("images/{split}/{id}.png"),
                    question,
                    answer.clone(),
                    vec![answer],
                    Some(question_type.to_string()),
                    Some(split.to_string()),
                ));
        }
    }

    let model = PixelModel::fit(&images);
    images.sort_by_key(|im| (im.split_index, im.id));
    let mut lines = Vec::new();
    for image in &images {
        let split = SPLITS[image.split_index];
        if let Some(captions) = caption_for(image, &model, &mut summary) {
            summary.caption_records += 1;
            lines.push(ManifestLine::caption(
                format!("images/{split}/{}.png", image.id),
                captions,
                Some(split.to_string()),
            ));
        }
        lines.extend(
            vqa.remove(&(image.split_index, image.id))
                .unwrap_or_default(),
        );
    }
    write_manifest(&out.join("manifest.jsonl"), &lines)?;
    Ok(summary)
}

/// A small set of question types: "shape", "color", "yes/no shape", "yes/no color".
fn question_type(words: &[&str], answer: &str) -> &'static str {
    let mentions_color = words.iter().any(|w| COLORS.contains(w));
    if answer == "yes" || answer == "no" {
        if mentions_color {
            "yes/no color"
        } else {
            "yes/no shape"
        }
    } else if COLORS.contains(&answer) || words.contains(&"color") {
        "color"
    } else if SHAPES.contains(&answer) || words.contains(&"shape") {
        "shape"
    } else {
        "other"
    }
}

struct ImageInfo {
    split_index: usize,
    id: u64,
    /// Colours and shapes still possible given the answers seen so far.
    colors: BTreeSet<&'static str>,
    shapes: BTreeSet<&'static str>,
    features: Option<Features>,
}

impl ImageInfo {
    /// Narrows the candidates with one question and its answer.
    fn learn(&mut self, words: &[&str], answer: &str) {
        let color = words.iter().find_map(|w| COLORS.iter().find(|c| *c == w));
        let shape = words.iter().find_map(|w| SHAPES.iter().find(|s| *s == w));
        if let Some(a) = COLORS.iter().find(|c| **c == answer) {
            self.colors.retain(|c| c == a);
            if let Some(s) = shape {
                self.shapes.retain(|x| x == s);
            }
        } else if let Some(a) = SHAPES.iter().find(|s| **s == answer) {
            self.shapes.retain(|s| s == a);
            if let Some(c) = color {
                self.colors.retain(|x| x == c);
            }
        } else if answer == "yes" || answer == "no" {
            let negated = words.iter().any(|w| *w == "not" || *w == "no");
            let present = (answer == "yes") != negated;
            if present {
                if let Some(c) = color {
                    self.colors.retain(|x| x == c);
                }
                if let Some(s) = shape {
                    self.shapes.retain(|x| x == s);
                }
            } else {
                match (color, shape) {
                    (Some(c), None) => {
                        self.colors.remove(c);
                    }
                    (None, Some(s)) => {
                        self.shapes.remove(s);
                    }
                    // "no red circle" rules out neither the colour nor the shape alone.
                    _ => {}
                }
            }
        }
    }
}

/// Mean colour of the shape's pixels and the share of its bounding box it fills.
#[derive(Debug, Clone, Copy)]
struct Features {
    rgb: [f32; 3],
    fill: f32,
}

/// Pixels differing from the background by more than this (in some channel) are the shape.
const FOREGROUND_THRESHOLD: i32 = 48;

fn pixel_features(png: &[u8]) -> Option<Features> {
    let img = image::load_from_memory(png).ok()?.to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    // The background is the most common colour on the border.
    let mut border: HashMap<[u8; 3], usize> = HashMap::new();
    for (x, y, p) in img.enumerate_pixels() {
        if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
            *border.entry(p.0).or_default() += 1;
        }
    }
    let background = border.into_iter().max_by_key(|(p, n)| (*n, *p))?.0;
    let (mut sum, mut count) = ([0f64; 3], 0usize);
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        let differs =
            (0..3).any(|c| (p.0[c] as i32 - background[c] as i32).abs() > FOREGROUND_THRESHOLD);
        if differs {
            for (total, &v) in sum.iter_mut().zip(&p.0) {
                *total += v as f64;
            }
            count += 1;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if count == 0 {
        return None;
    }
    let area = ((x1 - x0 + 1) * (y1 - y0 + 1)) as f32;
    Some(Features {
        rgb: sum.map(|s| (s / count as f64) as f32),
        fill: count as f32 / area,
    })
}

/// Mean features of the images whose colour (or shape) the answers fix.
struct PixelModel {
    colors: BTreeMap<&'static str, [f32; 3]>,
    fills: BTreeMap<&'static str, f32>,
}

impl PixelModel {
    fn fit(images: &[ImageInfo]) -> Self {
        let mut colors: BTreeMap<&str, ([f32; 3], usize)> = BTreeMap::new();
        let mut fills: BTreeMap<&str, (f32, usize)> = BTreeMap::new();
        for image in images {
            let Some(f) = image.features else { continue };
            if let Some(&c) = single(&image.colors) {
                let e = colors.entry(c).or_default();
                for k in 0..3 {
                    e.0[k] += f.rgb[k];
                }
                e.1 += 1;
            }
            if let Some(&s) = single(&image.shapes) {
                let e = fills.entry(s).or_default();
                e.0 += f.fill;
                e.1 += 1;
            }
        }
        PixelModel {
            colors: colors
                .into_iter()
                .map(|(c, (sum, n))| (c, sum.map(|v| v / n as f32)))
                .collect(),
            fills: fills
                .into_iter()
                .map(|(s, (sum, n))| (s, sum / n as f32))
                .collect(),
        }
    }

    fn color(&self, f: &Features, candidates: &BTreeSet<&'static str>) -> Option<&'static str> {
        nearest(candidates, |c| {
            let m = self.colors.get(c)?;
            Some((0..3).map(|k| (m[k] - f.rgb[k]).powi(2)).sum())
        })
    }

    fn shape(&self, f: &Features, candidates: &BTreeSet<&'static str>) -> Option<&'static str> {
        nearest(candidates, |s| Some((self.fills.get(s)? - f.fill).abs()))
    }
}

fn nearest(
    candidates: &BTreeSet<&'static str>,
    distance: impl Fn(&str) -> Option<f32>,
) -> Option<&'static str> {
    candidates
        .iter()
        .filter_map(|&c| Some((c, distance(c)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

fn single<'a>(set: &'a BTreeSet<&'static str>) -> Option<&'a &'static str> {
    (set.len() == 1).then(|| set.iter().next()).flatten()
}

fn all(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

/// The caption phrasings of one image, updating the summary's tallies.
fn caption_for(
    image: &ImageInfo,
    model: &PixelModel,
    summary: &mut EasyVqaSummary,
) -> Option<Vec<String>> {
    let certain = (single(&image.colors), single(&image.shapes));
    if let (Some(c), Some(s)) = certain {
        summary.captions_from_questions += 1;
        if let Some(f) = &image.features {
            summary.pixel_check_total += 1;
            let agree = model.color(f, &all(&COLORS)) == Some(*c)
                && model.shape(f, &all(&SHAPES)) == Some(*s);
            summary.pixel_check_agree += agree as usize;
        }
        return Some(easy_captions(c, s));
    }
    if image.colors.is_empty() || image.shapes.is_empty() {
        summary.contradictory_images += 1;
    }
    let or_all = |set: &BTreeSet<&'static str>, names| {
        if set.is_empty() {
            all(names)
        } else {
            set.clone()
        }
    };
    let colors = or_all(&image.colors, &COLORS);
    let shapes = or_all(&image.shapes, &SHAPES);
    let pick = |set: &BTreeSet<&'static str>, by_pixels: Option<&'static str>| {
        single(set).copied().or(by_pixels)
    };
    let f = image.features.as_ref();
    let color = pick(&colors, f.and_then(|f| model.color(f, &colors)));
    let shape = pick(&shapes, f.and_then(|f| model.shape(f, &shapes)));
    match (color, shape) {
        (Some(c), Some(s)) => {
            summary.captions_from_pixels += 1;
            Some(easy_captions(c, s))
        }
        (Some(c), None) => {
            summary.partial_captions += 1;
            Some(vec![
                format!("a {c} shape"),
                format!("there is a {c} shape"),
            ])
        }
        (None, Some(s)) => {
            summary.partial_captions += 1;
            Some(vec![format!("a {s}"), format!("there is a {s}")])
        }
        (None, None) => None,
    }
}

/// The easy-VQA data: a wheel (zip) or a folder, both addressed relative to the `data` root.
enum Source {
    Zip {
        path: PathBuf,
        archive: zip::ZipArchive<std::fs::File>,
        root: String,
    },
    Dir {
        root: PathBuf,
    },
}

impl Source {
    fn open(path: &Path) -> anyhow::Result<Self> {
        const HINT: &str =
            "give the easy-VQA wheel (easy_vqa-1.0-py3-none-any.whl) or its unpacked folder";
        if path.is_dir() {
            for root in [
                path.to_path_buf(),
                path.join("data"),
                path.join("easy_vqa").join("data"),
            ] {
                if root.join("train").join("questions.json").is_file() {
                    return Ok(Source::Dir { root });
                }
            }
            bail!(
                "{} does not hold easy-VQA data: found no train/questions.json in it, its data/ or easy_vqa/data/; {HINT}",
                path.display()
            );
        }
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open {}: {HINT}", path.display()))?;
        let archive = zip::ZipArchive::new(file)
            .with_context(|| format!("{} is not a zip file: {HINT}", path.display()))?;
        let root = archive
            .file_names()
            .filter_map(|name| name.strip_suffix("train/questions.json"))
            .min_by_key(|prefix| prefix.len())
            .map(str::to_string);
        match root {
            Some(root) => Ok(Source::Zip {
                path: path.to_path_buf(),
                archive,
                root,
            }),
            None => bail!("{} holds no train/questions.json: {HINT}", path.display()),
        }
    }

    fn read(&mut self, rel: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Source::Zip {
                path,
                archive,
                root,
            } => {
                let name = format!("{root}{rel}");
                let mut entry = archive
                    .by_name(&name)
                    .with_context(|| format!("{} has no {name}", path.display()))?;
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("cannot read {name} in {}", path.display()))?;
                Ok(bytes)
            }
            Source::Dir { root } => {
                let file = root.join(rel);
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))
            }
        }
    }

    /// Ids of `split/images/ID.png`, sorted.
    fn image_ids(&self, split: &str) -> Vec<u64> {
        let prefix = format!("{split}/images/");
        let id_of = |name: &str| -> Option<u64> {
            name.strip_prefix(&prefix)?
                .strip_suffix(".png")?
                .parse()
                .ok()
        };
        let mut ids: Vec<u64> = match self {
            Source::Zip { archive, root, .. } => archive
                .file_names()
                .filter_map(|name| id_of(name.strip_prefix(root.as_str())?))
                .collect(),
            Source::Dir { root } => std::fs::read_dir(root.join(&prefix))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter_map(|e| {
                            let name = e.file_name().into_string().ok()?;
                            id_of(&format!("{prefix}{name}"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        ids.sort_unstable();
        ids
    }
}
