//! The transformer's feed-forward layer, `fc2(act(fc1(x)))`, and for
//! training with ReLU one op that computes it with its own backward pass.
//!
//! Composed, training records fc1, the ReLU and fc2 (and a reshape on either
//! side), and candle's backward pass gives each recorded input a zeroed
//! gradient and a sum: two of them four times the width of the model, per
//! layer per step. As one op the hidden activations never reach candle's
//! graph. The op makes the same products in the same order, so its values
//! and gradients are the composed layer's (tested below).
use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::fused::{f32_elements, on_cpu_f32, relu_grad};
use super::linear::Linear;
use super::product::{matrix_product, product, Side};
use super::weight_grads::set_aside;

#[derive(Debug, Clone)]
pub struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl FeedForward {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            fc1: Linear::new(cfg.d_model, cfg.d_ff, false, cfg, vb.pp("fc1"))?,
            fc2: Linear::new(cfg.d_ff, cfg.d_model, false, cfg, vb.pp("fc2"))?,
            activation: cfg.activation,
        })
    }

    /// The weights the one-op form multiplies by: training's, without
    /// biases, with ReLU, on the CPU in f32.
    fn one_op_weights(&self, x: &Tensor) -> Option<(&Tensor, &Tensor)> {
        let relu = matches!(self.activation, Activation::Relu);
        let (w1, w2) = (self.fc1.unbiased_rows()?, self.fc2.unbiased_rows()?);
        (relu && on_cpu_f32(x) && on_cpu_f32(w1) && on_cpu_f32(w2) && x.elem_count() > 0)
            .then_some((w1, w2))
    }
}

impl Module for FeedForward {
    /// On the rows of `x` (all axes but the last flattened): the wide hidden
    /// activations are never reshaped, which in candle's backward pass costs a
    /// zeroed tensor and a sum of their size per reshape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some((w1, w2)) = self.one_op_weights(x) {
            return x.contiguous()?.apply_op3(
                &w1.contiguous()?,
                &w2.contiguous()?,
                ReluFeedForward::default(),
            );
        }
        let d = x.dim(D::Minus1)?;
        let rows = x.reshape((x.elem_count() / d.max(1), d))?;
        let h = self.fc1.forward(&rows)?;
        let h = match self.activation {
            Activation::Relu => super::fused::relu(&h)?,
            Activation::Gelu => h.gelu_erf()?,
        };
        self.fc2.forward(&h)?.reshape(x.shape())
    }
}

/// `relu(x W1ᵀ) W2ᵀ` over the last axis of x, W1 [F, D], W2 [E, F]. Keeps
/// the hidden layer, before and after the ReLU, for its backward pass.
#[derive(Default)]
struct ReluFeedForward {
    hidden: Mutex<Option<Hidden>>,
}

/// The hidden layer [N, F] of one forward pass, kept as long as the graph
/// that records the op (backward may run more than once).
#[derive(Clone)]
struct Hidden {
    before_relu: Tensor,
    after_relu: Tensor,
}

impl ReluFeedForward {
    const NAME: &'static str = "fusecap-relu-feed-forward";
}

impl CustomOp3 for ReluFeedForward {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w1: &CpuStorage,
        w1_layout: &Layout,
        w2: &CpuStorage,
        w2_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[f, d], &[e, f2]) = (w1_layout.dims(), w2_layout.dims()) else {
            bail!(
                "{}: expects weights [F, D] and [E, F], got {:?} and {:?}",
                Self::NAME,
                w1_layout.dims(),
                w2_layout.dims()
            );
        };
        let x_dims = x_layout.dims();
        if x_dims.last() != Some(&d) || f != f2 {
            bail!(
                "{}: input {x_dims:?} against weights [{f}, {d}] and [{e}, {f2}]",
                Self::NAME
            );
        }
        let x = f32_elements(x, x_layout, Self::NAME)?;
        let w1 = f32_elements(w1, w1_layout, Self::NAME)?;
        let w2 = f32_elements(w2, w2_layout, Self::NAME)?;
        let n = x.len() / d.max(1);
        let before_relu = matrix_product(x, Side::AsIs, w1, Side::Transposed, (n, f, d))?;
        let after_relu: Vec<f32> = before_relu.iter().map(|v| v.max(0.0)).collect();
        let y = matrix_product(&after_relu, Side::AsIs, w2, Side::Transposed, (n, e, f))?;
        let device = candle_core::Device::Cpu;
        *self.hidden.lock().map_err(|_| poisoned())? = Some(Hidden {
            before_relu: Tensor::from_vec(before_relu, (n, f), &device)?,
            after_relu: Tensor::from_vec(after_relu, (n, f), &device)?,
        });
        let mut dims = x_dims.to_vec();
        if let Some(last) = dims.last_mut() {
            *last = e;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    /// With h = relu(p), p = x W1ᵀ: dh = dy W2, dW2 = dyᵀ h, dp = dh where
    /// p ≥ 0, dW1 = dpᵀ x, dx = dp W1 — fc2's, the ReLU's and fc1's
    /// backward kernels in turn.
    fn bwd(
        &self,
        x: &Tensor,
        w1: &Tensor,
        w2: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(Hidden {
            before_relu,
            after_relu,
        }) = self.hidden.lock().map_err(|_| poisoned())?.clone()
        else {
            bail!("{}: backward before the forward pass", Self::NAME);
        };
        let d = w1.dim(1)?;
        let e = w2.dim(0)?;
        let n = x.elem_count() / d.max(1);
        let dy = grad_y.reshape((n, e))?;
        let d_after = product(&dy, Side::AsIs, w2, Side::AsIs)?;
        let dw2 = product(&dy, Side::Transposed, &after_relu, Side::AsIs)?;
        let d_before = relu_grad(&before_relu, &d_after)?;
        let rows = x.reshape((n, d))?;
        let dx = product(&d_before, Side::AsIs, w1, Side::AsIs)?;
        let dw1 = product(&d_before, Side::Transposed, &rows, Side::AsIs)?;
        Ok((
            Some(dx.reshape(x.shape())?),
            set_aside(w1, dw1)?,
            set_aside(w2, dw2)?,
        ))
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{}: a thread panicked holding the hidden layer",
        ReluFeedForward::NAME
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::{assert_same_gradients, bits, relu};
    use crate::model::linear::linear_rows;
    use candle_core::{Device, Var};

    /// The op against fc1, ReLU and fc2 as separate recorded ops: the same
    /// output and the same gradients for the input and both weights, to the
    /// bit, for a 3-D input, and again from a second backward pass over the
    /// same graph.
    #[test]
    fn one_op_is_the_composed_layer_to_the_bit() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?)?;
        let w1 = Var::from_tensor(&Tensor::randn(0f32, 1.0, (16, 8), &dev)?)?;
        let w2 = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 16), &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (2, 3, 5), &dev)?;
        let one_op = x.apply_op3(&w1, &w2, ReluFeedForward::default())?;
        let rows = x.reshape((6, 8))?;
        let hidden = relu(&linear_rows(&rows, &w1, None)?)?;
        let composed = linear_rows(&hidden, &w2, None)?.reshape((2, 3, 5))?;
        assert_eq!(one_op.dims(), composed.dims());
        assert_eq!(bits(&one_op), bits(&composed));
        let loss = (one_op * &weights)?.sum_all()?;
        let composed = (composed * &weights)?.sum_all()?.backward()?;
        for one_op in [loss.backward()?, loss.backward()?] {
            assert_same_gradients(&one_op, &composed, &[&x, &w1, &w2]);
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let zeros = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev);
        let op = || ReluFeedForward::default();
        assert!(zeros(&[2, 7])?
            .apply_op3(&zeros(&[16, 8])?, &zeros(&[5, 16])?, op())
            .is_err());
        assert!(zeros(&[2, 8])?
            .apply_op3(&zeros(&[16, 8])?, &zeros(&[5, 15])?, op())
            .is_err());
        Ok(())
    }
}
