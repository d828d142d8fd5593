//! The two ops whose fast candle-nn forms record no gradient
//! (docs/candle-notes.md), for encoders that run both frozen and fine-tuned.
use candle_core::{Module, Result, Tensor, D};
use candle_nn::LayerNorm;

/// `ln(x)`: candle-nn's fused layer norm, or with `grads` the plain ops,
/// which record gradients.
pub(super) fn norm(ln: &LayerNorm, x: &Tensor, grads: bool) -> Result<Tensor> {
    if !grads {
        return ln.forward(x);
    }
    let eps = ln.eps();
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(ln.weight())?;
    match ln.bias() {
        Some(b) => normed.broadcast_add(b),
        None => Ok(normed),
    }
}

/// Softmax over the last dimension: fused, or with `grads` the plain ops.
pub(super) fn softmax(scores: &Tensor, grads: bool) -> Result<Tensor> {
    if grads {
        candle_nn::ops::softmax(scores, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(scores)
    }
}
