//! `x W` row by row, for decoding one image, which multiplies a
//! single row by each weight per token.
//!
//! gemm's paths for one row keep the output in memory and load, add to and
//! store all of it once per input value (its column-major matrix–vector
//! product), or reduce each output across a vector register (its horizontal
//! kernels); in a profile of greedy decoding at batch 1 they took 42% of the
//! time. Here each block of outputs is summed in registers over the whole
//! input and stored once, so nothing but the weight is read
//! (BENCHMARKS.md, "Products of one row"). The weight is read once per row,
//! so from two rows on gemm is the faster.
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::fused::{f32_elements, on_cpu_f32};

/// `rows W` for rows [M, K] and `w_t` = W [K, N]: a tensor [M, N] with no
/// gradient, for inference. `None` where the kernel does not apply (not f32
/// on the CPU), for the caller's general product.
pub fn row_by_row_product(rows: &Tensor, w_t: &Tensor) -> Result<Option<Tensor>> {
    if !on_cpu_f32(rows) || !on_cpu_f32(w_t) {
        return Ok(None);
    }
    let product = rows
        .contiguous()?
        .apply_op2_no_bwd(&w_t.contiguous()?, &RowByRow)?;
    Ok(Some(product))
}

struct RowByRow;

impl RowByRow {
    const NAME: &'static str = "fusecap-row-by-row";
}

impl CustomOp2 for RowByRow {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[m, k], &[k_w, n]) = (x_layout.dims(), w_layout.dims()) else {
            bail!(
                "{}: expects rows [M, K] and a weight [K, N], got {:?} and {:?}",
                Self::NAME,
                x_layout.dims(),
                w_layout.dims()
            );
        };
        if k != k_w {
            bail!(
                "{}: rows of {k} values against a weight of {k_w} rows",
                Self::NAME
            );
        }
        let x = f32_elements(x, x_layout, Self::NAME)?;
        let w = f32_elements(w, w_layout, Self::NAME)?;
        let mut y = vec![0f32; m * n];
        let weight = Weight { values: w, n };
        for r in 0..m {
            weight.row_times(&x[r * k..(r + 1) * k], &mut y[r * n..(r + 1) * n]);
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

/// W [K, N], row-major.
struct Weight<'a> {
    values: &'a [f32],
    n: usize,
}

impl Weight<'_> {
    /// `y = x W` for one row x [K], y [N]; the widest vector
    /// instructions the CPU has, chosen at run time.
    fn row_times(&self, x: &[f32], y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                return unsafe { self.row_times_avx512(x, y) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { self.row_times_avx2(x, y) };
            }
        }
        self.blocked::<32, false>(x, y)
    }

    // Blocks of 8 vector registers of sums: enough independent sums to keep
    // both FMA units busy, with registers to spare for loads.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn row_times_avx512(&self, x: &[f32], y: &mut [f32]) {
        self.blocked::<128, true>(x, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_times_avx2(&self, x: &[f32], y: &mut [f32]) {
        self.blocked::<64, true>(x, y)
    }

    /// Outputs in blocks of `BLOCK`, each summed over every input in a local
    /// array the compiler keeps in vector registers. `FMA`: fused
    /// multiply–adds (only where the CPU has them; otherwise `mul_add` is a
    /// library call).
    #[inline(always)]
    fn blocked<const BLOCK: usize, const FMA: bool>(&self, x: &[f32], y: &mut [f32]) {
        let n = self.n;
        let mut start = 0;
        while start < n {
            let width = BLOCK.min(n - start);
            let mut sums = [0f32; BLOCK];
            let blocks = self
                .values
                .chunks_exact(n)
                .map(|row| &row[start..start + width]);
            if width == BLOCK {
                for (&xi, w_block) in x.iter().zip(blocks) {
                    let full: &[f32; BLOCK] = w_block.try_into().expect("a full block");
                    add_multiple::<FMA>(&mut sums, xi, full);
                }
            } else {
                for (&xi, w_block) in x.iter().zip(blocks) {
                    add_multiple::<FMA>(&mut sums[..width], xi, w_block);
                }
            }
            y[start..start + width].copy_from_slice(&sums[..width]);
            start += width;
        }
    }
}

/// `sums += a · values`.
#[inline(always)]
fn add_multiple<const FMA: bool>(sums: &mut [f32], a: f32, values: &[f32]) {
    for (s, &v) in sums.iter_mut().zip(values) {
        *s = multiply_add::<FMA>(a, v, *s);
    }
}

#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::max_diff;
    use candle_core::Device;

    /// Against candle's matmul for 1–5 rows, no inputs, and widths below, at
    /// and above each kernel's block (64, 128) and the portable one's (32).
    #[test]
    fn the_product_matches_candles_matmul() -> Result<()> {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 128, 512),
            (3, 128, 80),
            (1, 7, 1),
            (2, 33, 200),
            (5, 3, 129),
            (2, 0, 3),
        ] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (k, n), &dev)?;
            let expected = x.matmul(&w)?;
            let got = row_by_row_product(&x, &w)?.expect("f32 on the CPU");
            assert_eq!(got.dims(), &[m, n]);
            assert!(max_diff(&got, &expected) < 1e-4, "{m}x{k}x{n}");
        }
        Ok(())
    }

    #[test]
    fn the_portable_kernel_matches_too() -> Result<()> {
        let dev = Device::Cpu;
        let (k, n) = (19, 75);
        let x = Tensor::randn(0f32, 1.0, (1, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (k, n), &dev)?;
        let expected = x.matmul(&w)?;
        let mut y = vec![0f32; n];
        let (x_values, w_values) = (x.flatten_all()?.to_vec1()?, w.flatten_all()?.to_vec1()?);
        let weight = Weight {
            values: &w_values,
            n,
        };
        weight.blocked::<32, false>(&x_values, &mut y);
        let y = Tensor::from_vec(y, (1, n), &dev)?;
        assert!(max_diff(&y, &expected) < 1e-4);
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4), candle_core::DType::F32, &dev)?;
        let w = Tensor::zeros((5, 3), candle_core::DType::F32, &dev)?;
        assert!(row_by_row_product(&x, &w).is_err());
        Ok(())
    }
}
