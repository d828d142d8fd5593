//! A backward pass that keeps the weights' gradients out of candle's running
//! sums.
//!
//! candle's backward adds every gradient it computes into a per-tensor sum,
//! and the first contribution to a sum is added to a freshly zeroed tensor of
//! the same size: for a weight that is a zeroed copy and an addition of the
//! whole weight, once per backward pass. Data-parallel training runs one pass
//! per worker, so this weight-sized work grows with the number of workers
//! while the rest of the step is shared out (BENCHMARKS.md, "Weight gradients
//! set aside"). Inside [`backward`], the products that multiply by a weight
//! (`linear::ProductT`) hand the weight's gradient to this module instead,
//! which keeps the first contribution as it is and adds any later one to it.
use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, TensorId};

/// (weight, its gradient so far), by the weight's id.
type SetAside = HashMap<TensorId, (Tensor, Tensor)>;

thread_local! {
    /// `Some` while [`backward`] runs on this thread.
    static SET_ASIDE: RefCell<Option<SetAside>> = const { RefCell::new(None) };
}

/// `loss.backward()`, with the gradients of variables that products hand to
/// [`set_aside`] added to the store at the end. A weight's contributions are
/// summed in the order the pass computes them, so the gradients are
/// `loss.backward()`'s bit for bit, except for a weight that also receives
/// gradient through candle's own ops (a tied embedding): it gets candle's sum
/// plus the set-aside one, which differs only in the order of float additions.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let collecting = Collecting::start();
    let grads = loss.backward();
    let set_aside = collecting.finish();
    let mut grads = grads?;
    for (weight, grad) in set_aside.into_values() {
        let total = match grads.remove(&weight) {
            Some(through_candle) => (through_candle + grad)?,
            None => grad,
        };
        grads.insert(&weight, total);
    }
    Ok(grads)
}

/// This thread's store while [`backward`] runs. Dropped, it empties the
/// store however the pass ended, so that a pass that panics (workers catch
/// panics and keep their threads) cannot leave later passes on the thread
/// setting gradients aside that no one collects.
struct Collecting;

impl Collecting {
    fn start() -> Self {
        SET_ASIDE.with(|s| *s.borrow_mut() = Some(HashMap::new()));
        Collecting
    }

    fn finish(self) -> SetAside {
        SET_ASIDE
            .with(|s| s.borrow_mut().take())
            .unwrap_or_default()
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        SET_ASIDE.with(|s| s.borrow_mut().take());
    }
}

/// Takes `grad`, the gradient of `arg` from one op, when `arg` is a variable
/// and [`backward`] is running on this thread; otherwise gives it back for
/// candle to sum.
pub(crate) fn set_aside(arg: &Tensor, grad: Tensor) -> Result<Option<Tensor>> {
    if !arg.is_variable() {
        return Ok(Some(grad));
    }
    SET_ASIDE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(set_aside) = s.as_mut() else {
            return Ok(Some(grad));
        };
        match set_aside.get_mut(&arg.id()) {
            Some((_, sum)) => *sum = (&*sum + grad)?,
            None => {
                set_aside.insert(arg.id(), (arg.clone(), grad));
            }
        }
        Ok(None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linear::linear_rows;
    use candle_core::{DType, Device, Var};

    /// Each variable's gradient from [`backward`] and from plain `backward`,
    /// flattened.
    fn both_ways(loss: &Tensor, vars: &[&Var]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let (plain, kept) = (loss.backward()?, backward(loss)?);
        vars.iter()
            .map(|var| {
                let (Some(p), Some(k)) = (plain.get(var), kept.get(var)) else {
                    panic!("a gradient is missing");
                };
                Ok((p.flatten_all()?.to_vec1()?, k.flatten_all()?.to_vec1()?))
            })
            .collect()
    }

    fn vars(dev: &Device) -> Result<[Var; 3]> {
        Ok([
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (7, 5), dev)?)?,
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 5), dev)?)?,
            Var::from_tensor(&Tensor::randn(0f32, 1.0, 5, dev)?)?,
        ])
    }

    /// A weight used by two products (with and without a bias): every
    /// gradient is plain `backward`'s, bit for bit.
    #[test]
    fn gradients_equal_candles_own_backward() -> Result<()> {
        let [x, w, b] = vars(&Device::Cpu)?;
        let hidden = linear_rows(&x, &w, Some(&b))?.relu()?;
        let loss = linear_rows(&hidden, &w, None)?.sqr()?.sum_all()?;
        for (plain, kept) in both_ways(&loss, &[&x, &w, &b])? {
            assert_eq!(plain, kept);
        }
        Ok(())
    }

    /// A weight used by a product and by candle's own matmul: its gradient
    /// is the same sum, added in another order.
    #[test]
    fn a_weight_also_used_by_candles_ops_gets_both_parts() -> Result<()> {
        let [x, w, b] = vars(&Device::Cpu)?;
        let y = (linear_rows(&x, &w, Some(&b))? + x.matmul(w.as_tensor())?)?;
        let loss = y.sqr()?.sum_all()?;
        for (plain, kept) in both_ways(&loss, &[&x, &w, &b])? {
            let scale = plain.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = plain
                .iter()
                .zip(&kept)
                .fold(0f32, |m, (p, k)| m.max((p - k).abs()));
            assert!(diff <= 1e-6 * scale, "differs by {diff} at scale {scale}");
        }
        Ok(())
    }

    /// An op whose backward panics.
    struct PanicsInBackward;

    impl candle_core::CustomOp1 for PanicsInBackward {
        fn name(&self) -> &'static str {
            "panics-in-backward"
        }

        fn cpu_fwd(
            &self,
            storage: &candle_core::CpuStorage,
            layout: &candle_core::Layout,
        ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
            Ok((storage.clone(), layout.shape().clone()))
        }

        fn bwd(&self, _arg: &Tensor, _res: &Tensor, _grad: &Tensor) -> Result<Option<Tensor>> {
            panic!("backward panics")
        }
    }

    #[test]
    fn a_pass_that_panics_leaves_later_passes_to_candle() -> Result<()> {
        let [x, w, _] = vars(&Device::Cpu)?;
        let loss = linear_rows(&x, &w, None)?
            .apply_op1(PanicsInBackward)?
            .sum_all()?;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backward(&loss)));
        assert!(caught.is_err(), "the pass panics");
        let grad = Tensor::ones((5, 5), DType::F32, &Device::Cpu)?;
        assert!(
            set_aside(&w, grad)?.is_some(),
            "after the panic no pass is collecting on this thread"
        );
        Ok(())
    }

    #[test]
    fn products_outside_the_pass_leave_gradients_to_candle() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::ones((3, 4), DType::F32, &dev)?)?;
        let grad = Tensor::ones((3, 4), DType::F32, &dev)?;
        assert!(set_aside(&w, grad.clone())?.is_some());
        let not_a_variable = Tensor::ones((3, 4), DType::F32, &dev)?;
        assert!(set_aside(&not_a_variable, grad)?.is_some());
        Ok(())
    }
}
