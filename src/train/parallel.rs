//! Data-parallel training steps: each batch is cut into one contiguous shard
//! of examples per worker thread, every worker runs forward and backward on
//! its shard, and the shards' gradients are summed in shard order.
//!
//! At the shipped size candle's per-op threading makes training slower at two
//! threads than at one (docs/candle-notes.md), so each worker does its arithmetic on
//! one thread (`RAYON_NUM_THREADS=1`, set by the CLI) and the cores share the
//! batch instead.
use std::ops::Range;

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::data::batch::{Batch, CellBatch, MentionBatch};
use crate::generate::Workers;
use crate::model::weight_grads;

/// Training workers, one shard of each batch per worker.
pub struct DataParallel {
    workers: Workers,
}

impl DataParallel {
    pub fn new(threads: usize) -> Result<Self> {
        Ok(DataParallel {
            workers: Workers::new(threads)?,
        })
    }

    pub fn threads(&self) -> usize {
        self.workers.threads()
    }

    /// The workers, for the optimiser's update.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The loss of `batch` and, when it is finite, each shard's gradients
    /// (in shard order; their sum is the batch's gradient).
    ///
    /// `loss(shard, total_weight)` must return the shard's weighted loss
    /// divided by `total_weight`, the whole batch's weight sum, so that the
    /// shards' losses and gradients add up to the whole batch's. One worker
    /// computes exactly what a single-threaded step does; more differ from it
    /// only in the order of float additions.
    pub fn loss_and_grads<F>(&self, batch: &Batch, loss: F) -> Result<(f64, Option<Vec<GradStore>>)>
    where
        F: Fn(&Batch, &Tensor) -> Result<Tensor> + Sync,
    {
        let total_weight = batch.weights.sum_all()?;
        let examples = batch.image_of.dim(0)?;
        let results = self.workers.per_shard(examples, |rows| {
            let part = shard(batch, rows)?;
            let loss_t = loss(&part, &total_weight)?;
            let loss_v = loss_t.to_scalar::<f32>()? as f64;
            // A shard that is not finite makes the step fail: skip its backward.
            let grads = if loss_v.is_finite() {
                Some(weight_grads::backward(&loss_t)?)
            } else {
                None
            };
            Ok((loss_v, grads))
        })?;
        let loss_v = results.iter().map(|(l, _)| l).sum();
        let grads: Option<Vec<GradStore>> = results.into_iter().map(|(_, g)| g).collect();
        Ok((loss_v, grads))
    }
}

/// The examples `range` of `batch`, with only the images they ask about.
fn shard(batch: &Batch, range: Range<usize>) -> Result<Batch> {
    let rows = |t: &Tensor| t.narrow(0, range.start, range.len());
    let image_of = rows(&batch.image_of)?.to_vec1::<u32>()?;
    let mut kept: Vec<u32> = Vec::new();
    let local: Vec<u32> = image_of
        .iter()
        .map(|&row| match kept.iter().position(|&k| k == row) {
            Some(i) => i as u32,
            None => {
                kept.push(row);
                kept.len() as u32 - 1
            }
        })
        .collect();
    let device = batch.images.device();
    let kept = Tensor::new(kept, device)?;
    let cells = match &batch.cells {
        Some(cells) => Some(CellBatch {
            targets: cells.targets.index_select(&kept, 0)?,
            weights: rows(&cells.weights)?,
        }),
        None => None,
    };
    let mentions = match &batch.mentions {
        Some(mentions) => Some(MentionBatch {
            targets: rows(&mentions.targets)?,
            weights: rows(&mentions.weights)?,
        }),
        None => None,
    };
    Ok(Batch {
        images: batch.images.index_select(&kept, 0)?,
        image_of: Tensor::new(local, device)?,
        text_ids: rows(&batch.text_ids)?,
        text_valid: rows(&batch.text_valid)?,
        decoder_input: rows(&batch.decoder_input)?,
        decoder_target: rows(&batch.decoder_target)?,
        target_mask: rows(&batch.target_mask)?,
        weights: rows(&batch.weights)?,
        cells,
        mentions,
    })
}
