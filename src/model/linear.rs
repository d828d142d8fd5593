//! The linear layer every projection of the model is built from, with its
//! bias added inside the product's op in training. Its products are
//! `model::product`'s (`matmul_t`, re-exported here) and, for a single row
//! in inference, `model::row_product`'s.
use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor,
};
use candle_nn::{Init, VarBuilder};

use super::config::Config;
use super::fused::{f32_elements, f32_elements_mut, on_cpu_f32};
pub use super::product::matmul_t;
use super::product::{product, product_t_grads, Product, Side};
use super::row_product::row_by_row_product;
use super::weight_grads::set_aside;

/// `y = x Wᵀ + b`, W stored [out, in] as in PyTorch.
///
/// For inference the transposed weight is made contiguous once: gemm's fast
/// path needs it, and with candle-nn's transposed view a 3-row input (three
/// beams) took 30× longer than a 1-row one. A single row, as in decoding one
/// image, is multiplied by a kernel of its own ([`row_by_row_product`]).
/// Training multiplies by W through one op of its own ([`linear_rows`]).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

/// The weight as each use multiplies by it.
#[derive(Debug, Clone)]
enum Weight {
    /// W [out, in], for training's [`linear_rows`].
    Rows(Tensor),
    /// `Wᵀ` [in, out], contiguous, for inference.
    Transposed(Tensor),
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
        Linear::from_weights(weight, bias, cfg.inference)
    }

    /// A layer over existing weights, such as the decoder's tied LM head.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>, inference: bool) -> Result<Self> {
        let weight = match inference {
            true => Weight::Transposed(weight.t()?.contiguous()?),
            false => Weight::Rows(weight),
        };
        Ok(Linear { weight, bias })
    }

    /// W [out, in] where training multiplies by it and there is no bias.
    pub fn unbiased_rows(&self) -> Option<&Tensor> {
        match (&self.weight, &self.bias) {
            (Weight::Rows(weight), None) => Some(weight),
            _ => None,
        }
    }

    fn forward_rows(&self, rows: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Rows(weight) => linear_rows(rows, weight, self.bias.as_ref()),
            Weight::Transposed(weight_t) => {
                let one_row = match rows.dim(0)? {
                    1 => row_by_row_product(rows, weight_t)?,
                    _ => None,
                };
                let y = match one_row {
                    Some(y) => y,
                    None => product(rows, Side::AsIs, weight_t, Side::AsIs)?,
                };
                add_bias(y, self.bias.as_ref())
            }
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match *x.dims() {
            [_, _] => self.forward_rows(x),
            [.., d] => {
                let lead = &x.dims()[..x.rank() - 1];
                let rows = self.forward_rows(&x.reshape((x.elem_count() / d.max(1), d))?)?;
                let mut shape = lead.to_vec();
                shape.push(rows.dim(1)?);
                rows.reshape(shape)
            }
            [] => bail!("linear: expects at least one axis, got a scalar"),
        }
    }
}

/// `rows Wᵀ (+ b)` for rows [N, in] and W [out, in], as one recorded op on
/// the CPU. Composed, candle records the transposed view of W, the matmul and
/// the bias's broadcast add, and in backward gives each a zeroed gradient and
/// a sum, W's through a strided copy; with a shard per training thread that
/// weight-sized work is done once per thread, so it limits what a second
/// thread gains (BENCHMARKS.md, "Training kernels").
pub fn linear_rows(rows: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let Some(bias) = bias else {
        return matmul_t(rows, weight);
    };
    if !on_cpu_f32(rows) || rows.elem_count() == 0 || weight.elem_count() == 0 {
        return add_bias(rows.matmul(&weight.t()?)?, Some(bias));
    }
    rows.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearWithBias)
}

/// `y + b`, the bias broadcast over the rows, where there is one.
fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

/// `x Wᵀ + b`, the bias added to each row of the product in place.
struct LinearWithBias;

impl CustomOp3 for LinearWithBias {
    fn name(&self) -> &'static str {
        "fusecap-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = CustomOp3::name(self);
        if x_layout.dims().len() != 2 {
            bail!("{op}: expects rows [N, in], got {:?}", x_layout.dims());
        }
        let x_wt = Product {
            a_side: Side::AsIs,
            b_side: Side::Transposed,
        };
        let (mut y, shape) = CustomOp2::cpu_fwd(&x_wt, x, x_layout, w, w_layout)?;
        let bias = f32_elements(b, b_layout, op)?;
        let out = *shape.dims().last().unwrap_or(&0);
        if bias.len() != out {
            bail!("{op}: a bias of {} values for {out} outputs", bias.len());
        }
        let values = f32_elements_mut(&mut y, &Layout::contiguous(&shape), op)?;
        for row in values.chunks_exact_mut(out) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = product_t_grads(x, w, grad_y)?;
        let out = w.dim(0)?;
        let rows = grad_y.elem_count() / out;
        let db = Tensor::ones((1, rows), DType::F32, grad_y.device())?
            .matmul(&grad_y.reshape((rows, out))?)?
            .squeeze(0)?;
        Ok((Some(dx), set_aside(w, dw)?, Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::max_diff;
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Var};

    /// Asserts that `kernel` and `composed` agree in value and in the
    /// gradients of `vars` of a weighted sum (so every output's gradient
    /// differs); returns the kernel's gradients.
    fn assert_agree(
        kernel: Tensor,
        composed: Tensor,
        weights: &Tensor,
        vars: &[&Var],
    ) -> Result<GradStore> {
        assert_eq!(kernel.dims(), composed.dims());
        assert!(max_diff(&kernel, &composed) < 1e-5);
        let kernel_grads = (kernel * weights)?.sum_all()?.backward()?;
        let composed_grads = (composed * weights)?.sum_all()?.backward()?;
        for var in vars {
            let (Some(k), Some(c)) = (kernel_grads.get(var), composed_grads.get(var)) else {
                panic!("a gradient is missing");
            };
            let diff = max_diff(k, c);
            assert!(diff < 1e-4, "gradient differs by {diff}");
        }
        Ok(kernel_grads)
    }

    /// The kernel against `x.matmul(wᵀ) + b` from candle's ops, with and
    /// without a bias.
    #[test]
    fn the_kernel_matches_the_composed_ops_and_their_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (7, 5), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 3, &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (7, 3), &dev)?;
        for bias in [None, Some(b.as_tensor())] {
            let kernel = linear_rows(&x, &w, bias)?;
            let mut composed = x.matmul(&w.t()?)?;
            let mut vars = vec![&x, &w];
            if let Some(bias) = bias {
                composed = composed.broadcast_add(bias)?;
                vars.push(&b);
            }
            let grads = assert_agree(kernel, composed, &weights, &vars)?;
            assert_eq!(
                grads.get(&b).is_some(),
                bias.is_some(),
                "a bias gets a gradient exactly when it is used"
            );
        }
        Ok(())
    }

    /// Attention's batched form, [B, H, Tq, dh] against [B, H, Tk, dh].
    #[test]
    fn the_batched_product_matches_candles_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6, 5), &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (2, 3, 4, 6), &dev)?;
        let composed = a.matmul(&b.t()?)?;
        assert_agree(matmul_t(&a, &b)?, composed, &weights, &[&a, &b])?;
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4), DType::F32, &dev)?;
        let w = Tensor::zeros((3, 5), DType::F32, &dev)?;
        assert!(linear_rows(&x, &w, None).is_err());
        let w = Tensor::zeros((3, 4), DType::F32, &dev)?;
        let b = Tensor::zeros(2, DType::F32, &dev)?;
        assert!(linear_rows(&x, &w, Some(&b)).is_err());
        let (batched_x, batched_w) = (
            Tensor::zeros((2, 2, 4), DType::F32, &dev)?,
            Tensor::zeros((2, 3, 4), DType::F32, &dev)?,
        );
        let b = Tensor::zeros(3, DType::F32, &dev)?;
        let refused = linear_rows(&batched_x, &batched_w, Some(&b));
        assert!(refused.is_err(), "a bias needs 2-D rows and weight");
        let q = Tensor::zeros((2, 3, 4, 5), DType::F32, &dev)?;
        let k = Tensor::zeros((2, 2, 6, 5), DType::F32, &dev)?;
        assert!(matmul_t(&q, &k).is_err(), "different leading axes");
        Ok(())
    }

    /// Inference's contiguous `Wᵀ` and training's kernel give the same rows,
    /// for 2-D and 3-D inputs and a single row (which inference multiplies
    /// row by row).
    #[test]
    fn inference_and_training_layers_agree() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (6, 4), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 6, &dev)?;
        let inference = Linear::from_weights(w.clone(), Some(b.clone()), true)?;
        let training = Linear::from_weights(w, Some(b), false)?;
        for shape in [vec![5, 4], vec![2, 3, 4], vec![1, 4], vec![1, 1, 4]] {
            let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
            let (a, t) = (inference.forward(&x)?, training.forward(&x)?);
            assert_eq!(a.dims(), t.dims());
            assert_eq!(*a.dims().last().expect("an axis"), 6);
            assert!(max_diff(&a, &t) < 1e-5);
        }
        Ok(())
    }
}
