//! Building blocks shared by the encoders and the decoder.
use candle_core::{Result, Tensor, D};
use candle_nn::{linear_no_bias, Init, Linear, Module, VarBuilder};

use super::attention::{Attention, KeyMask};
use super::{Activation, Config};

/// LayerNorm written with plain tensor ops: candle-nn's fused version records
/// no gradient (see CANDLE-NOTES.md), which would silently freeze training.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    const EPS: f64 = 1e-5;

    pub fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + Self::EPS)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
pub struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl FeedForward {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            fc1: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("fc1"))?,
            fc2: linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("fc2"))?,
            activation: cfg.activation,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.activation {
            Activation::Relu => h.relu()?,
            Activation::Gelu => h.gelu_erf()?,
        };
        self.fc2.forward(&h)
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
            ln1: LayerNorm::new(cfg.d_model, vb.pp("ln1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln2: LayerNorm::new(cfg.d_model, vb.pp("ln2"))?,
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
