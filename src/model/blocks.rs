//! Building blocks shared by the encoders and the decoder.
use candle_core::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};

use super::attention::{Attention, KeyMask, KeyValue};
use super::config::Config;
pub use super::feed_forward::FeedForward;
pub use super::linear::Linear;

/// LayerNorm. Training uses plain tensor ops: candle-nn's fused version records
/// no gradient (see docs/candle-notes.md), which would silently freeze training.
/// Inference uses the fused one, which is faster.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    /// candle's forward-only kernel, for loaded models.
    inference: bool,
}

impl LayerNorm {
    const EPS: f64 = 1e-5;

    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(cfg.d_model, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(cfg.d_model, "bias", Init::Const(0.0))?,
            inference: cfg.inference,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.inference {
            return candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                Self::EPS as f32,
            );
        }
        super::fused::layer_norm(x, &self.weight, &self.bias, Self::EPS)
    }
}

/// A pre-LN transformer encoder block: bidirectional self-attention, then feed-forward.
#[derive(Debug, Clone)]
pub struct EncoderBlock {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    ff: FeedForward,
}

impl EncoderBlock {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(EncoderBlock {
            ln1: LayerNorm::new(cfg, vb.pp("ln1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln2: LayerNorm::new(cfg, vb.pp("ln2"))?,
            ff: FeedForward::new(cfg, vb.pp("ff"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&KeyMask>) -> Result<Tensor> {
        let x = (x + self
            .attn
            .self_attend(&self.ln1.forward(x)?, mask, None, None)?)?;
        &x + self.ff.forward(&self.ln2.forward(&x)?)?
    }
}

/// One pre-LN cross-attention with its residual input normalised separately.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    ln: LayerNorm,
    attn: Attention,
}

impl CrossAttention {
    pub fn new(cfg: &Config, ln_vb: VarBuilder, attn_vb: VarBuilder) -> Result<Self> {
        Ok(CrossAttention {
            ln: LayerNorm::new(cfg, ln_vb)?,
            attn: Attention::cross(cfg, attn_vb)?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        kv: &KeyValue,
        mask: Option<&KeyMask>,
    ) -> Result<(Tensor, Tensor)> {
        self.attn.attend(&self.ln.forward(x)?, kv, mask)
    }

    /// Projects a memory [B, T, d] to this attention's keys and values (sink included).
    pub fn project_kv(&self, memory: &Tensor) -> Result<KeyValue> {
        self.attn.project_kv(memory)
    }

    /// The key mask for this attention's projected memory (sink included).
    pub fn mask_for(&self, mask: &KeyMask) -> Result<KeyMask> {
        if self.attn.has_sink() {
            mask.with_sink()
        } else {
            Ok(mask.clone())
        }
    }
}

/// A learned table [n, d] initialised with a small normal, as GPT-2 does.
pub fn embedding_table(n: usize, d: usize, name: &str, vb: &VarBuilder) -> Result<Tensor> {
    vb.get_with_hints(
        (n, d),
        name,
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )
}
