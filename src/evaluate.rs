//! Running a model over manifest records: predictions, metrics, decoding speed,
//! and what the decoder's cross-attention looked at. `eval`, `compare`,
//! `experiment` and `explain` are thin layers over this module.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::image::{decode_rgb, Preprocess};
use crate::data::manifest::{Manifest, Record, Task};
use crate::generate::{encode_queries, greedy, GenerateOptions, Query};
use crate::metrics::cider::cider_d_per_image;
use crate::metrics::{
    caption_scores, caption_tokens, normalize_answer, vqa_accuracy, vqa_scores, CaptionScores,
    VqaItem, VqaScores,
};
use crate::model::dir::{parameter_count, ModelDir};
use crate::model::{pad_tokens, Config, CrossWeights, Fusion, FusionModel, Memory};

/// The question-type key of caption records in per-type tables.
pub const CAPTION_TYPE: &str = "caption";
/// The question-type key of VQA records that name no type.
pub const UNTYPED_VQA: &str = "vqa";

// ---------------------------------------------------------------- records

/// The share of training images `fusecap train` validates on, by default.
pub const DEFAULT_VAL_PERCENT: u64 = 5;

/// The records of `split`, at most `limit` of them, in manifest order.
/// Errs, naming the splits the manifest does have, when the split is empty.
/// A manifest without "val" records still has a validation split: the
/// training images that `fusecap train` holds out by default.
pub fn select_records<'a>(
    manifest: &'a Manifest,
    path: &Path,
    split: &str,
    limit: Option<usize>,
) -> Result<Vec<&'a Record>> {
    let labelled_val = manifest.records.iter().any(|r| r.in_split("val"));
    let mut records: Vec<&Record> = if split == "val" && !labelled_val {
        // What `fusecap train` holds out for validation by default.
        crate::data::split::split_records(&manifest.records, DEFAULT_VAL_PERCENT).val
    } else {
        manifest
            .records
            .iter()
            .filter(|r| r.in_split(split))
            .collect()
    };
    if records.is_empty() {
        bail!(
            "{}: no records in split \"{split}\" (the manifest has {}); choose one of those",
            path.display(),
            split_counts(manifest)
        );
    }
    if let Some(limit) = limit {
        records.truncate(limit);
    }
    Ok(records)
}

/// "train: 80, test: 20": the manifest's splits and their sizes.
pub fn split_counts(manifest: &Manifest) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &manifest.records {
        *counts
            .entry(r.split.as_deref().unwrap_or("train"))
            .or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    parts.join(", ")
}

/// The per-type key of a record: its question type, "vqa" for an untyped
/// question, "caption" for a caption.
pub fn type_key(record: &Record) -> String {
    match &record.task {
        Task::Caption { .. } => CAPTION_TYPE.to_string(),
        Task::Vqa { question_type, .. } => question_type
            .clone()
            .unwrap_or_else(|| UNTYPED_VQA.to_string()),
    }
}

// ---------------------------------------------------------------- predictions

/// One record, the model's output and how well it scored.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Where the record came from, "MANIFEST:LINE".
    pub source: String,
    pub image: String,
    /// "caption" or "vqa".
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question_type: Option<String>,
    pub output: String,
    /// The reference captions, or the answer followed by the human answers.
    pub references: Vec<String>,
    /// VQA accuracy of a question, CIDEr-D of a caption (against this corpus).
    pub score: f64,
    /// Total log-probability of the output (higher = more confident).
    pub logprob: f32,
    /// Why the record could not be run; it is then scored as an empty output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Prediction {
    fn new(record: &Record, output: String, logprob: f32, error: Option<String>) -> Self {
        let (task, question, question_type, references) = match &record.task {
            Task::Caption { captions } => ("caption", None, None, captions.clone()),
            Task::Vqa {
                question,
                answer,
                answers,
                question_type,
            } => {
                let mut refs = vec![answer.clone()];
                refs.extend(answers.iter().cloned());
                ("vqa", Some(question.clone()), question_type.clone(), refs)
            }
        };
        Prediction {
            source: record.source.clone(),
            image: record.image.display().to_string(),
            task,
            question,
            question_type,
            output,
            references,
            score: 0.0,
            logprob,
            error,
        }
    }

    pub fn is_vqa(&self) -> bool {
        self.task == "vqa"
    }

    /// The output as the metrics compare it: normalised answer or caption tokens.
    pub fn normalized_output(&self) -> String {
        if self.is_vqa() {
            normalize_answer(&self.output)
        } else {
            caption_tokens(&self.output).join(" ")
        }
    }

    fn vqa_item(&self) -> VqaItem {
        VqaItem {
            prediction: self.output.clone(),
            answer: self.references.first().cloned().unwrap_or_default(),
            answers: self.references.iter().skip(1).cloned().collect(),
            question_type: self.question_type.clone(),
        }
    }
}

/// Fills in each prediction's `score`: VQA accuracy for questions, CIDEr-D
/// (document frequencies from all caption records here) for captions.
pub fn score_predictions(predictions: &mut [Prediction]) {
    let mut caption_rows = Vec::new();
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    for (i, p) in predictions.iter_mut().enumerate() {
        if p.is_vqa() {
            let item = p.vqa_item();
            p.score = vqa_accuracy(&item.prediction, &item.answer, &item.answers);
        } else {
            caption_rows.push(i);
            hyps.push(caption_tokens(&p.output));
            refs.push(p.references.iter().map(|r| caption_tokens(r)).collect());
        }
    }
    for (row, score) in caption_rows
        .into_iter()
        .zip(cider_d_per_image(&hyps, &refs))
    {
        predictions[row].score = score;
    }
}

// ---------------------------------------------------------------- metrics

/// VQA scores of the questions of one type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeScores {
    pub accuracy: f64,
    pub exact_match: f64,
    pub n: usize,
}

/// Every metric: captions, VQA overall, and VQA per question type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub caption: Option<CaptionScores>,
    pub vqa: Option<VqaScores>,
    /// Question type -> scores, for the questions that name a type.
    pub vqa_per_type: BTreeMap<String, TypeScores>,
}

pub fn metrics(predictions: &[Prediction]) -> Metrics {
    let (questions, captions): (Vec<&Prediction>, Vec<&Prediction>) =
        predictions.iter().partition(|p| p.is_vqa());
    let caption = (!captions.is_empty()).then(|| {
        let hyps: Vec<String> = captions.iter().map(|p| p.output.clone()).collect();
        let refs: Vec<Vec<String>> = captions.iter().map(|p| p.references.clone()).collect();
        caption_scores(&hyps, &refs)
    });
    let items: Vec<VqaItem> = questions.iter().map(|p| p.vqa_item()).collect();
    let mut by_type: BTreeMap<String, Vec<VqaItem>> = BTreeMap::new();
    for item in &items {
        if let Some(kind) = &item.question_type {
            by_type.entry(kind.clone()).or_default().push(item.clone());
        }
    }
    let vqa_per_type = by_type
        .into_iter()
        .map(|(kind, items)| {
            let s = vqa_scores(&items);
            let scores = TypeScores {
                accuracy: s.accuracy,
                exact_match: s.exact_match,
                n: s.n,
            };
            (kind, scores)
        })
        .collect();
    Metrics {
        caption,
        vqa: (!items.is_empty()).then(|| vqa_scores(&items)),
        vqa_per_type,
    }
}

/// Up to `n` of the worst outputs of one task ("caption" or "vqa"): lowest
/// score first, and among equal scores the most confident (highest log-probability) first.
pub fn worst(predictions: &[Prediction], task: &str, n: usize) -> Vec<Prediction> {
    let mut of_task: Vec<&Prediction> = predictions.iter().filter(|p| p.task == task).collect();
    of_task.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(b.logprob.total_cmp(&a.logprob))
    });
    of_task.into_iter().take(n).cloned().collect()
}

// ---------------------------------------------------------------- running a model

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Records per forward pass.
    pub batch_size: usize,
    pub max_new_tokens: usize,
    /// Also measure how the cross-attention splits between image and text
    /// (concat models only; costs one extra teacher-forced pass per batch).
    pub modality_share: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 32,
            max_new_tokens: GenerateOptions::default().max_new_tokens,
            modality_share: false,
        }
    }
}

impl EvalOptions {
    fn generate(&self) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            ..GenerateOptions::default()
        }
    }
}

/// The mean share of cross-attention mass on image and on text tokens, and
/// on the attention sink (`Config::cross_attention_sink`; 0 without one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModalityShare {
    pub image: f64,
    pub text: f64,
    pub sink: f64,
    /// Records averaged over (each weighs the same; its steps are averaged first).
    pub n: usize,
}

/// What a model produced on a list of records.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// One per record, in record order, scored.
    pub predictions: Vec<Prediction>,
    /// Seconds spent encoding and decoding (reading image files excluded).
    pub decode_seconds: f64,
    /// Records that were decoded (those whose image loaded).
    pub decoded: usize,
    pub batch_size: usize,
    /// Per type key (see [`type_key`]) plus "all"; `Some` for concat models
    /// when [`EvalOptions::modality_share`] is set.
    pub modality_share: Option<BTreeMap<String, ModalityShare>>,
}

impl Evaluation {
    /// Mean encode + decode time per record; 0 when nothing was decoded.
    pub fn ms_per_image(&self) -> f64 {
        if self.decoded == 0 {
            0.0
        } else {
            1000.0 * self.decode_seconds / self.decoded as f64
        }
    }

    pub fn failures(&self) -> usize {
        self.predictions
            .iter()
            .filter(|p| p.error.is_some())
            .count()
    }
}

/// Decoded images at the model's input size, each file read once.
struct ImageCache {
    preprocess: Preprocess,
    images: HashMap<PathBuf, std::result::Result<RgbImage, String>>,
}

impl ImageCache {
    fn new(cfg: &Config) -> Self {
        ImageCache {
            preprocess: Preprocess::from_config(cfg),
            images: HashMap::new(),
        }
    }

    fn pixels(&mut self, path: &Path) -> std::result::Result<Vec<f32>, String> {
        let preprocess = &self.preprocess;
        let entry = self.images.entry(path.to_path_buf()).or_insert_with(|| {
            decode_rgb(path)
                .map(|img| preprocess.resized(&img))
                .map_err(|e| format!("{e:#}"))
        });
        match entry {
            Ok(img) => Ok(preprocess.normalise(img)),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The text-encoder input of a record: its question, or the caption prompt.
pub fn input_text(record: &Record, cfg: &Config) -> String {
    match &record.task {
        Task::Caption { .. } => cfg.caption_prompt.clone(),
        Task::Vqa { question, .. } => question.clone(),
    }
}

/// Runs the model greedily over `records` in batches and scores the outputs.
/// A record whose image cannot be read gets an error prediction (scored as
/// empty); the others still run. `progress` advances by one per record.
pub fn evaluate(
    md: &ModelDir,
    records: &[&Record],
    opts: &EvalOptions,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Evaluation> {
    let mut images = ImageCache::new(&md.model.cfg);
    let want_share = opts.modality_share && md.model.cfg.fusion == Fusion::Concat;
    let mut shares = ShareSums::default();
    let mut predictions = Vec::with_capacity(records.len());
    let (mut seconds, mut decoded) = (0.0, 0);
    for chunk in records.chunks(opts.batch_size.max(1)) {
        let mut batch = ChunkInputs::load(chunk, &mut images, &md.model.cfg);
        if !batch.queries.is_empty() {
            let start = Instant::now();
            let memory = encode_queries(md, &batch.queries, device)?;
            let generated = greedy(&md.model, &memory, &opts.generate())?;
            let texts = generated
                .iter()
                .map(|g| md.tokenizer.decode(&g.tokens))
                .collect::<Result<Vec<_>>>()?;
            seconds += start.elapsed().as_secs_f64();
            decoded += batch.queries.len();
            if want_share {
                let tokens: Vec<Vec<u32>> = generated.iter().map(|g| g.tokens.clone()).collect();
                let row_shares = image_shares(&md.model, &memory, &tokens, &opts.generate())?;
                for (&row, share) in batch.rows.iter().zip(row_shares) {
                    shares.add(&type_key(chunk[row]), share);
                }
            }
            for ((&row, g), text) in batch.rows.iter().zip(&generated).zip(texts) {
                batch.outputs[row] = Some(Prediction::new(chunk[row], text, g.logprob, None));
            }
        }
        predictions.extend(batch.outputs.into_iter().flatten());
        progress.inc(chunk.len() as u64);
    }
    score_predictions(&mut predictions);
    Ok(Evaluation {
        predictions,
        decode_seconds: seconds,
        decoded,
        batch_size: opts.batch_size,
        modality_share: want_share.then(|| shares.means()),
    })
}

/// The model inputs of one chunk of records. Records whose image failed
/// already have their (error) prediction; the others wait for theirs.
struct ChunkInputs {
    queries: Vec<Query>,
    /// The chunk row of each query.
    rows: Vec<usize>,
    /// One per chunk row.
    outputs: Vec<Option<Prediction>>,
}

impl ChunkInputs {
    fn load(chunk: &[&Record], images: &mut ImageCache, cfg: &Config) -> Self {
        let mut inputs = ChunkInputs {
            queries: Vec::new(),
            rows: Vec::new(),
            outputs: Vec::with_capacity(chunk.len()),
        };
        for (row, record) in chunk.iter().enumerate() {
            match images.pixels(&record.image) {
                Ok(pixels) => {
                    let text = input_text(record, cfg);
                    inputs.queries.push(Query { pixels, text });
                    inputs.rows.push(row);
                    inputs.outputs.push(None);
                }
                Err(e) => {
                    let failed = Prediction::new(record, String::new(), 0.0, Some(e));
                    inputs.outputs.push(Some(failed));
                }
            }
        }
        inputs
    }
}

/// Sums of per-record (image, text, sink) shares, by type key.
#[derive(Default)]
struct ShareSums {
    sums: BTreeMap<String, ([f64; 3], usize)>,
}

impl ShareSums {
    fn add(&mut self, key: &str, share: [f64; 3]) {
        for k in [key, "all"] {
            let e = self.sums.entry(k.to_string()).or_insert(([0.0; 3], 0));
            e.0.iter_mut().zip(share).for_each(|(sum, x)| *sum += x);
            e.1 += 1;
        }
    }

    fn means(&self) -> BTreeMap<String, ModalityShare> {
        self.sums
            .iter()
            .map(|(k, &([image, text, sink], n))| {
                let n_f = n.max(1) as f64;
                let share = ModalityShare {
                    image: image / n_f,
                    text: text / n_f,
                    sink: sink / n_f,
                    n,
                };
                (k.clone(), share)
            })
            .collect()
    }
}

// ---------------------------------------------------------------- attention

/// Which decoder layers' cross-attention to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    /// The mean over all decoder layers.
    Mean,
    /// One layer, 0-based.
    Layer(usize),
}

/// The cross-attention of one decoding step, mean over heads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAttention {
    /// Over the image patches, row-major. Under `concat` this is the image
    /// part of the one joint softmax, so it sums to the image share.
    pub vision: Vec<f32>,
    /// Over the text-encoder tokens, padding included (with weight 0).
    pub text: Vec<f32>,
    /// The weight on each attention sink (`Config::cross_attention_sink`):
    /// under `concat` one, in the same softmax as `vision` and `text`; under
    /// `separate` and `gated` two, the vision attention's then the text
    /// attention's. Empty for a model without sinks.
    pub sink: Vec<f32>,
}

impl StepAttention {
    pub fn vision_mass(&self) -> f64 {
        self.vision.iter().map(|&w| w as f64).sum()
    }

    pub fn text_mass(&self) -> f64 {
        self.text.iter().map(|&w| w as f64).sum()
    }

    pub fn sink_mass(&self) -> f64 {
        self.sink.iter().map(|&w| w as f64).sum()
    }
}

/// How many decoding steps produced `tokens`: one per token, plus the step
/// that chose EOS unless decoding stopped at the length limit.
pub fn decoding_steps(tokens: usize, cfg: &Config, opts: &GenerateOptions) -> usize {
    let limit = opts.max_new_tokens.min(cfg.max_decode_len);
    if tokens < limit {
        tokens + 1
    } else {
        tokens
    }
}

/// The cross-attention of every decoding step of each row of `memory`.
///
/// The generated `tokens` are teacher-forced (BOS + tokens) in one pass; the
/// decoder is causal, so step t's weights equal those greedy decoding saw when
/// it chose token t. Row i gets `steps[i]` steps (see [`decoding_steps`]).
pub fn step_attention(
    model: &FusionModel,
    memory: &Memory,
    tokens: &[Vec<u32>],
    steps: &[usize],
    layers: Layers,
) -> Result<Vec<Vec<StepAttention>>> {
    let cfg = &model.cfg;
    if let Layers::Layer(l) = layers {
        if l >= cfg.decoder_layers {
            bail!(
                "layer {l} does not exist: the model has {} decoder layers (0 to {})",
                cfg.decoder_layers,
                cfg.decoder_layers.saturating_sub(1)
            );
        }
    }
    let inputs: Vec<Vec<u32>> = tokens
        .iter()
        .map(|t| {
            std::iter::once(cfg.bos_id)
                .chain(t.iter().copied())
                .collect()
        })
        .collect();
    let (ids, _) = pad_tokens(
        &inputs,
        cfg.pad_id,
        cfg.max_decode_len,
        memory.vision.device(),
    )?;
    let cross = model.cross_kv(memory)?;
    let mut weights = Vec::with_capacity(cfg.decoder_layers);
    model
        .decoder
        .forward(&ids, &cross, None, Some(&mut weights))?;
    let nv = memory.vision.dim(1)?;
    let per_layer = weights
        .iter()
        .map(|w| head_means(w, nv, cfg.cross_attention_sink))
        .collect::<Result<Vec<_>>>()?;
    let chosen: Vec<&LayerMeans> = match layers {
        Layers::Mean => per_layer.iter().collect(),
        Layers::Layer(l) => vec![&per_layer[l]],
    };
    let t_max = ids.dim(1)?;
    Ok(steps
        .iter()
        .enumerate()
        .map(|(row, &n)| {
            (0..n.min(t_max))
                .map(|t| StepAttention {
                    vision: mean_rows(chosen.iter().map(|l| &l.vision[row][t])),
                    text: mean_rows(chosen.iter().map(|l| &l.text[row][t])),
                    sink: mean_rows(chosen.iter().map(|l| &l.sink[row][t])),
                })
                .collect()
        })
        .collect())
}

/// [B][T][K] weights.
type Grid3 = Vec<Vec<Vec<f32>>>;

/// One layer's weights, averaged over heads; each grid is [B][T][keys].
struct LayerMeans {
    vision: Grid3,
    text: Grid3,
    /// The sinks' weights, as in [`StepAttention::sink`].
    sink: Grid3,
}

/// Splits one layer's weights into vision, text and sink keys, averaged over heads.
fn head_means(weights: &CrossWeights, nv: usize, sinks: bool) -> Result<LayerMeans> {
    let s = usize::from(sinks);
    let mean = |w: &Tensor, start: usize, len: usize| -> Result<Grid3> {
        Ok(w.narrow(3, start, len)?.mean(1)?.to_vec3::<f32>()?)
    };
    match weights {
        CrossWeights::Joint(w) => {
            let tk = w.dim(3)?;
            Ok(LayerMeans {
                vision: mean(w, 0, nv)?,
                text: mean(w, nv, tk - nv - s)?,
                sink: mean(w, tk - s, s)?,
            })
        }
        CrossWeights::PerModality { vision, text } => {
            let (kv, kt) = (vision.dim(3)?, text.dim(3)?);
            let sinks = Tensor::cat(
                &[vision.narrow(3, kv - s, s)?, text.narrow(3, kt - s, s)?],
                3,
            )?;
            Ok(LayerMeans {
                vision: mean(vision, 0, kv - s)?,
                text: mean(text, 0, kt - s)?,
                sink: mean(&sinks, 0, 2 * s)?,
            })
        }
    }
}

/// The element-wise mean of equally long rows.
fn mean_rows<'a>(rows: impl Iterator<Item = &'a Vec<f32>>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    let mut n = 0;
    for row in rows {
        if sum.is_empty() {
            sum = vec![0.0; row.len()];
        }
        sum.iter_mut().zip(row).for_each(|(s, &w)| *s += w);
        n += 1;
    }
    sum.iter_mut().for_each(|s| *s /= n.max(1) as f32);
    sum
}

/// Per row: the mean over decoding steps and layers of the cross-attention
/// mass on image tokens, on text tokens and on the sinks.
fn image_shares(
    model: &FusionModel,
    memory: &Memory,
    tokens: &[Vec<u32>],
    opts: &GenerateOptions,
) -> Result<Vec<[f64; 3]>> {
    let steps: Vec<usize> = tokens
        .iter()
        .map(|t| decoding_steps(t.len(), &model.cfg, opts))
        .collect();
    let attention = step_attention(model, memory, tokens, &steps, Layers::Mean)?;
    Ok(attention
        .iter()
        .map(|row| {
            let n = row.len().max(1) as f64;
            let mean = |mass: fn(&StepAttention) -> f64| row.iter().map(mass).sum::<f64>() / n;
            [
                mean(StepAttention::vision_mass),
                mean(StepAttention::text_mass),
                mean(StepAttention::sink_mass),
            ]
        })
        .collect())
}

// ---------------------------------------------------------------- model facts

/// One decoder layer's gate values `tanh(alpha)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gate {
    pub layer: usize,
    pub vision: f32,
    pub text: f32,
}

/// The gate values per decoder layer; `None` unless the model is gated.
pub fn gates(model: &FusionModel) -> Result<Option<Vec<Gate>>> {
    if model.cfg.fusion != Fusion::Gated {
        return Ok(None);
    }
    let values = model.gate_values()?;
    Ok(Some(
        values
            .into_iter()
            .enumerate()
            .map(|(layer, (vision, text))| Gate {
                layer,
                vision,
                text,
            })
            .collect(),
    ))
}

/// (all parameters, cross-attention parameters) of a loaded model.
pub fn parameter_counts(md: &ModelDir) -> (usize, usize) {
    (
        parameter_count(&md.varmap, |_| true),
        parameter_count(&md.varmap, |name| name.contains("cross_attn")),
    )
}

/// The process's peak resident memory so far (VmHWM in /proc/self/status),
/// in bytes; `None` where /proc is not available.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------- comparing

/// One model's row of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The column name: the directory's name, made unique.
    pub name: String,
    pub path: String,
    pub fusion: Fusion,
    pub parameters: usize,
    /// Parameters of the tensors with "cross_attn" in their names.
    pub cross_attention_parameters: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Mean encode + greedy decode time per image, one image per pass.
    pub ms_per_image_batch1: f64,
    /// The same with `batch_size` images per pass.
    pub ms_per_image_batched: f64,
    pub batch_size: usize,
    /// The records both speeds were timed on (the first ones), after the
    /// evaluation run had warmed up.
    pub speed_samples: usize,
    /// VmHWM of the whole process after this model ran: models are evaluated
    /// one after another in one process, so this never decreases.
    pub process_peak_memory_bytes: Option<u64>,
    /// Concat only: mean cross-attention share on image vs text, per type key and "all".
    pub modality_share: Option<BTreeMap<String, ModalityShare>>,
    /// Gated only: `tanh(alpha)` per decoder layer.
    pub gate_values: Option<Vec<Gate>>,
    /// Records whose image could not be read (scored as empty outputs).
    pub failed: usize,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Decoding speed measured on the same records one at a time and batched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub ms_batch1: f64,
    pub ms_batched: f64,
    pub batch_size: usize,
    /// Records timed.
    pub samples: usize,
}

/// Times greedy decoding of `records` at batch 1 and at `opts.batch_size`.
/// Run it after a first pass over the data, so that neither figure pays for warm-up.
pub fn measure_speed(
    md: &ModelDir,
    records: &[&Record],
    opts: &EvalOptions,
    device: &Device,
) -> Result<Speed> {
    let hidden = ProgressBar::hidden();
    let timed = |batch_size: usize| -> Result<f64> {
        let opts = EvalOptions {
            batch_size,
            modality_share: false,
            ..opts.clone()
        };
        Ok(evaluate(md, records, &opts, device, &hidden)?.ms_per_image())
    };
    Ok(Speed {
        ms_batch1: timed(1)?,
        ms_batched: timed(opts.batch_size)?,
        batch_size: opts.batch_size,
        samples: records.len(),
    })
}

/// Puts a model's evaluation, its speed and its facts together.
pub fn model_report(
    md: &ModelDir,
    name: String,
    evaluation: Evaluation,
    speed: Speed,
) -> Result<ModelReport> {
    let (parameters, cross_attention_parameters) = parameter_counts(md);
    Ok(ModelReport {
        name,
        path: md.path.display().to_string(),
        fusion: md.model.cfg.fusion,
        parameters,
        cross_attention_parameters,
        metrics: metrics(&evaluation.predictions),
        ms_per_image_batch1: speed.ms_batch1,
        ms_per_image_batched: speed.ms_batched,
        batch_size: speed.batch_size,
        speed_samples: speed.samples,
        process_peak_memory_bytes: peak_memory_bytes(),
        modality_share: evaluation.modality_share.clone(),
        gate_values: gates(&md.model)?,
        failed: evaluation.failures(),
        predictions: evaluation.predictions,
    })
}

/// One model's output in a disagreement.
#[derive(Debug, Clone, Serialize)]
pub struct ModelOutput {
    pub model: String,
    pub output: String,
    pub score: f64,
}

/// A record on which the models' (normalised) outputs differ.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub source: String,
    pub image: String,
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    pub references: Vec<String>,
    pub outputs: Vec<ModelOutput>,
}

/// All records where the models' normalised outputs differ, those where the
/// scores differ too first (then in record order). Every model must have one
/// prediction per record, in the same order.
pub fn disagreements(models: &[ModelReport]) -> Vec<Disagreement> {
    let Some(first) = models.first() else {
        return Vec::new();
    };
    let mut found: Vec<(bool, Disagreement)> = Vec::new();
    for (i, base) in first.predictions.iter().enumerate() {
        let preds: Vec<&Prediction> = models.iter().filter_map(|m| m.predictions.get(i)).collect();
        let norm = base.normalized_output();
        if preds.iter().all(|p| p.normalized_output() == norm) {
            continue;
        }
        let scores_differ = preds.iter().any(|p| p.score != base.score);
        let outputs = models
            .iter()
            .zip(&preds)
            .map(|(m, p)| ModelOutput {
                model: m.name.clone(),
                output: p.output.clone(),
                score: p.score,
            })
            .collect();
        found.push((
            scores_differ,
            Disagreement {
                source: base.source.clone(),
                image: base.image.clone(),
                task: base.task,
                question: base.question.clone(),
                references: base.references.clone(),
                outputs,
            },
        ));
    }
    // Stable: record order within each group.
    found.sort_by_key(|(differ, _)| !differ);
    found.into_iter().map(|(_, d)| d).collect()
}

/// Which strategy won one question type, and whether the gap is meaningful.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// A question type, or "all questions".
    pub question_type: String,
    pub n: usize,
    pub winner: String,
    pub accuracy: f64,
    pub runner_up: Option<String>,
    pub runner_up_accuracy: Option<f64>,
    /// The other models with exactly the winner's accuracy.
    pub tied: Vec<String>,
    /// Winner minus runner-up accuracy.
    pub gap: f64,
    /// sqrt(p(1-p)/n) with p the mean of the two accuracies.
    pub standard_error: f64,
    /// The gap is no larger than one binomial standard error.
    pub within_noise: bool,
}

/// The label of the overall VQA row in [`verdicts`].
pub const ALL_QUESTIONS: &str = "all questions";

/// Per question type (and over all questions): the best model by VQA accuracy
/// against the runner-up, with a binomial standard error for the gap.
pub fn verdicts(models: &[ModelReport]) -> Vec<Verdict> {
    let mut rows: Vec<(String, Vec<Score>)> = Vec::new();
    let overall: Vec<Score> = models
        .iter()
        .filter_map(|m| {
            m.metrics
                .vqa
                .as_ref()
                .map(|v| (m.name.clone(), v.accuracy, v.n))
        })
        .collect();
    if !overall.is_empty() {
        rows.push((ALL_QUESTIONS.to_string(), overall));
    }
    let mut types: Vec<&String> = models
        .iter()
        .flat_map(|m| m.metrics.vqa_per_type.keys())
        .collect();
    types.sort();
    types.dedup();
    for kind in types {
        let scores = models
            .iter()
            .filter_map(|m| {
                let s = m.metrics.vqa_per_type.get(kind)?;
                Some((m.name.clone(), s.accuracy, s.n))
            })
            .collect();
        rows.push((kind.clone(), scores));
    }
    rows.into_iter()
        .filter_map(|(kind, scores)| verdict(kind, scores))
        .collect()
}

/// (model, accuracy, questions).
type Score = (String, f64, usize);

fn verdict(question_type: String, mut scores: Vec<Score>) -> Option<Verdict> {
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (winner, accuracy, n) = scores.first()?.clone();
    let runner = scores.get(1);
    let p = runner.map_or(accuracy, |r| (accuracy + r.1) / 2.0);
    let standard_error = (p * (1.0 - p) / n.max(1) as f64).sqrt();
    let gap = runner.map_or(0.0, |r| accuracy - r.1);
    let tied = scores[1..]
        .iter()
        .filter(|s| s.1 == accuracy)
        .map(|s| s.0.clone())
        .collect();
    Some(Verdict {
        question_type,
        n,
        winner,
        accuracy,
        runner_up: runner.map(|r| r.0.clone()),
        runner_up_accuracy: runner.map(|r| r.1),
        tied,
        gap,
        standard_error,
        within_noise: runner.is_some() && gap <= standard_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, per_type: &[(&str, f64, usize)]) -> ModelReport {
        let vqa_per_type = per_type
            .iter()
            .map(|&(k, accuracy, n)| {
                let s = TypeScores {
                    accuracy,
                    exact_match: accuracy,
                    n,
                };
                (k.to_string(), s)
            })
            .collect();
        ModelReport {
            name: name.into(),
            path: name.into(),
            fusion: Fusion::Concat,
            parameters: 0,
            cross_attention_parameters: 0,
            metrics: Metrics {
                caption: None,
                vqa: None,
                vqa_per_type,
            },
            ms_per_image_batch1: 0.0,
            ms_per_image_batched: 0.0,
            batch_size: 1,
            speed_samples: 0,
            process_peak_memory_bytes: None,
            modality_share: None,
            gate_values: None,
            failed: 0,
            predictions: Vec::new(),
        }
    }

    #[test]
    fn a_gap_below_one_standard_error_is_noise() {
        // p = 0.5, n = 100: SE = 0.05. A 0.02 gap is noise, a 0.2 gap is not.
        let a = report("a", &[("color", 0.51, 100), ("shape", 0.6, 100)]);
        let b = report("b", &[("color", 0.49, 100), ("shape", 0.4, 100)]);
        let v = verdicts(&[a, b]);
        let color = v
            .iter()
            .find(|v| v.question_type == "color")
            .expect("color row");
        assert_eq!(color.winner, "a");
        assert!((color.standard_error - 0.05).abs() < 1e-9);
        assert!(color.within_noise);
        let shape = v
            .iter()
            .find(|v| v.question_type == "shape")
            .expect("shape row");
        assert!(!shape.within_noise && (shape.gap - 0.2).abs() < 1e-9);
    }

    #[test]
    fn mean_rows_averages_elementwise() {
        let rows = [vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(mean_rows(rows.iter()), vec![0.5, 0.5]);
    }
}
