//! Matrix products over the last two axes through gemm, written into memory
//! that is not zeroed first.
//!
//! candle's CPU matmul fills its output with zeros before gemm overwrites it
//! (gemm is told not to read it): about 4% of a training step went to that
//! `memset`. These products make the same gemm call with the same strides, so
//! their values are candle's to the bit; only the zeroing is gone.
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::fused::{f32_elements, on_cpu_f32};
use super::weight_grads::set_aside;

/// How an operand enters a product: as stored, or transposed (its last two
/// axes swapped, by strides only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    AsIs,
    Transposed,
}

/// `op(a) op(b)` for f32 CPU tensors [..., M, K]-shaped after `op`, with the
/// same leading axes; no gradient (for backward passes). Other devices and
/// dtypes use candle's matmul.
pub(crate) fn product(a: &Tensor, a_side: Side, b: &Tensor, b_side: Side) -> Result<Tensor> {
    if !kernel_applies(a, b) {
        return oriented(a, a_side)?.matmul(&oriented(b, b_side)?);
    }
    a.contiguous()?
        .apply_op2_no_bwd(&b.contiguous()?, &Product { a_side, b_side })
}

/// `a b` over the last two axes, recorded for backward, whose two products
/// are [`product`]s too. Used for attention's weights times values.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    recorded(a, b, Side::AsIs)
}

/// `a bᵀ` over the last two axes, for a [..., M, K] and b [..., N, K] with the
/// same leading axes: `a.matmul(&b.t())` as one recorded op on the CPU (the
/// same gemm call), without the transposed view's zeroed gradient and
/// strided sum in backward. The linear layers and attention's scores use it.
pub fn matmul_t(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    recorded(a, b, Side::Transposed)
}

fn recorded(a: &Tensor, b: &Tensor, b_side: Side) -> Result<Tensor> {
    if !kernel_applies(a, b) {
        return a.matmul(&oriented(b, b_side)?);
    }
    a.contiguous()?.apply_op2(
        &b.contiguous()?,
        Product {
            a_side: Side::AsIs,
            b_side,
        },
    )
}

/// Whether the gemm kernel applies: both operands f32 on the CPU, non-empty.
fn kernel_applies(a: &Tensor, b: &Tensor) -> bool {
    on_cpu_f32(a) && on_cpu_f32(b) && a.elem_count() > 0 && b.elem_count() > 0
}

fn oriented(x: &Tensor, side: Side) -> Result<Tensor> {
    match side {
        Side::AsIs => Ok(x.clone()),
        Side::Transposed => x.t(),
    }
}

/// The product `op(a) op(b)` of two contiguous operands.
pub(crate) struct Product {
    pub(crate) a_side: Side,
    pub(crate) b_side: Side,
}

/// One operand as gemm reads it: row and column strides within a matrix, and
/// the distance between consecutive matrices.
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    col_stride: usize,
    matrix_stride: usize,
}

impl Operand<'_> {
    /// Matrices stored `rows`×`cols` one after another, entering the
    /// product as they are or transposed.
    fn new(values: &[f32], (rows, cols): (usize, usize), side: Side) -> Operand<'_> {
        let (row_stride, col_stride) = match side {
            Side::AsIs => (cols, 1),
            Side::Transposed => (1, cols),
        };
        Operand {
            values,
            row_stride,
            col_stride,
            matrix_stride: rows * cols,
        }
    }
}

/// `op(a) op(b)` for one matrix each: a stored [m, k] (as is) or [k, m]
/// (transposed), b stored [k, n] or [n, k]; the result [m, n], row-major.
pub(crate) fn matrix_product(
    a: &[f32],
    a_side: Side,
    b: &[f32],
    b_side: Side,
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>> {
    if a.len() != m * k || b.len() != k * n {
        bail!(
            "{}: {} and {} values for {m}×{k} times {k}×{n}",
            Product::NAME,
            a.len(),
            b.len()
        );
    }
    let stored = |side, rows, cols| match side {
        Side::AsIs => (rows, cols),
        Side::Transposed => (cols, rows),
    };
    let lhs = Operand::new(a, stored(a_side, m, k), a_side);
    let rhs = Operand::new(b, stored(b_side, k, n), b_side);
    Ok(gemm_batch(1, (m, n, k), &lhs, &rhs))
}

impl Product {
    const NAME: &'static str = "fusecap-product";

    /// Rows and columns of one operand's matrices after `side`, and how gemm
    /// steps through them.
    fn operand<'a>(
        values: &'a [f32],
        layout: &Layout,
        side: Side,
    ) -> Result<((usize, usize), Operand<'a>)> {
        let dims = layout.dims();
        let rank = dims.len();
        if rank < 2 {
            bail!("{}: expects at least 2 axes, got {dims:?}", Self::NAME);
        }
        let stored = (dims[rank - 2], dims[rank - 1]);
        let shape = match side {
            Side::AsIs => stored,
            Side::Transposed => (stored.1, stored.0),
        };
        Ok((shape, Operand::new(values, stored, side)))
    }
}

/// `batch` products [m, k] × [k, n], as candle's CPU matmul calls gemm, into
/// a vector gemm writes in full.
fn gemm_batch(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    lhs: &Operand,
    rhs: &Operand,
) -> Vec<f32> {
    let len = batch * m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let parallelism = match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    };
    for item in 0..batch {
        let (a, b) = (
            &lhs.values[item * lhs.matrix_stride..],
            &rhs.values[item * rhs.matrix_stride..],
        );
        // SAFETY: `out` has room for `batch` matrices of m×n; gemm writes
        // every element of item `item`'s (with k = 0 it writes zeros) and,
        // told not to read the destination, never reads it. `a` and `b` hold
        // item `item`'s whole matrices: the shapes were checked against
        // contiguous layouts of exactly `batch` such matrices.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr().add(item * m * n),
                1,
                n as isize,
                false,
                a.as_ptr(),
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                b.as_ptr(),
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    // SAFETY: every element was written above.
    unsafe { out.set_len(len) };
    out
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a_dims, b_dims) = (a_layout.dims(), b_layout.dims());
        let rank = a_dims.len();
        if b_dims.len() != rank || rank < 2 || a_dims[..rank - 2] != b_dims[..rank - 2] {
            bail!(
                "{}: expects operands with the same leading axes, got {a_dims:?} and {b_dims:?}",
                Self::NAME
            );
        }
        let a_values = f32_elements(a, a_layout, Self::NAME)?;
        let b_values = f32_elements(b, b_layout, Self::NAME)?;
        let ((m, k), lhs) = Self::operand(a_values, a_layout, self.a_side)?;
        let ((k_b, n), rhs) = Self::operand(b_values, b_layout, self.b_side)?;
        if k != k_b {
            bail!("{}: {m}×{k} times {k_b}×{n}", Self::NAME);
        }
        let batch: usize = a_dims[..rank - 2].iter().product();
        let values = gemm_batch(batch, (m, n, k), &lhs, &rhs);
        let mut dims = a_dims[..rank - 2].to_vec();
        dims.extend([m, n]);
        Ok((CpuStorage::F32(values), Shape::from(dims)))
    }

    /// For `y = a b`: da = dy bᵀ and db = aᵀ dy; for `y = a bᵀ`: da = dy b
    /// and db = dyᵀ a. A weight's gradient is set aside where training's
    /// backward pass collects them (`weight_grads`).
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db) = match (self.a_side, self.b_side) {
            (Side::AsIs, Side::AsIs) => (
                product(grad_y, Side::AsIs, b, Side::Transposed)?,
                product(a, Side::Transposed, grad_y, Side::AsIs)?,
            ),
            (Side::AsIs, Side::Transposed) => product_t_grads(a, b, grad_y)?,
            _ => bail!("{}: backward is defined for a b and a bᵀ", Self::NAME),
        };
        Ok((Some(da), set_aside(b, db)?))
    }
}

/// The gradients of `y = a bᵀ`: da = dy b and db = dyᵀ a.
pub(crate) fn product_t_grads(a: &Tensor, b: &Tensor, grad_y: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((
        product(grad_y, Side::AsIs, b, Side::AsIs)?,
        product(grad_y, Side::Transposed, a, Side::AsIs)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::{assert_same_gradients, bits};
    use candle_core::{Device, Var};

    /// Every orientation against candle's matmul of the transposed views, to
    /// the bit, for a plain and a batched shape.
    #[test]
    fn products_are_candles_to_the_bit() -> Result<()> {
        let dev = Device::Cpu;
        for lead in [vec![], vec![2, 3]] {
            let shape = |r: usize, c: usize| [lead.clone(), vec![r, c]].concat();
            for (a_side, b_side) in [
                (Side::AsIs, Side::AsIs),
                (Side::AsIs, Side::Transposed),
                (Side::Transposed, Side::AsIs),
                (Side::Transposed, Side::Transposed),
            ] {
                let (m, k, n) = (5, 37, 9);
                let a_shape = if a_side == Side::AsIs {
                    shape(m, k)
                } else {
                    shape(k, m)
                };
                let b_shape = if b_side == Side::AsIs {
                    shape(k, n)
                } else {
                    shape(n, k)
                };
                let a = Tensor::randn(0f32, 1.0, a_shape, &dev)?;
                let b = Tensor::randn(0f32, 1.0, b_shape, &dev)?;
                let expected = oriented(&a, a_side)?.matmul(&oriented(&b, b_side)?)?;
                let got = product(&a, a_side, &b, b_side)?;
                assert_eq!(got.dims(), expected.dims());
                assert_eq!(
                    bits(&got),
                    bits(&expected),
                    "{a_side:?} {b_side:?} {lead:?}"
                );
            }
        }
        Ok(())
    }

    /// The recorded products' values and gradients are candle's, to the bit.
    #[test]
    fn recorded_products_and_their_gradients_are_candles() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 6), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 6, 3), &dev)?)?;
        let b_rows = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6), &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?;
        let cases = [
            (matmul(&a, &b)?, a.matmul(&b)?, &b),
            (matmul_t(&a, &b_rows)?, a.matmul(&b_rows.t()?)?, &b_rows),
        ];
        for (ours, candles, b) in cases {
            assert_eq!(bits(&ours), bits(&candles));
            let ours = (ours * &weights)?.sum_all()?.backward()?;
            let candles = (candles * &weights)?.sum_all()?.backward()?;
            assert_same_gradients(&ours, &candles, &[&a, b]);
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let zeros = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev);
        assert!(product(&zeros(&[2, 3])?, Side::AsIs, &zeros(&[4, 5])?, Side::AsIs).is_err());
        let (a, b) = (zeros(&[2, 3, 4])?, zeros(&[3, 4, 5])?);
        assert!(
            product(&a, Side::AsIs, &b, Side::AsIs).is_err(),
            "leading axes differ"
        );
        Ok(())
    }
}
