//! What the decoder's cross-attention looked at, step by step.
use anyhow::{bail, Result};
use candle_core::Tensor;
use serde::Serialize;

use crate::generate::GenerateOptions;
use crate::model::{pad_tokens, Config, CrossWeights, FusionModel, Memory};

/// Which decoder layers' cross-attention to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    /// The mean over all decoder layers.
    Mean,
    /// One layer, 0-based.
    Layer(usize),
}

impl Layers {
    /// The one layer chosen, or `None` for the mean.
    pub fn layer(self) -> Option<usize> {
        match self {
            Layers::Mean => None,
            Layers::Layer(l) => Some(l),
        }
    }
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
    let parts = weights.parts(nv, sinks)?;
    let mean = |w: &Tensor| -> Result<Grid3> { Ok(w.mean(1)?.to_vec3::<f32>()?) };
    Ok(LayerMeans {
        vision: mean(&parts.vision)?,
        text: mean(&parts.text)?,
        sink: mean(&parts.sink)?,
    })
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
pub(super) fn image_shares(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rows_averages_elementwise() {
        let rows = [vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(mean_rows(rows.iter()), vec![0.5, 0.5]);
    }
}
