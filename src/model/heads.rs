//! Rows of a projection split into attention heads, and heads merged back
//! into rows, as one copy each.
//!
//! Composed from candle's ops, a split is a reshape, a transpose and a
//! contiguous copy, and a merge a transpose and a reshape; candle's backward
//! pass gives every one of them a zeroed gradient and a sum of the
//! activations' size, the transposes' through a strided copy. As one op with
//! the other as its backward, each costs one copy either way. The values are
//! the same to the bit (only copies).
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::fused::{f32_elements, on_cpu_f32};

/// [B·T, H·dh] rows -> [B, H, T, dh] heads, contiguous.
pub fn split_heads(rows: &Tensor, b: usize, t: usize, heads: usize) -> Result<Tensor> {
    let (n, d) = rows.dims2()?;
    if heads == 0 || d % heads != 0 || n != b * t {
        bail!("split_heads: rows {n}×{d} are not {b}×{t} rows of {heads} heads");
    }
    let dh = d / heads;
    if t == 1 {
        // One position (a decoding step): the two layouts are the same.
        return rows.reshape((b, heads, 1, dh));
    }
    if !on_cpu_f32(rows) || rows.elem_count() == 0 {
        return rows
            .reshape((b, t, heads, dh))?
            .transpose(1, 2)?
            .contiguous();
    }
    rows.contiguous()?.apply_op1(Heads {
        split: true,
        b,
        t,
        heads,
        dh,
    })
}

/// [B, H, T, dh] heads -> [B·T, H·dh] rows, contiguous.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, heads, t, dh) = x.dims4()?;
    if t == 1 {
        return x.reshape((b, heads * dh));
    }
    if !on_cpu_f32(x) || x.elem_count() == 0 {
        return x.transpose(1, 2)?.reshape((b * t, heads * dh));
    }
    x.contiguous()?.apply_op1(Heads {
        split: false,
        b,
        t,
        heads,
        dh,
    })
}

/// One permutation between rows [B, T, H, dh] and heads [B, H, T, dh].
struct Heads {
    /// rows -> heads when true, heads -> rows when false.
    split: bool,
    b: usize,
    t: usize,
    heads: usize,
    dh: usize,
}

impl Heads {
    fn inverse(&self) -> Heads {
        Heads {
            split: !self.split,
            ..*self
        }
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        match self.split {
            true => "fusecap-split-heads",
            false => "fusecap-merge-heads",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_elements(storage, layout, self.name())?;
        let Heads {
            b, t, heads, dh, ..
        } = *self;
        if x.len() != b * t * heads * dh {
            bail!(
                "{}: {} values for {b}×{t}×{heads}×{dh}",
                self.name(),
                x.len()
            );
        }
        // The output's axes 1 and 2 are the input's 2 and 1: walk the output
        // in order, copying dh values at a time.
        let (outer, inner) = if self.split { (heads, t) } else { (t, heads) };
        let mut out = Vec::with_capacity(x.len());
        for bi in 0..b {
            for o in 0..outer {
                for i in 0..inner {
                    let start = ((bi * inner + i) * outer + o) * dh;
                    out.extend_from_slice(&x[start..start + dh]);
                }
            }
        }
        let shape = match self.split {
            true => Shape::from((b, heads, t, dh)),
            false => Shape::from((b * t, heads * dh)),
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad_y.contiguous()?.apply_op1_no_bwd(&self.inverse())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// At one position (decoding) the split and the merge are reshapes.
    #[test]
    fn one_position_splits_and_merges_as_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, dh) = (3, 4, 5);
        let rows = Tensor::randn(0f32, 1.0, (b, h * dh), &dev)?;
        let split = split_heads(&rows, b, 1, h)?;
        let composed = rows.reshape((b, 1, h, dh))?.transpose(1, 2)?.contiguous()?;
        assert_eq!(split.dims(), &[b, h, 1, dh]);
        assert_eq!(
            split.flatten_all()?.to_vec1::<f32>()?,
            composed.flatten_all()?.to_vec1::<f32>()?
        );
        // A head-major view whose memory order is not the rows' order.
        let strided = composed.transpose(0, 1)?.contiguous()?.transpose(0, 1)?;
        let merged = merge_heads(&strided)?;
        assert_eq!(merged.dims(), &[b, h * dh]);
        assert_eq!(
            merged.flatten_all()?.to_vec1::<f32>()?,
            rows.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn split_and_merge_match_the_composed_ops_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let (b, t, h, dh) = (2, 3, 4, 5);
        let rows = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b * t, h * dh), &dev)?)?;
        let split = split_heads(&rows, b, t, h)?;
        let composed = rows.reshape((b, t, h, dh))?.transpose(1, 2)?.contiguous()?;
        assert_eq!(split.dims(), &[b, h, t, dh]);
        assert_eq!(
            split.flatten_all()?.to_vec1::<f32>()?,
            composed.flatten_all()?.to_vec1::<f32>()?
        );
        let merged = merge_heads(&split)?;
        assert_eq!(merged.dims(), &[b * t, h * dh]);
        assert_eq!(
            merged.flatten_all()?.to_vec1::<f32>()?,
            rows.flatten_all()?.to_vec1::<f32>()?
        );
        // A weighted sum through split and merge: the gradient reaching the
        // rows is the weights, permuted back and forth.
        let weights = Tensor::randn(0f32, 1.0, (b, h, t, dh), &dev)?;
        let through_heads = (merge_heads(&(split_heads(&rows, b, t, h)? * &weights)?)?.sum_all())?;
        let grads = through_heads.backward()?;
        let expected = weights.transpose(1, 2)?.reshape((b * t, h * dh))?;
        let Some(grad) = grads.get(&rows) else {
            panic!("the rows get no gradient")
        };
        assert_eq!(
            grad.flatten_all()?.to_vec1::<f32>()?,
            expected.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn rows_that_do_not_split_are_refused() -> Result<()> {
        let rows = Tensor::zeros((6, 10), candle_core::DType::F32, &Device::Cpu)?;
        assert!(split_heads(&rows, 2, 3, 4).is_err());
        assert!(split_heads(&rows, 2, 2, 5).is_err());
        Ok(())
    }
}
