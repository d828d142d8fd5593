//! The decoder's cross-attention sublayer, one variant per fusion strategy.
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::attention::{KeyMask, KeyValue};
use super::blocks::CrossAttention;
use super::config::{Config, Fusion};

/// The encoders' outputs for a batch.
#[derive(Debug, Clone)]
pub struct Memory {
    /// [B, Nv, d]
    pub vision: Tensor,
    /// [B, Nt, d]
    pub text: Tensor,
    /// [B, Nt]: 1 for a question token, 0 for padding.
    pub text_valid: Tensor,
}

/// Cross-attention keys/values of one decoder layer, computed once per input.
#[derive(Debug, Clone)]
pub enum CrossKv {
    Joint {
        kv: KeyValue,
        mask: KeyMask,
    },
    PerModality {
        vision: KeyValue,
        text: KeyValue,
        text_mask: KeyMask,
    },
}

/// What the cross-attention looked at, for `explain` and `compare`.
/// Weights are [B, H, T, Tk]; for `concat` Tk = Nv + Nt.
#[derive(Debug, Clone)]
pub enum CrossWeights {
    Joint(Tensor),
    PerModality { vision: Tensor, text: Tensor },
}

impl Fusion {
    /// One cross-attention over the concatenated memory: image and text keys
    /// compete in one softmax, so each one's share of the attention mass says
    /// how much the decoder drew on it. Under separate attentions each sums
    /// to 1 on its own, and such shares say nothing.
    pub fn joint_memory(self) -> bool {
        match self {
            Fusion::Concat => true,
            Fusion::Separate | Fusion::Gated => false,
        }
    }

    /// Each cross-attention's output is scaled by a learned `tanh(alpha)` gate.
    pub fn is_gated(self) -> bool {
        match self {
            Fusion::Gated => true,
            Fusion::Concat | Fusion::Separate => false,
        }
    }
}

/// One layer's cross-attention weights by kind of key, each [B, H, T, keys].
#[derive(Debug, Clone)]
pub struct AttentionParts {
    /// On the image tokens.
    pub vision: Tensor,
    /// On the text-encoder tokens, padding included (with weight 0).
    pub text: Tensor,
    /// On the attention sinks (`Config::cross_attention_sink`): one under a
    /// joint memory, the vision attention's then the text attention's under
    /// separate ones; none for a model without sinks.
    pub sink: Tensor,
}

impl CrossWeights {
    /// Splits the weights into those on the `nv` image keys, on the text keys
    /// and on the sinks; `sinks` says whether each attention has one.
    pub fn parts(&self, nv: usize, sinks: bool) -> Result<AttentionParts> {
        let s = usize::from(sinks);
        match self {
            CrossWeights::Joint(w) => {
                let tk = w.dim(3)?;
                Ok(AttentionParts {
                    vision: w.narrow(3, 0, nv)?,
                    text: w.narrow(3, nv, tk - nv - s)?,
                    sink: w.narrow(3, tk - s, s)?,
                })
            }
            CrossWeights::PerModality { vision, text } => {
                let (kv, kt) = (vision.dim(3)?, text.dim(3)?);
                Ok(AttentionParts {
                    vision: vision.narrow(3, 0, kv - s)?,
                    text: text.narrow(3, 0, kt - s)?,
                    sink: Tensor::cat(
                        &[vision.narrow(3, kv - s, s)?, text.narrow(3, kt - s, s)?],
                        3,
                    )?,
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum FusionLayer {
    Concat {
        cross_attn: CrossAttention,
    },
    /// `gates` is `Some((alpha_vision, alpha_text))` for the gated strategy.
    Separate {
        vision: CrossAttention,
        text: CrossAttention,
        gates: Option<(Tensor, Tensor)>,
        text_first: bool,
    },
}

impl FusionLayer {
    /// `vb` is the decoder layer's builder; weight names are relative to it.
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        let cross = |name: &str| CrossAttention::new(cfg, vb.pp(format!("ln_{name}")), vb.pp(name));
        Ok(match cfg.fusion {
            Fusion::Concat => FusionLayer::Concat {
                cross_attn: cross("cross_attn")?,
            },
            Fusion::Separate | Fusion::Gated => {
                let gates = if cfg.fusion == Fusion::Gated {
                    let gate =
                        |name| vb.get_with_hints(1, name, Init::Const(f64::from(cfg.gate_init)));
                    Some((gate("gate_vision")?, gate("gate_text")?))
                } else {
                    None
                };
                FusionLayer::Separate {
                    vision: cross("cross_attn_vision")?,
                    text: cross("cross_attn_text")?,
                    gates,
                    text_first: cfg.text_before_vision,
                }
            }
        })
    }

    /// Projects this layer's keys/values. For `concat`, `joint` is the
    /// concatenated memory [B, Nv+Nt, d] with modality embeddings added.
    pub fn project(&self, memory: &Memory, joint: Option<&(Tensor, KeyMask)>) -> Result<CrossKv> {
        match self {
            FusionLayer::Concat { cross_attn } => {
                let (joint, mask) = joint.ok_or_else(|| {
                    candle_core::Error::Msg("concat fusion needs the joint memory".into())
                })?;
                Ok(CrossKv::Joint {
                    kv: cross_attn.project_kv(joint)?,
                    mask: cross_attn.mask_for(mask)?,
                })
            }
            FusionLayer::Separate { vision, text, .. } => Ok(CrossKv::PerModality {
                vision: vision.project_kv(&memory.vision)?,
                text: text.project_kv(&memory.text)?,
                text_mask: text.mask_for(&KeyMask::from_valid(&memory.text_valid)?)?,
            }),
        }
    }

    /// x: [B·K, T, d] -> x plus the fused residual(s), and the attention weights.
    pub fn forward(&self, x: &Tensor, kv: &CrossKv) -> Result<(Tensor, CrossWeights)> {
        match (self, kv) {
            (FusionLayer::Concat { cross_attn }, CrossKv::Joint { kv, mask }) => {
                let (out, w) = cross_attn.forward(x, kv, Some(mask))?;
                Ok(((x + out)?, CrossWeights::Joint(w)))
            }
            (
                FusionLayer::Separate {
                    vision,
                    text,
                    gates,
                    text_first,
                },
                CrossKv::PerModality {
                    vision: kv_v,
                    text: kv_t,
                    text_mask,
                },
            ) => {
                let read_vision = |x: &Tensor| -> Result<(Tensor, Tensor)> {
                    let (out, w) = vision.forward(x, kv_v, None)?;
                    Ok(((x + gated(out, gates.as_ref().map(|g| &g.0))?)?, w))
                };
                let read_text = |x: &Tensor| -> Result<(Tensor, Tensor)> {
                    let (out, w) = text.forward(x, kv_t, Some(text_mask))?;
                    Ok(((x + gated(out, gates.as_ref().map(|g| &g.1))?)?, w))
                };
                let (x, w_v, w_t) = if *text_first {
                    let (x, w_t) = read_text(x)?;
                    let (x, w_v) = read_vision(&x)?;
                    (x, w_v, w_t)
                } else {
                    let (x, w_v) = read_vision(x)?;
                    let (x, w_t) = read_text(&x)?;
                    (x, w_v, w_t)
                };
                Ok((
                    x,
                    CrossWeights::PerModality {
                        vision: w_v,
                        text: w_t,
                    },
                ))
            }
            _ => Err(candle_core::Error::Msg(
                "cross-attention cache does not match the fusion strategy".into(),
            )),
        }
    }

    /// The gate values `tanh(alpha)` (vision, text), for the gated strategy.
    pub fn gate_values(&self) -> Result<Option<(f32, f32)>> {
        match self {
            FusionLayer::Separate {
                gates: Some((v, t)),
                ..
            } => {
                let read = |a: &Tensor| -> Result<f32> { a.tanh()?.to_vec1::<f32>().map(|v| v[0]) };
                Ok(Some((read(v)?, read(t)?)))
            }
            _ => Ok(None),
        }
    }
}

fn gated(out: Tensor, alpha: Option<&Tensor>) -> Result<Tensor> {
    match alpha {
        Some(alpha) => out.broadcast_mul(&alpha.tanh()?),
        None => Ok(out),
    }
}

impl CrossKv {
    /// Keeps the batch rows in `index`; used when a batch shrinks.
    pub fn select(&self, index: &Tensor) -> Result<Self> {
        let mask = |m: &KeyMask| -> Result<KeyMask> {
            Ok(KeyMask {
                additive: m.additive.index_select(index, 0)?,
                any_valid: match &m.any_valid {
                    Some(any) => Some(any.index_select(index, 0)?),
                    None => None,
                },
            })
        };
        Ok(match self {
            CrossKv::Joint { kv, mask: m } => CrossKv::Joint {
                kv: kv.select(index)?,
                mask: mask(m)?,
            },
            CrossKv::PerModality {
                vision,
                text,
                text_mask,
            } => CrossKv::PerModality {
                vision: vision.select(index)?,
                text: text.select(index)?,
                text_mask: mask(text_mask)?,
            },
        })
    }
}
