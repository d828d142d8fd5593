//! Scaled dot-product attention and the multi-head attention module.
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};

use super::config::Config;
use super::heads::{merge_heads, split_heads};
use super::linear::{matmul_t, Linear};

/// The additive bias given to a masked key. Finite, so a row whose keys are all
/// masked gives a uniform softmax instead of NaN; [`KeyMask`] then zeroes that row.
pub const MASKED: f32 = -1e9;

/// `softmax((Q Kᵀ + mask) / sqrt(d_head)) V`, which is `softmax(Q Kᵀ /
/// sqrt(d_head) + mask) V` to the bit wherever the mask is 0.
/// q: [B, H, Tq, dh], k/v: [B, H, Tk, dh], mask broadcastable to [B, H, Tq, Tk].
/// Returns the output [B, H, Tq, dh] and the attention weights [B, H, Tq, Tk].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let scores = matmul_t(q, k)?;
    // The mask is added before the scale: a masked score stays far below any other.
    let weights = super::fused::attention_softmax(&scores, mask, scale)?;
    Ok((super::product::matmul(&weights, v)?, weights))
}

/// A key-padding mask for attention over a memory of Tk positions.
#[derive(Debug, Clone)]
pub struct KeyMask {
    /// [B, 1, 1, Tk]: 0 for a valid key, [`MASKED`] for padding.
    pub additive: Tensor,
    /// [B, 1, 1, 1]: 1 if the row has at least one valid key, else 0; `None`
    /// when every row has one (the output then needs no zeroing).
    pub any_valid: Option<Tensor>,
}

impl KeyMask {
    /// `valid`: [B, Tk] with 1 for a real key and 0 for padding.
    pub fn from_valid(valid: &Tensor) -> Result<Self> {
        let (b, tk) = valid.dims2()?;
        let valid = valid.to_dtype(DType::F32)?;
        let additive = ((1.0 - &valid)? * MASKED as f64)?.reshape((b, 1, 1, tk))?;
        let any_valid = valid.max_keepdim(1)?.reshape((b, 1, 1, 1))?;
        let every_row_valid = b == 0 || any_valid.min_all()?.to_scalar::<f32>()? > 0.0;
        let any_valid = (!every_row_valid).then_some(any_valid);
        Ok(KeyMask {
            additive,
            any_valid,
        })
    }

    /// The same mask over keys followed by an attention sink, which is always valid.
    pub fn with_sink(&self) -> Result<Self> {
        let (b, _, _, _) = self.additive.dims4()?;
        let sink = Tensor::zeros((b, 1, 1, 1), DType::F32, self.additive.device())?;
        Ok(KeyMask {
            additive: Tensor::cat(&[&self.additive, &sink], 3)?,
            any_valid: self.any_valid.clone(),
        })
    }
}

/// Keys and values already split into heads: [B, H, T, dh] each.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub k: Tensor,
    pub v: Tensor,
}

impl KeyValue {
    pub fn len(&self) -> Result<usize> {
        self.k.dim(2)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Keeps the batch rows in `index` (in that order); used to reorder beams.
    pub fn select(&self, index: &Tensor) -> Result<Self> {
        Ok(KeyValue {
            k: self.k.index_select(index, 0)?,
            v: self.v.index_select(index, 0)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// A learned key and value [1, H, 1, dh] appended to every projected memory.
    sink: Option<KeyValue>,
    n_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, false, vb)
    }

    /// A cross-attention: with a sink when `cfg.cross_attention_sink`.
    pub fn cross(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, cfg.cross_attention_sink, vb)
    }

    fn build(cfg: &Config, with_sink: bool, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let (h, dh) = (cfg.n_heads, cfg.head_dim());
        let sink = if with_sink {
            // Zero at first: a key that scores 0 against every query, a value of 0.
            let param = |name| -> Result<Tensor> {
                vb.get_with_hints(d, name, Init::Const(0.0))?
                    .reshape((1, h, 1, dh))
            };
            Some(KeyValue {
                k: param("sink_k")?,
                v: param("sink_v")?,
            })
        } else {
            None
        };
        Ok(Attention {
            q_proj: Linear::new(d, d, false, cfg, vb.pp("q_proj"))?,
            k_proj: Linear::new(d, d, false, cfg, vb.pp("k_proj"))?,
            v_proj: Linear::new(d, d, false, cfg, vb.pp("v_proj"))?,
            o_proj: Linear::new(d, d, false, cfg, vb.pp("o_proj"))?,
            sink,
            n_heads: h,
            head_dim: dh,
        })
    }

    pub fn has_sink(&self) -> bool {
        self.sink.is_some()
    }

    /// `proj` of `rows` [B·T, d], split into heads: [B, H, T, dh].
    fn project_heads(&self, proj: &Linear, rows: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        split_heads(&proj.forward(rows)?, b, t, self.n_heads)
    }

    /// [B, H, T, dh] -> [B, T, d], through the output projection.
    fn project_out(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, t, _) = x.dims4()?;
        self.o_proj.forward(&merge_heads(x)?)?.reshape((b, t, ()))
    }

    /// Projects a memory [B, T, d] to keys and values once, for reuse at every
    /// step; with a sink, its key and value follow as position T.
    pub fn project_kv(&self, memory: &Tensor) -> Result<KeyValue> {
        let (b, t, d) = memory.dims3()?;
        self.project_kv_rows(&memory.reshape((b * t, d))?, b, t)
    }

    /// `project_kv` of a memory already flattened to rows [B·T, d]: the
    /// projections then need no reshape of their own (each costs a zeroed
    /// tensor and a sum in candle's backward pass).
    fn project_kv_rows(&self, rows: &Tensor, b: usize, t: usize) -> Result<KeyValue> {
        let k = self.project_heads(&self.k_proj, rows, b, t)?;
        let v = self.project_heads(&self.v_proj, rows, b, t)?;
        Ok(match &self.sink {
            Some(sink) => {
                let append = |x: &Tensor, s: &Tensor| -> Result<Tensor> {
                    let s = s
                        .broadcast_as((b, self.n_heads, 1, self.head_dim))?
                        .contiguous()?;
                    Tensor::cat(&[x, &s], 2)
                };
                KeyValue {
                    k: append(&k, &sink.k)?,
                    v: append(&v, &sink.v)?,
                }
            }
            None => KeyValue { k, v },
        })
    }

    /// Attends from `x` [B·K, T, d] to precomputed keys/values of batch B.
    ///
    /// When K > 1 (beam search) the K rows of each input share one copy of the
    /// keys and values: their queries are folded into the query-length axis, so
    /// nothing is copied per beam. Returns the output [B·K, T, d] and the weights
    /// [B·K, H, T, Tk] (with a sink, its weight is the last of the Tk).
    pub fn attend(
        &self,
        x: &Tensor,
        kv: &KeyValue,
        mask: Option<&KeyMask>,
    ) -> Result<(Tensor, Tensor)> {
        let (bk, t, _) = x.dims3()?;
        let b = kv.k.dim(0)?;
        let beams = bk / b;
        let (_, _, d) = x.dims3()?;
        let q = self.project_heads(&self.q_proj, &x.reshape((bk * t, d))?, bk, t)?; // [B·K, H, T, dh]
        let q = if beams > 1 {
            q.reshape((b, beams, self.n_heads, t, self.head_dim))?
                .transpose(1, 2)?
                .reshape((b, self.n_heads, beams * t, self.head_dim))?
        } else {
            q
        };
        let (mut out, mut weights) = attention(&q, &kv.k, &kv.v, mask.map(|m| &m.additive))?;
        if let Some(any_valid) = mask.and_then(|m| m.any_valid.as_ref()) {
            out = out.broadcast_mul(any_valid)?;
            weights = weights.broadcast_mul(any_valid)?;
        }
        if beams > 1 {
            let tk = kv.len()?;
            out = out
                .reshape((b, self.n_heads, beams, t, self.head_dim))?
                .transpose(1, 2)?
                .reshape((bk, self.n_heads, t, self.head_dim))?;
            weights = weights
                .reshape((b, self.n_heads, beams, t, tk))?
                .transpose(1, 2)?
                .reshape((bk, self.n_heads, t, tk))?;
        }
        Ok((self.project_out(&out)?, weights))
    }

    /// Self-attention over `x` [B, T, d]. With a cache, the new keys/values are
    /// appended to it and attention covers every cached position too.
    pub fn self_attend(
        &self,
        x: &Tensor,
        mask: Option<&KeyMask>,
        causal: Option<&Tensor>,
        cache: Option<&mut Option<KeyValue>>,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let rows = x.reshape((b * t, d))?;
        let mut kv = self.project_kv_rows(&rows, b, t)?;
        if let Some(cache) = cache {
            if let Some(past) = cache.as_ref() {
                kv = KeyValue {
                    k: Tensor::cat(&[&past.k, &kv.k], 2)?,
                    v: Tensor::cat(&[&past.v, &kv.v], 2)?,
                };
            }
            *cache = Some(kv.clone());
        }
        let q = self.project_heads(&self.q_proj, &rows, b, t)?;
        let bias = match (mask, causal) {
            (Some(m), Some(c)) => Some(m.additive.broadcast_add(c)?),
            (Some(m), None) => Some(m.additive.clone()),
            (None, Some(c)) => Some(c.clone()),
            (None, None) => None,
        };
        let (mut out, _) = attention(&q, &kv.k, &kv.v, bias.as_ref())?;
        if let Some(any_valid) = mask.and_then(|m| m.any_valid.as_ref()) {
            out = out.broadcast_mul(any_valid)?;
        }
        self.project_out(&out)
    }
}

/// Additive causal mask [Tq, past + Tq]: query i may see keys 0..=past + i.
pub fn causal_mask(tq: usize, past: usize, device: &candle_core::Device) -> Result<Tensor> {
    let tk = past + tq;
    let mask: Vec<f32> = (0..tq)
        .flat_map(|i| (0..tk).map(move |j| if j > past + i { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (tq, tk), device)
}
