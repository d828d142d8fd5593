//! Training: loss, AdamW, learning-rate schedule, checkpoints and the loop.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::data::batch::{Augment, Batch, CellBatch, Dataset, MentionBatch, Sampler};
use crate::data::stream::{captions_asked, step_dataset, step_item, PreparedItem, StreamOptions};
use crate::generate::{greedy, GenerateOptions, Workers};
use crate::model::dir::{
    init_model_with_words, load_weights, save_model_dir, write_atomically, WEIGHTS_FILE,
};
use crate::model::{Config, FusionModel, ATTRIBUTE_CLASSES};
use crate::tokenizer::TextTokenizer;

mod adamw;
pub mod log;
mod parallel;
pub use adamw::AdamW;
pub use log::LogRecord;
use log::LogWriter;
pub use parallel::DataParallel;

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const STATE_FILE: &str = "train_state.json";
pub const LOG_FILE: &str = "training.jsonl";
pub const CURVE_FILE: &str = "loss.png";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// The schedule decays to `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub label_smoothing: f64,
    pub seed: u64,
    /// Seeds the initialisation instead of `seed` (`--init-seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_seed: Option<u64>,
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub augment_shift: i64,
    pub augment_noise: f32,
    /// Examples of one image that share a batch (and one pass of the vision encoder).
    #[serde(default = "one")]
    pub group_size: usize,
    /// Weigh questions so that every answer of a question type weighs the
    /// same in total (`Dataset::balance_answers`), each weight at most this
    /// factor from 1; 0 = off.
    #[serde(default)]
    pub balance_answers: f32,
    /// Loss weight factors per question type (`Dataset::weigh_question_types`).
    #[serde(default)]
    pub type_weights: BTreeMap<String, f32>,
    /// Validation examples evaluated at each evaluation.
    pub val_examples: usize,
    /// Multi-object scenes drawn afresh for every step, mixed into each batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamOptions>,
    /// A model directory whose weights replace the random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// The gated strategy's gates learn at this multiple of the step's rate.
    #[serde(default = "default_gate_lr_scale")]
    pub gate_lr_scale: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 1000,
            batch_size: 64,
            lr: 1e-3,
            min_lr_ratio: 0.05,
            warmup_steps: 100,
            weight_decay: 0.01,
            clip_norm: 1.0,
            label_smoothing: 0.0,
            seed: 0,
            init_seed: None,
            eval_every: 250,
            checkpoint_every: 250,
            augment_shift: 0,
            augment_noise: 0.0,
            group_size: 1,
            balance_answers: 0.0,
            type_weights: BTreeMap::new(),
            val_examples: 512,
            stream: None,
            init_from: None,
            gate_lr_scale: default_gate_lr_scale(),
        }
    }
}

/// What runs recorded before `gate_lr_scale` existed used.
fn default_gate_lr_scale() -> f64 {
    AdamW::DEFAULT_GATE_LR_SCALE
}

/// What runs recorded before `group_size` existed used.
fn one() -> usize {
    1
}

impl TrainOptions {
    /// The seed of the random initialisation.
    pub fn weight_seed(&self) -> u64 {
        self.init_seed.unwrap_or(self.seed)
    }

    fn augment(&self) -> Augment {
        Augment {
            max_shift: self.augment_shift,
            noise: self.augment_noise,
        }
    }

    /// Sets the training examples' loss weights from `balance_answers` and
    /// `type_weights`. Fails on a weighted question type no example has.
    pub fn weigh_examples(&self, train: &mut Dataset) -> anyhow::Result<()> {
        if self.balance_answers > 0.0 {
            train.balance_answers(self.balance_answers.max(1.0));
        }
        let unknown = train.weigh_question_types(&self.type_weights);
        if !unknown.is_empty() {
            let known = train.question_types();
            anyhow::bail!(
                "no training question has the type(s) {} given a weight; the types are: {}",
                unknown.join(", "),
                known.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(())
    }
}

/// Linear warm-up, then cosine decay to `lr * min_lr_ratio` at the last step.
pub fn learning_rate(opts: &TrainOptions, step: usize) -> f64 {
    if step < opts.warmup_steps {
        return opts.lr * (step + 1) as f64 / opts.warmup_steps as f64;
    }
    let span = opts.steps.saturating_sub(opts.warmup_steps).max(1) as f64;
    let progress = ((step - opts.warmup_steps) as f64 / span).min(1.0);
    let min = opts.lr * opts.min_lr_ratio;
    min + 0.5 * (opts.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Token cross-entropy (with optional label smoothing), averaged within each
/// example, then over the batch by the examples' weights (all 1 unless the
/// answers are balanced or question types weighted). A target's length does
/// not weigh: averaged over all tokens, a 20-token scene caption outweighed a
/// one-word answer ten to one.
pub fn loss(model: &FusionModel, batch: &Batch, label_smoothing: f64) -> Result<Tensor> {
    loss_over(model, batch, label_smoothing, &batch.weights.sum_all()?)
}

/// `loss`, with the weighted sum divided by `total_weight` instead of the
/// batch's own weight sum: for a shard of a batch, the whole batch's, so that
/// the shards' losses add up to the batch's.
fn loss_over(
    model: &FusionModel,
    batch: &Batch,
    label_smoothing: f64,
    total_weight: &Tensor,
) -> Result<Tensor> {
    let (logits, auxiliary) = model.forward_with_auxiliary(
        &batch.images,
        &batch.image_of,
        &batch.text_ids,
        &batch.text_valid,
        &batch.decoder_input,
    )?;
    let logp = crate::model::fused::log_softmax_last_dim(&logits)?;
    let nll = logp
        .gather(&batch.decoder_target.unsqueeze(2)?, 2)?
        .squeeze(2)?
        .neg()?;
    let per_token = if label_smoothing > 0.0 {
        let uniform = logp.mean(D::Minus1)?.neg()?;
        ((nll * (1.0 - label_smoothing))? + (uniform * label_smoothing)?)?
    } else {
        nll
    };
    let per_example = (per_token * &batch.target_mask)?
        .sum(1)?
        .div(&batch.target_mask.sum(1)?)?;
    let weighted = (per_example * &batch.weights)?.sum_all()?;
    let mut total = weighted.broadcast_div(total_weight)?;
    // A head whose targets this batch lacks (a batch of captions has no
    // mentions; easy-VQA images have no attributes) still joins the graph,
    // with a zero gradient: the optimiser refuses a variable without one.
    if let Some(logits) = &auxiliary.attributes {
        let part = auxiliary_part(
            logits,
            batch.cells.as_ref(),
            model.cfg.attribute_loss,
            |c| attribute_loss(logits, &batch.image_of, c),
        )?;
        total = (total + part)?;
    }
    if let Some(logits) = &auxiliary.mentions {
        let part = auxiliary_part(
            logits,
            batch.mentions.as_ref(),
            model.cfg.mention_loss,
            |m| mention_loss(logits, m),
        )?;
        total = (total + part)?;
    }
    Ok(total)
}

/// A head's loss times its weight, or, without targets, a zero that still
/// depends on the head's `logits`.
fn auxiliary_part<T>(
    logits: &Tensor,
    targets: Option<&T>,
    weight: f32,
    loss: impl FnOnce(&T) -> Result<Tensor>,
) -> Result<Tensor> {
    match targets {
        Some(targets) => Ok((loss(targets)? * f64::from(weight))?),
        None => zero_through(logits),
    }
}

/// 0, as a function of `t`, so that what made `t` gets a zero gradient.
/// (candle drops the graph behind a multiplication by the constant 0.)
fn zero_through(t: &Tensor) -> Result<Tensor> {
    let sum = t.sum_all()?;
    Ok((&sum * Tensor::zeros((), sum.dtype(), sum.device())?)?)
}

/// The mention head's binary cross-entropy, averaged over each input's
/// tokens, then summed over the examples by `mentions.weights`.
/// `logits`: [B, Nv].
fn mention_loss(logits: &Tensor, mentions: &MentionBatch) -> Result<Tensor> {
    // log(1 + e^x) - y·x, computed as max(x, 0) + log(1 + e^-|x|) - y·x.
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let per_token = (softplus - (logits * &mentions.targets)?)?;
    Ok((per_token.mean(1)? * &mentions.weights)?.sum_all()?)
}

/// The attribute head's cross-entropy, averaged over each image's tokens and
/// the three attributes, then summed over the examples by `cells.weights`.
/// `logits`: [N, Nv, 17] for the batch's images.
fn attribute_loss(logits: &Tensor, image_of: &Tensor, cells: &CellBatch) -> Result<Tensor> {
    let logits = logits.index_select(image_of, 0)?;
    let targets = cells.targets.index_select(image_of, 0)?;
    let mut start = 0;
    let mut per_attribute = Vec::with_capacity(ATTRIBUTE_CLASSES.len());
    for (attribute, &classes) in ATTRIBUTE_CLASSES.iter().enumerate() {
        let logp = crate::model::fused::log_softmax_last_dim(&logits.narrow(2, start, classes)?)?;
        start += classes;
        let target = targets.narrow(2, attribute, 1)?.contiguous()?;
        per_attribute.push(logp.gather(&target, 2)?.squeeze(2)?.neg()?.mean(1)?);
    }
    let per_example = Tensor::stack(&per_attribute, 0)?.mean(0)?;
    Ok((per_example * &cells.weights)?.sum_all()?)
}

/// What `train_state.json` records, so `--resume` can check it continues the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub options: TrainOptions,
    pub train_examples: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    Interrupted { step: usize },
}

pub struct TrainRun<'a> {
    pub out: PathBuf,
    pub cfg: Config,
    pub tokenizer: TextTokenizer,
    pub train: &'a Dataset,
    pub val: &'a Dataset,
    pub options: TrainOptions,
    pub resume: bool,
    pub save_dtype: DType,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: &'a AtomicBool,
    /// Called after every step with the latest record.
    pub on_step: &'a mut dyn FnMut(&LogRecord),
    /// Worker threads that share each batch (`DataParallel`). Results differ
    /// between thread counts only in float rounding; a resume is exact when
    /// it uses the same count.
    pub threads: usize,
    /// Where the model and the batches live.
    pub device: Device,
}

impl TrainRun<'_> {
    pub fn run(self) -> Result<Outcome> {
        let device = self.device.clone();
        let opts = &self.options;
        if self.train.examples.is_empty() {
            bail!("no training examples");
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let (model, varmap) = init_model_with_words(
            &self.cfg,
            &self.tokenizer.words(),
            opts.weight_seed(),
            &device,
        )?;
        if let (Some(dir), false) = (&opts.init_from, self.resume) {
            load_weights(&varmap, &dir.join(WEIGHTS_FILE), &device)?;
        }
        let mut adam = AdamW::new(&varmap, opts.weight_decay)?;
        adam.set_gate_learning_rate_scale(opts.gate_lr_scale);
        for encoder in self.cfg.fine_tuned_encoders() {
            adam.scale_learning_rate(&encoder.prefix, encoder.lr_scale);
        }
        let workers = DataParallel::new(self.threads)?;
        let checkpoint = self.out.join(CHECKPOINT_FILE);
        let mut start = 0;
        if self.resume {
            let state: TrainState = read_state(&self.out.join(STATE_FILE))?;
            if state.options != *opts || state.train_examples != self.train.examples.len() {
                bail!(
                    "{}: resuming needs the same data and options as the interrupted run; these differ (interrupted run → now):\n  {}\nresume with the run's options, or start afresh in another folder",
                    self.out.join(STATE_FILE).display(),
                    crate::diff::changed_fields(&state.options, opts)
                        .into_iter()
                        .chain((state.train_examples != self.train.examples.len()).then(|| {
                            format!(
                                "training examples: {} → {}",
                                state.train_examples,
                                self.train.examples.len()
                            )
                        }))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                );
            }
            let tensors = candle_core::safetensors::load(&checkpoint, &device).map_err(|e| {
                anyhow!("{}: cannot read the checkpoint ({e})", checkpoint.display())
            })?;
            adam.restore(&tensors, &checkpoint)?;
            start = adam.step;
        }
        let mut log = LogWriter::open(&self.out.join(LOG_FILE), start)?;
        save_model_dir(
            &self.out,
            &self.cfg,
            &varmap,
            &self.tokenizer,
            self.save_dtype,
        )?;

        // Batches are built on a second thread, ahead of the training step.
        // With more than one worker, the streamed scenes are drawn on the
        // workers, in the moments they wait, instead of by a third busy
        // thread that would delay one shard and keep the other waiting
        // (BENCHMARKS.md, "What the two cores allow").
        let draw_on = (workers.threads() > 1).then(|| workers.workers());
        let (tx, rx) = sync_channel::<Result<Batch>>(2);
        let n = self.train.examples.len();
        let (bs, seed, augment) = (opts.batch_size, opts.seed, opts.augment());
        let group_size = opts.group_size;
        let total = opts.steps;
        let cfg = self.cfg.clone();
        let train = self.train;
        let tokenizer = &self.tokenizer;
        let stream = opts.stream.clone();
        let streamed = stream.as_ref().map_or(0, |s| s.per_batch(bs));
        let clock = Instant::now();
        let batch_device = &device;
        let outcome = std::thread::scope(|scope| -> Result<Outcome> {
            scope.spawn(move || {
                let sampler = Sampler::new(train, (bs - streamed).max(1), group_size, seed);
                for (step, mut indices) in (start..total).zip(sampler.batches_from(start)) {
                    let augment_seed = seed.wrapping_add(step as u64 * 7919);
                    let batch = match &stream {
                        None => {
                            Batch::new(train, &indices, &cfg, augment, augment_seed, batch_device)
                        }
                        Some(stream) => {
                            indices.truncate(bs - streamed);
                            let caption = captions_asked(train, &indices);
                            let item =
                                |j| step_item(stream, step, streamed, j, caption, tokenizer, &cfg);
                            let step_data = prepare_items(draw_on, streamed, &item)
                                .map(|items| step_dataset(train, &indices, items));
                            step_data.and_then(|ds| {
                                let all: Vec<usize> = (0..ds.examples.len()).collect();
                                Batch::new(&ds, &all, &cfg, augment, augment_seed, batch_device)
                            })
                        }
                    };
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            });
            // Dropping the receiver when the loop ends, however it ends, lets the
            // loader thread's blocked `send` fail so the scope can join it.
            let rx = rx;
            let mut last_good = start;
            let mut window = Instant::now();
            let mut train_loop = || -> Result<Outcome> {
                for step in start..total {
                    let batch = rx
                        .recv()
                        .map_err(|_| anyhow!("the data loader stopped"))??;
                    let lr = learning_rate(opts, step);
                    let (loss_v, grad_norm) =
                        train_step(&workers, &model, &mut adam, &batch, lr, opts)?;
                    let Some(grad_norm) = grad_norm else {
                        bail!(
                        "the loss became {loss_v} at step {}; training stopped. The last good checkpoint (step {last_good}) is kept in {}. Lower the learning rate or lengthen the warm-up and resume from it",
                        step + 1,
                        self.out.display()
                    );
                    };
                    if !grad_norm.is_finite() {
                        bail!("the gradient norm became {grad_norm} at step {}; training stopped, the last good checkpoint (step {last_good}) is kept in {}", step + 1, self.out.display());
                    }
                    let done = step + 1;
                    let mut record = LogRecord {
                        step: done,
                        loss: loss_v,
                        lr,
                        grad_norm,
                        samples_per_sec: batch.image_of.dim(0)? as f64
                            / window.elapsed().as_secs_f64(),
                        elapsed_s: clock.elapsed().as_secs_f64(),
                        ..Default::default()
                    };
                    window = Instant::now();
                    if done % opts.eval_every == 0 || done == total {
                        let validation = evaluate(&model, self.val, opts, &device)?;
                        record.val_loss = validation.loss;
                        record.val_accuracy = validation.accuracy;
                        record.val_accuracy_by_type = validation.accuracy_by_type;
                    }
                    log.write(&record)?;
                    (self.on_step)(&record);
                    let stop = self.stop.load(Ordering::SeqCst);
                    if done % opts.checkpoint_every == 0 || done == total || stop {
                        save_checkpoint(
                            &self.out,
                            &adam,
                            &varmap,
                            &self.cfg,
                            &self.tokenizer,
                            self.save_dtype,
                            opts,
                            n,
                        )?;
                        last_good = done;
                        if let Err(e) = model.persist_feature_caches() {
                            eprintln!("warning: {e:#}; the image features are not kept on disk");
                        }
                    }
                    if stop && done < total {
                        return Ok(Outcome::Interrupted { step: done });
                    }
                }
                Ok(Outcome::Finished)
            };
            let outcome = train_loop();
            drop(rx);
            outcome
        })?;
        log::loss_curve(&self.out.join(LOG_FILE), &self.out.join(CURVE_FILE))?;
        Ok(outcome)
    }
}

/// `item(j)` for `j` in `0..count`, in order: shared out among `workers`
/// where there are any, else on this thread.
fn prepare_items(
    workers: Option<&Workers>,
    count: usize,
    item: &(dyn Fn(usize) -> Result<PreparedItem> + Sync),
) -> Result<Vec<PreparedItem>> {
    match workers {
        Some(workers) => workers.map_shards(count, |range| range.map(item).collect()),
        None => (0..count).map(item).collect(),
    }
}

/// One optimisation step: the loss, and the gradient norm before clipping.
/// A loss that is not finite is returned without a step (norm `None`), so the
/// weights keep their last good values.
fn train_step(
    workers: &DataParallel,
    model: &FusionModel,
    adam: &mut AdamW,
    batch: &Batch,
    lr: f64,
    opts: &TrainOptions,
) -> Result<(f64, Option<f64>)> {
    let (loss_v, grads) = workers.loss_and_grads(batch, |shard, total_weight| {
        loss_over(model, shard, opts.label_smoothing, total_weight)
    })?;
    match grads {
        Some(grads) if loss_v.is_finite() => {
            let norm = adam.step_sharded(&grads, workers.workers(), lr, opts.clip_norm)?;
            Ok((loss_v, Some(norm)))
        }
        _ => Ok((loss_v, None)),
    }
}

fn read_state(path: &Path) -> Result<TrainState> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: no training state to resume from; start afresh instead",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: corrupt training state", path.display()))
}

/// Writes the checkpoint file, then the usable model directory, each atomically.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    out: &Path,
    adam: &AdamW,
    varmap: &VarMap,
    cfg: &Config,
    tokenizer: &TextTokenizer,
    dtype: DType,
    opts: &TrainOptions,
    n: usize,
) -> Result<()> {
    let state = adam.state()?;
    write_atomically(&out.join(CHECKPOINT_FILE), |tmp| {
        Ok(candle_core::safetensors::save(&state, tmp)?)
    })?;
    let json = serde_json::to_string_pretty(&TrainState {
        step: adam.step,
        options: opts.clone(),
        train_examples: n,
    })?;
    write_atomically(&out.join(STATE_FILE), |tmp| Ok(std::fs::write(tmp, json)?))?;
    save_model_dir(out, cfg, varmap, tokenizer, dtype)
}

/// What one validation pass measured.
#[derive(Debug, Default)]
pub struct Validation {
    pub loss: Option<f64>,
    /// Exact-match accuracy of greedy answers on the VQA examples.
    pub accuracy: Option<f64>,
    /// The same, per question type.
    pub accuracy_by_type: BTreeMap<String, f64>,
}

/// Validation loss, and exact-match accuracy of greedy answers on the VQA
/// examples, overall and per question type.
pub fn evaluate(
    model: &FusionModel,
    val: &Dataset,
    opts: &TrainOptions,
    device: &Device,
) -> Result<Validation> {
    if val.examples.is_empty() {
        return Ok(Validation::default());
    }
    let cfg = &model.cfg;
    let take = val.examples.len().min(opts.val_examples);
    let (mut loss_sum, mut batches) = (0.0, 0usize);
    // question type -> (correct, asked)
    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let indices: Vec<usize> = (0..take).collect();
    for chunk in indices.chunks(opts.batch_size.max(1)) {
        let batch = Batch::new(val, chunk, cfg, Augment::NONE, 0, device)?;
        loss_sum += loss(model, &batch, 0.0)?.to_scalar::<f32>()? as f64;
        batches += 1;
        let vqa: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| val.examples[i].question_type.is_some())
            .collect();
        if vqa.is_empty() {
            continue;
        }
        let vqa_batch = Batch::new(val, &vqa, cfg, Augment::NONE, 0, device)?;
        let memory = model.encode_shared(
            &vqa_batch.images,
            Some(&vqa_batch.image_of),
            &vqa_batch.text_ids,
            &vqa_batch.text_valid,
        )?;
        let longest = vqa
            .iter()
            .map(|&i| val.examples[i].target.len())
            .max()
            .unwrap_or(1);
        let generated = greedy(
            model,
            &memory,
            &GenerateOptions {
                max_new_tokens: longest + 1,
                ..Default::default()
            },
        )?;
        for (&i, g) in vqa.iter().zip(&generated) {
            let example = &val.examples[i];
            let kind = example.question_type.clone().unwrap_or_default();
            let entry = tally.entry(kind).or_default();
            entry.0 += usize::from(g.tokens == example.target);
            entry.1 += 1;
        }
    }
    let (correct, asked) = tally
        .values()
        .fold((0, 0), |(c, a), &(tc, ta)| (c + tc, a + ta));
    Ok(Validation {
        loss: Some(loss_sum / batches as f64),
        accuracy: (asked > 0).then(|| correct as f64 / asked as f64),
        accuracy_by_type: tally
            .into_iter()
            .map(|(kind, (c, a))| (kind, c as f64 / a as f64))
            .collect(),
    })
}
