//! The linear layer every projection of the model is built from.
use candle_core::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};

use super::config::Config;

/// `y = x Wᵀ + b`, W stored [out, in] as in PyTorch.
///
/// For inference the transposed weight is made contiguous once: gemm's fast
/// path needs it, and with candle-nn's transposed view a 3-row input (three
/// beams) took 30× longer than a 1-row one. A contiguous copy gets no
/// gradient, so training keeps the view.
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
        cfg: &Config,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if with_bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Linear {
            weight_t: transposed(&weight, cfg.inference)?,
            bias,
        })
    }
}

/// `wᵀ`: a contiguous copy for inference, a view (which keeps gradients) for training.
pub fn transposed(w: &Tensor, inference: bool) -> Result<Tensor> {
    if inference {
        w.t()?.contiguous()
    } else {
        w.t()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match *x.dims() {
            [_, _] => x.matmul(&self.weight_t)?,
            [b, t, d] => x
                .reshape((b * t, d))?
                .matmul(&self.weight_t)?
                .reshape((b, t, ()))?,
            _ => x.broadcast_matmul(&self.weight_t)?,
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}
