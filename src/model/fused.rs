//! Softmax over the last axis (with the attention scale folded in), its log,
//! LayerNorm and ReLU as single CPU kernels, each with its own backward kernel.
//!
//! Composed from candle's tensor ops, a LayerNorm is 9 ops forward and more
//! backward, each allocating a tensor of the activations' size, and the
//! gradients of its weight and bias are sums over the leading axes, which
//! candle reduces element by element with a division per element (11% of a
//! training step in a profile). The kernels make training 1.15–1.26× faster
//! (BENCHMARKS.md, "Training kernels"). candle's own backward pass adds two
//! or three tensors of the activations' size per op (a zeroed gradient, the
//! sum, and for ReLU a comparison and its cast), so every op folded into a
//! kernel saves memory traffic. On other devices and dtypes the composed
//! versions run instead.
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};

/// Whether the CPU kernels apply: f32 on the CPU.
pub(crate) fn on_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `op` on `x` where the kernels apply (non-empty f32 on the CPU), else the
/// composed `fallback`.
fn kernel_or(
    x: &Tensor,
    op: impl CustomOp1 + Send + Sync + 'static,
    fallback: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    if !on_cpu_f32(x) || x.elem_count() == 0 {
        return fallback();
    }
    x.contiguous()?.apply_op1(op)
}

/// The f32 elements of a contiguous CPU tensor.
pub(crate) fn f32_elements<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expects f32 elements")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expects a contiguous tensor"),
    }
}

/// `f32_elements`, writable (for in-place ops).
pub(crate) fn f32_elements_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expects f32 elements")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("{op}: expects a contiguous tensor"),
    }
}

/// The length of the last axis, which must be at least 1.
fn last_dim(layout: &Layout, op: &str) -> Result<usize> {
    match layout.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!(
            "{op}: expects a non-empty last axis, got {:?}",
            layout.dims()
        ),
    }
}

/// `softmax(x)` over the last axis.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    attention_softmax(x, None, 1.0)
}

/// `softmax(scale · (scores + mask))` over the last axis, with no gradient
/// for the mask (broadcastable to the scores). Attention's `softmax(Q Kᵀ /
/// sqrt(d) + mask)` is this, in one op instead of four, with the same values
/// wherever the mask is 0.
pub fn attention_softmax(scores: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    if !on_cpu_f32(scores) || scores.elem_count() == 0 {
        let masked = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores.clone(),
        };
        return candle_nn::ops::softmax(&(masked * scale)?, D::Minus1);
    }
    let scores = scores.contiguous()?;
    let op = Softmax {
        scale: scale as f32,
    };
    match mask {
        Some(mask) if mask.dtype() == DType::F32 => {
            scores.apply_op2(&mask.broadcast_as(scores.shape())?, op)
        }
        Some(mask) => bail!("attention mask: expects f32, got {:?}", mask.dtype()),
        None => scores.apply_op1(op),
    }
}

struct Softmax {
    scale: f32,
}

impl Softmax {
    /// Scales each row, whose mask has already been added, and normalises it.
    fn normalise_rows(&self, values: &mut [f32], d: usize) {
        for row in values.chunks_exact_mut(d) {
            let mut max = f32::NEG_INFINITY;
            for v in row.iter_mut() {
                *v *= self.scale;
                max = max.max(*v);
            }
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }

    fn grad(&self, y: &Tensor, grad_y: &Tensor) -> Result<Tensor> {
        let grad = RowGrad::softmax(self.scale);
        y.apply_op2_no_bwd(&grad_y.contiguous()?, &grad)
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fusecap-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = CustomOp1::name(self);
        let d = last_dim(layout, op)?;
        let mut out = f32_elements(storage, layout, op)?.to_vec();
        self.normalise_rows(&mut out, d);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.grad(y, grad_y)?))
    }
}

/// The masked form: the second argument is the mask, broadcast to the scores.
impl CustomOp2 for Softmax {
    fn name(&self) -> &'static str {
        "fusecap-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        m_storage: &CpuStorage,
        m_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = CustomOp2::name(self);
        let d = last_dim(x_layout, op)?;
        let mut out = f32_elements(x_storage, x_layout, op)?.to_vec();
        let CpuStorage::F32(mask) = m_storage else {
            bail!("{op}: expects an f32 mask")
        };
        if m_layout.dims() != x_layout.dims() {
            bail!(
                "{op}: mask {:?} for scores {:?}",
                m_layout.dims(),
                x_layout.dims()
            );
        }
        let column_stride = m_layout.stride().last().copied().unwrap_or(0);
        for (row, start) in out.chunks_exact_mut(d).zip(row_offsets(m_layout)) {
            for (j, v) in row.iter_mut().enumerate() {
                *v += mask[start + j * column_stride];
            }
        }
        self.normalise_rows(&mut out, d);
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.grad(y, grad_y)?), None))
    }
}

/// Where each row (all axes but the last) of a strided layout starts in its
/// storage, in row-major order.
fn row_offsets(layout: &Layout) -> Vec<usize> {
    let dims = layout.dims();
    let lead = dims.len().saturating_sub(1);
    let (dims, strides) = (&dims[..lead], &layout.stride()[..lead]);
    let mut offsets = vec![layout.start_offset()];
    for (&n, &stride) in dims.iter().zip(strides) {
        offsets = offsets
            .iter()
            .flat_map(|&base| (0..n).map(move |i| base + i * stride))
            .collect();
    }
    offsets
}

/// A backward kernel: a forward value (`y` or `x`) and its incoming
/// gradient, of one shape, mapped by `row` to the input's gradient, row by
/// row (rows of the last axis).
struct RowGrad {
    name: &'static str,
    row: Box<RowFn>,
}

/// `(value row, gradient row, input-gradient row to fill)`.
type RowFn = dyn Fn(&[f32], &[f32], &mut [f32]);

impl RowGrad {
    /// `dx = scale · y ⊙ (dy − Σ dy ⊙ y)`.
    fn softmax(scale: f32) -> Self {
        RowGrad {
            name: "fusecap-softmax-grad",
            row: Box::new(move |y, g, dx| {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = scale * (y * (g - dot));
                }
            }),
        }
    }

    /// `dx = dy − exp(y) Σ dy`.
    fn log_softmax() -> Self {
        RowGrad {
            name: "fusecap-log-softmax-grad",
            row: Box::new(|y, g, dx| {
                let total: f32 = g.iter().sum();
                for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = g - y.exp() * total;
                }
            }),
        }
    }

    /// `dx = dy` where `x ≥ 0`, else 0.
    fn relu() -> Self {
        RowGrad {
            name: "fusecap-relu-grad",
            // A bit mask instead of a branch: the signs of x are random, and
            // the branch's mispredictions made this kernel 6.6% of a training
            // step (BENCHMARKS.md, "Training kernels").
            row: Box::new(|x, g, dx| {
                for ((dx, x), g) in dx.iter_mut().zip(x).zip(g) {
                    let keep = u32::from(*x >= 0.0).wrapping_neg();
                    *dx = f32::from_bits(g.to_bits() & keep);
                }
            }),
        }
    }
}

impl CustomOp2 for RowGrad {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        v_storage: &CpuStorage,
        v_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(v_layout, self.name)?;
        let v = f32_elements(v_storage, v_layout, self.name)?;
        let g = f32_elements(g_storage, g_layout, self.name)?;
        if v.len() != g.len() {
            bail!(
                "{}: {} values but {} gradients",
                self.name,
                v.len(),
                g.len()
            );
        }
        let mut dx = vec![0f32; v.len()];
        for ((dx, v), g) in dx
            .chunks_exact_mut(d)
            .zip(v.chunks_exact(d))
            .zip(g.chunks_exact(d))
        {
            (self.row)(v, g, dx);
        }
        Ok((CpuStorage::F32(dx), v_layout.shape().clone()))
    }
}

/// `log softmax(x)` over the last axis: the training loss's, one op where
/// candle composes six.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    kernel_or(x, LogSoftmax, || candle_nn::ops::log_softmax(x, D::Minus1))
}

struct LogSoftmax;

impl CustomOp1 for LogSoftmax {
    fn name(&self) -> &'static str {
        "fusecap-log-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(layout, self.name())?;
        let mut out = f32_elements(storage, layout, self.name())?.to_vec();
        for row in out.chunks_exact_mut(d) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for v in row.iter_mut() {
                *v -= max;
                sum += v.exp();
            }
            let log_sum = sum.ln();
            for v in row.iter_mut() {
                *v -= log_sum;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(
            &grad_y.contiguous()?,
            &RowGrad::log_softmax(),
        )?))
    }
}

/// `max(x, 0)`; its gradient passes where `x ≥ 0`, as candle's ReLU does.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    kernel_or(x, Relu, || x.relu())
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "fusecap-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_elements(storage, layout, self.name())?;
        let out = x.iter().map(|v| v.max(0.0)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(relu_grad(x, grad_y)?))
    }
}

/// ReLU's backward kernel: `dy` where `x ≥ 0`, else 0.
pub(crate) fn relu_grad(x: &Tensor, grad_y: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(&grad_y.contiguous()?, &RowGrad::relu())
}

/// `(x − mean) / sqrt(var + eps) · weight + bias` over the last axis, with
/// gradients for all three.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if !on_cpu_f32(x) || x.elem_count() == 0 {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        return normed.broadcast_mul(weight)?.broadcast_add(bias);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNorm { eps: eps as f32 },
    )
}

struct LayerNorm {
    eps: f32,
}

/// The mean of `row` and `sqrt(var + eps)`.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, (var + eps).sqrt())
}

/// The elements of a LayerNorm parameter, which must match the last axis.
fn parameter<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    d: usize,
    what: &str,
    op: &str,
) -> Result<&'a [f32]> {
    let values = f32_elements(storage, layout, op)?;
    if values.len() != d {
        bail!(
            "{op}: {what} has {} values for a last axis of {d}",
            values.len()
        );
    }
    Ok(values)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fusecap-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let d = last_dim(x_layout, op)?;
        let x = f32_elements(x_storage, x_layout, op)?;
        let weight = parameter(w_storage, w_layout, d, "the weight", op)?;
        let bias = parameter(b_storage, b_layout, d, "the bias", op)?;
        let mut out = vec![0f32; x.len()];
        for (out, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            let (mean, std) = moments(x, self.eps);
            for (((out, x), w), b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
                *out = (x - mean) / std * w + b;
            }
        }
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = weight.elem_count();
        let rows = x.elem_count() / d;
        let packed = x.apply_op3_no_bwd(
            weight,
            &grad_y.contiguous()?,
            &LayerNormGrad { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows * d)?.reshape(x.shape())?;
        let dweight = packed.narrow(0, rows * d, d)?;
        let dbias = packed.narrow(0, rows * d + d, d)?;
        Ok((Some(dx), Some(dweight), Some(dbias)))
    }
}

/// The gradients of [`LayerNorm`] for x, the weight and the bias, packed
/// into one vector in that order (one kernel can return one tensor).
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fusecap-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let d = last_dim(x_layout, op)?;
        let x = f32_elements(x_storage, x_layout, op)?;
        let weight = parameter(w_storage, w_layout, d, "the weight", op)?;
        let g = f32_elements(g_storage, g_layout, op)?;
        if g.len() != x.len() {
            bail!("{op}: {} inputs but {} gradients", x.len(), g.len());
        }
        let n = x.len();
        let mut packed = vec![0f32; n + 2 * d];
        let (dx, params) = packed.split_at_mut(n);
        let (dweight, dbias) = params.split_at_mut(d);
        let mut x_hat = vec![0f32; d];
        let mut g_hat = vec![0f32; d];
        for ((dx, x), g) in dx
            .chunks_exact_mut(d)
            .zip(x.chunks_exact(d))
            .zip(g.chunks_exact(d))
        {
            let (mean, std) = moments(x, self.eps);
            // Elementwise first, then the two sums in a loop of their own
            // (in the same order): float sums keep a loop from being
            // vectorised, so mixing them in made the whole row scalar. The
            // slices of length d let the compiler drop the bounds checks.
            let (x, g, weight) = (&x[..d], &g[..d], &weight[..d]);
            let (x_hat, g_hat) = (&mut x_hat[..d], &mut g_hat[..d]);
            let (dbias, dweight) = (&mut dbias[..d], &mut dweight[..d]);
            for j in 0..d {
                x_hat[j] = (x[j] - mean) / std;
                g_hat[j] = g[j] * weight[j];
                dbias[j] += g[j];
                dweight[j] += g[j] * x_hat[j];
            }
            let (mut mean_g_hat, mut mean_g_hat_x_hat) = (0f32, 0f32);
            for (g_hat, x_hat) in g_hat.iter().zip(x_hat.iter()) {
                mean_g_hat += g_hat;
                mean_g_hat_x_hat += g_hat * x_hat;
            }
            mean_g_hat /= d as f32;
            mean_g_hat_x_hat /= d as f32;
            for j in 0..d {
                dx[j] = (g_hat[j] - mean_g_hat - x_hat[j] * mean_g_hat_x_hat) / std;
            }
        }
        Ok((CpuStorage::F32(packed), Shape::from(n + 2 * d)))
    }
}

/// The bits of a tensor's f32 values, for comparisons to the bit.
#[cfg(test)]
pub(crate) fn bits(x: &Tensor) -> Vec<u32> {
    let values: Vec<f32> = x.flatten_all().and_then(|v| v.to_vec1()).expect("f32");
    values.into_iter().map(f32::to_bits).collect()
}

/// Asserts that two backward passes gave each of `vars` a gradient, the same
/// to the bit.
#[cfg(test)]
pub(crate) fn assert_same_gradients(
    ours: &candle_core::backprop::GradStore,
    theirs: &candle_core::backprop::GradStore,
    vars: &[&candle_core::Var],
) {
    for var in vars {
        let (Some(o), Some(t)) = (ours.get(var), theirs.get(var)) else {
            panic!("a gradient is missing");
        };
        assert_eq!(o.dims(), t.dims());
        assert_eq!(bits(o), bits(t));
    }
}

/// The largest absolute difference between two tensors of one shape.
#[cfg(test)]
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("difference")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The kernels give the composed ops' values and gradients, on inputs
    /// with masked (-1e9) entries and rows far from zero mean.
    #[test]
    fn kernels_match_the_composed_ops_and_their_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let shift = Tensor::arange(0f32, 5.0, &dev)?.reshape((1, 5, 1))?;
        let x = (Tensor::randn(0f32, 2.0, (3, 5, 16), &dev)?.broadcast_add(&(shift * 40.0)?))?;
        let mask = Tensor::from_vec(
            (0..16)
                .map(|j| if j > 12 { -1e9f32 } else { 0.0 })
                .collect(),
            16,
            &dev,
        )?;
        let x = Var::from_tensor(&x)?;
        let weight = Var::from_tensor(&Tensor::randn(1f32, 0.3, 16, &dev)?)?;
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.3, 16, &dev)?)?;
        let upstream = Tensor::randn(0f32, 1.0, (3, 5, 16), &dev)?;

        let run = |fused: bool| -> Result<Vec<Tensor>> {
            let normed = if fused {
                layer_norm(&x, &weight, &bias, 1e-5)?
            } else {
                let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
                normed.broadcast_mul(&weight)?.broadcast_add(&bias)?
            };
            let scores = normed.broadcast_add(&mask)?;
            let probs = if fused {
                softmax_last_dim(&scores)?
            } else {
                candle_nn::ops::softmax(&scores, D::Minus1)?
            };
            let loss = ((&probs * &upstream)?.sum_all()? + (&normed * &upstream)?.sum_all()?)?;
            let grads = loss.backward()?;
            let grad = |v: &Var| {
                grads
                    .get(v.as_tensor())
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
            };
            Ok(vec![normed, probs, grad(&x)?, grad(&weight)?, grad(&bias)?])
        };
        let (fused, composed) = (run(true)?, run(false)?);
        let names = ["layer norm", "softmax", "d x", "d weight", "d bias"];
        for ((name, a), b) in names.iter().zip(&fused).zip(&composed) {
            assert_eq!(a.dims(), b.dims(), "{name}");
            let scale = 1.0 + max_diff(b, &b.zeros_like()?);
            let diff = max_diff(a, b);
            assert!(
                diff <= 2e-5 * scale,
                "{name}: differs by {diff} (scale {scale})"
            );
        }
        // Masked entries get no probability and no gradient.
        let probs = fused[1].narrow(D::Minus1, 13, 3)?;
        assert_eq!(max_diff(&probs, &probs.zeros_like()?), 0.0);
        Ok(())
    }

    /// ReLU, the masked, scaled softmax and the log softmax give candle's
    /// values and gradients: ReLU to the bit (zeros included), the softmax of
    /// `x` masked and scaled by the kernel as of `x` masked and scaled first,
    /// with a mask broadcast over the batch that masks one row whole.
    #[test]
    fn relu_and_the_softmaxes_match_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (4, 6, 10), &dev)?;
        // Exact zeros, where candle's ReLU passes the gradient.
        let x = Var::from_tensor(&x.broadcast_mul(&Tensor::new(
            &[1f32, 1., 0., 1., 1., 1., 1., 0., 1., 1.],
            &dev,
        )?)?)?;
        let upstream = Tensor::randn(0f32, 1.0, (4, 6, 10), &dev)?;
        let scale = 1.0 / 32f64.sqrt();
        let mask: Vec<f32> = (0..60)
            .map(|i| if i / 10 == 2 || i % 10 > 6 { -1e9 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (6, 10), &dev)?;
        let run = |fused: bool| -> Result<Vec<Tensor>> {
            let (activated, probs, logp) = if fused {
                (
                    relu(&x)?,
                    attention_softmax(&x, Some(&mask), scale)?,
                    log_softmax_last_dim(&x)?,
                )
            } else {
                (
                    x.relu()?,
                    candle_nn::ops::softmax(&(x.broadcast_add(&mask)? * scale)?, D::Minus1)?,
                    candle_nn::ops::log_softmax(&x, D::Minus1)?,
                )
            };
            let loss = ((&activated * &upstream)?.sum_all()?
                + (&probs * &upstream)?.sum_all()?
                + (&logp * &upstream)?.sum_all()?)?;
            let grad_x = loss
                .backward()?
                .get(x.as_tensor())
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))?;
            let relu_only = (&activated * &upstream)?.sum_all()?.backward()?;
            let relu_grad = relu_only
                .get(x.as_tensor())
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))?;
            Ok(vec![activated, probs, grad_x, relu_grad, logp])
        };
        let (fused, composed) = (run(true)?, run(false)?);
        assert_eq!(max_diff(&fused[0], &composed[0]), 0.0, "relu");
        assert_eq!(max_diff(&fused[3], &composed[3]), 0.0, "relu gradient");
        for (name, i) in [("masked softmax", 1), ("d x", 2), ("log softmax", 4)] {
            let diff = max_diff(&fused[i], &composed[i]);
            assert!(diff <= 2e-6, "{name}: differs by {diff}");
        }
        // Masked keys get nothing; the wholly masked row is uniform.
        let probs = &fused[1];
        for rows in [probs.narrow(1, 0, 2)?, probs.narrow(1, 3, 3)?] {
            let masked = rows.narrow(2, 7, 3)?;
            assert_eq!(max_diff(&masked, &masked.zeros_like()?), 0.0);
        }
        let uniform = probs.narrow(1, 2, 1)?;
        assert_eq!(
            max_diff(&uniform, &uniform.ones_like()?.affine(0.1, 0.0)?),
            0.0
        );
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_the_composed_ops() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 8), &Device::Cpu)?.to_dtype(DType::F64)?;
        let y = softmax_last_dim(&x)?;
        assert_eq!(y.dtype(), DType::F64);
        let sums = y.sum(D::Minus1)?.to_vec1::<f64>()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12), "{sums:?}");
        Ok(())
    }
}
