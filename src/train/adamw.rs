//! AdamW with decoupled weight decay and global-norm gradient clipping.
//!
//! On the CPU with f32 weights the update is one in-place pass over each
//! parameter: it adds the shards' gradients, then updates both moments and
//! the weight, instead of some seventeen candle operations that each allocate
//! a tensor. Other devices and dtypes use the same formulas composed from
//! candle ops. BENCHMARKS.md has what this changed in training speed.
use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor, Var};
use candle_nn::VarMap;

use crate::generate::Workers;
use crate::model::dir::sorted_vars;
use crate::model::fused::{f32_elements, f32_elements_mut};

/// AdamW with its moment estimates exposed, so they can be checkpointed.
/// Weight decay applies to matrices only (not LayerNorm, biases or gates).
pub struct AdamW {
    vars: Vec<(String, Var)>,
    /// Per variable, its learning rate as a multiple of the step's.
    lr_scales: Vec<f64>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: usize,
    weight_decay: f64,
}

/// A variable's gradient for one step.
enum Gradient {
    /// The shards' gradients, for the in-place pass, which adds them (in
    /// shard order) as it goes, so their sum is never stored.
    Shards(Vec<Tensor>),
    /// Their sum, for the composed update.
    Summed(Tensor),
}

/// What one parameter's update needs besides its tensors.
#[derive(Clone, Copy)]
struct Hyper {
    /// Gradient scale from clipping.
    scale: f32,
    lr: f32,
    /// Multiplies the weights before the step: 1 - lr·decay, or 1.
    decay: f32,
    /// Bias corrections 1 - β^t.
    c1: f32,
    c2: f32,
}

impl AdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.98;
    const EPS: f64 = 1e-8;
    /// Adam moves a parameter by about `lr` per step at most, so a gate
    /// `tanh(alpha)` starting at 0 would need a thousand steps to open; the
    /// first shipped gated model still had |tanh(alpha)| ≤ 0.19 after 3,000.
    pub const DEFAULT_GATE_LR_SCALE: f64 = 10.0;

    pub fn new(varmap: &VarMap, weight_decay: f64) -> Result<Self> {
        let vars = sorted_vars(varmap);
        let zeros = |vars: &[(String, Var)]| {
            vars.iter()
                .map(|(_, v)| v.zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()
        };
        let lr_scales = vars
            .iter()
            .map(|(name, _)| {
                if is_gate(name) {
                    Self::DEFAULT_GATE_LR_SCALE
                } else {
                    1.0
                }
            })
            .collect();
        Ok(AdamW {
            m: zeros(&vars)?,
            v: zeros(&vars)?,
            vars,
            lr_scales,
            step: 0,
            weight_decay,
        })
    }

    /// Sets the gates' learning rate to `scale` times the step's (instead of
    /// [`AdamW::DEFAULT_GATE_LR_SCALE`]).
    pub fn set_gate_learning_rate_scale(&mut self, scale: f64) {
        for lr_scale in self.lr_scales_where(is_gate) {
            *lr_scale = scale;
        }
    }

    /// Multiplies the learning rate of the variables whose names start with
    /// `prefix` by `factor` (a fine-tuned encoder's `lr_scale`).
    pub fn scale_learning_rate(&mut self, prefix: &str, factor: f64) {
        for scale in self.lr_scales_where(|name| name.starts_with(prefix)) {
            *scale *= factor;
        }
    }

    /// The learning-rate scales of the variables whose names `select` picks.
    fn lr_scales_where<'a>(
        &'a mut self,
        select: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a mut f64> + 'a {
        self.vars
            .iter()
            .zip(&mut self.lr_scales)
            .filter(move |((name, _), _)| select(name))
            .map(|(_, scale)| scale)
    }

    /// Clips the gradients to `clip_norm` (global L2) and updates every variable.
    /// Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip_norm: f64) -> Result<f64> {
        self.step_with(std::slice::from_ref(grads), None, lr, clip_norm, true)
    }

    /// [`AdamW::step`] for the sum of several shards' gradients, added in
    /// shard order. The variables are shared out among `workers`, each summing,
    /// measuring and updating its own; the result does not depend on how.
    pub fn step_sharded(
        &mut self,
        shards: &[GradStore],
        workers: &Workers,
        lr: f64,
        clip_norm: f64,
    ) -> Result<f64> {
        self.step_with(shards, Some(workers), lr, clip_norm, true)
    }

    /// The step, with the in-place pass allowed or not (tests compare the two).
    fn step_with(
        &mut self,
        shards: &[GradStore],
        workers: Option<&Workers>,
        lr: f64,
        clip_norm: f64,
        in_place: bool,
    ) -> Result<f64> {
        let sharing = workers
            .filter(|w| w.threads() > 1)
            .map(|w| (w, self.balanced_groups(w.threads())));
        // Per variable: its gradient and the squared norm of it.
        let gathered = self.per_variable(sharing.as_ref(), |i| {
            let (name, var) = &self.vars[i];
            let grads: Vec<Tensor> = shards
                .iter()
                .filter_map(|grads| grads.get(var.as_tensor()).cloned())
                .collect();
            if grads.is_empty() {
                bail!("no gradient for {name}");
            }
            let mut operands = vec![var.as_tensor(), &self.m[i], &self.v[i]];
            operands.extend(&grads);
            if in_place && fusable(&operands) {
                let sq = with_elements(&grads, squared_sum_of_sum)?;
                return Ok((Gradient::Shards(grads), sq));
            }
            let mut total = grads[0].clone();
            for g in &grads[1..] {
                total = (total + g)?;
            }
            let total = total.contiguous()?;
            let sq = if fusable(&[&total]) {
                with_elements(std::slice::from_ref(&total), squared_sum_of_sum)?
            } else {
                total
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?
            };
            Ok((Gradient::Summed(total), sq))
        })?;
        // Summed in variable order, whatever the workers.
        let norm = gathered.iter().map(|(_, sq)| sq).sum::<f64>().sqrt();
        if !norm.is_finite() {
            return Ok(norm);
        }
        let scale = if norm > clip_norm {
            clip_norm / norm
        } else {
            1.0
        };
        self.step += 1;
        let hypers: Vec<Hyper> = (0..self.vars.len())
            .map(|i| self.hyper(i, lr, scale))
            .collect();
        self.per_variable(sharing.as_ref(), |i| match &gathered[i].0 {
            Gradient::Shards(grads) => self.update_in_place(i, grads, hypers[i]),
            Gradient::Summed(_) => Ok(()),
        })?;
        for (i, (gradient, _)) in gathered.iter().enumerate() {
            if let Gradient::Summed(total) = gradient {
                self.composed_update(i, total, hypers[i])?;
            }
        }
        Ok(norm)
    }

    /// Variable `i`'s update settings at the current step.
    fn hyper(&self, i: usize, lr: f64, scale: f64) -> Hyper {
        let var = &self.vars[i].1;
        let lr = lr * self.lr_scales[i];
        let decay = if var.rank() >= 2 {
            1.0 - lr * self.weight_decay
        } else {
            1.0
        };
        let t = self.step as i32;
        Hyper {
            scale: scale as f32,
            lr: lr as f32,
            decay: decay as f32,
            c1: (1.0 - Self::BETA1.powi(t)) as f32,
            c2: (1.0 - Self::BETA2.powi(t)) as f32,
        }
    }

    /// `work(i)` for every variable, in variable order; with `sharing`, on
    /// the workers, one group of variables (`balanced_groups`) each.
    fn per_variable<T, F>(
        &self,
        sharing: Option<&(&Workers, Vec<Vec<usize>>)>,
        work: F,
    ) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(usize) -> Result<T> + Sync,
    {
        let Some((workers, groups)) = sharing else {
            return (0..self.vars.len()).map(work).collect();
        };
        let done = workers.per_shard(groups.len(), |range| {
            range
                .flat_map(|g| groups[g].iter().map(|&i| Ok((i, work(i)?))))
                .collect::<Result<Vec<_>>>()
        })?;
        let mut by_index: Vec<Option<T>> = (0..self.vars.len()).map(|_| None).collect();
        for (i, value) in done.into_iter().flatten() {
            by_index[i] = Some(value);
        }
        by_index
            .into_iter()
            .map(|v| v.ok_or_else(|| anyhow!("a variable was not updated")))
            .collect()
    }

    /// The variables in `n` groups of about equal element counts (largest first).
    fn balanced_groups(&self, n: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.vars.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.vars[i].1.elem_count()));
        let mut groups = vec![Vec::new(); n];
        let mut load = vec![0usize; n];
        for i in order {
            let g = (0..n).min_by_key(|&g| load[g]).unwrap_or(0);
            load[g] += self.vars[i].1.elem_count();
            groups[g].push(i);
        }
        groups
    }

    /// Variable `i`'s update in one pass over its elements: the shards'
    /// gradients added in shard order, then both moments, then the weight.
    fn update_in_place(&self, i: usize, grads: &[Tensor], h: Hyper) -> Result<()> {
        with_elements(grads, |grads| {
            with_elements_mut(self.vars[i].1.as_tensor(), |p| {
                with_elements_mut(&self.m[i], |m| {
                    with_elements_mut(&self.v[i], |v| {
                        adamw_pass(p, m, v, grads, h);
                        Ok(())
                    })
                })
            })
        })
    }

    /// The same update from candle ops, for devices and dtypes without the pass.
    fn composed_update(&mut self, i: usize, g: &Tensor, h: Hyper) -> Result<()> {
        let g = (g * h.scale as f64)?;
        self.m[i] = ((&self.m[i] * Self::BETA1)? + (&g * (1.0 - Self::BETA1))?)?;
        self.v[i] = ((&self.v[i] * Self::BETA2)? + (g.sqr()? * (1.0 - Self::BETA2))?)?;
        let update =
            ((&self.m[i] / h.c1 as f64)? / ((&self.v[i] / h.c2 as f64)?.sqrt()? + Self::EPS)?)?;
        let var = &self.vars[i].1;
        var.set(&((var.as_tensor() * h.decay as f64)? - (update * h.lr as f64)?)?)?;
        Ok(())
    }

    /// Weights, moments and the step count, as named tensors.
    pub(super) fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            // Shared, not copied: the next step changes them in place, so
            // the state must be written out before it.
            out.insert(format!("model.{name}"), var.as_tensor().clone());
            out.insert(format!("adam_m.{name}"), self.m[i].clone());
            out.insert(format!("adam_v.{name}"), self.v[i].clone());
        }
        out.insert(
            "adam_step".into(),
            Tensor::new(&[self.step as u32], &Device::Cpu)?,
        );
        Ok(out)
    }

    pub(super) fn restore(&mut self, state: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let get = |key: &str| {
            state.get(key).ok_or_else(|| {
                anyhow!(
                    "{}: missing {key}; the checkpoint is from another model",
                    path.display()
                )
            })
        };
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let weights = get(&format!("model.{name}"))?;
            if weights.dims() != var.dims() {
                bail!(
                    "{}: {name} has shape {:?}, expected {:?}",
                    path.display(),
                    weights.dims(),
                    var.dims()
                );
            }
            var.set(weights)?;
            // Copies, since the moments are updated in place.
            self.m[i] = get(&format!("adam_m.{name}"))?.copy()?;
            self.v[i] = get(&format!("adam_v.{name}"))?.copy()?;
        }
        self.step = get("adam_step")?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

/// The gated strategy's `tanh(alpha)` gates.
fn is_gate(name: &str) -> bool {
    name.contains("gate_")
}

/// All on the CPU, f32, contiguous and of one shape: the in-place pass applies.
fn fusable(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| {
        t.device().is_cpu()
            && t.dtype() == DType::F32
            && t.is_contiguous()
            && t.dims() == tensors[0].dims()
    })
}

/// Σ (Σ_shards g)², the sum over shards in f32 and in shard order (as the
/// update adds them), its squares summed in f64.
fn squared_sum_of_sum(grads: &[&[f32]]) -> Result<f64> {
    Ok((0..grads[0].len())
        .map(|j| {
            let g = f64::from(shard_sum(grads, j));
            g * g
        })
        .sum())
}

/// Element `j` of the shards' summed gradient.
#[inline(always)]
fn shard_sum(grads: &[&[f32]], j: usize) -> f32 {
    grads[1..].iter().fold(grads[0][j], |sum, g| sum + g[j])
}

/// m ← β₁m + (1-β₁)·ĝ, v ← β₂v + (1-β₂)·ĝ², p ← decay·p - lr·(m/c₁) / (√(v/c₂) + ε),
/// with ĝ = scale · Σ_shards g.
fn adamw_pass(p: &mut [f32], m: &mut [f32], v: &mut [f32], grads: &[&[f32]], h: Hyper) {
    let (beta1, beta2, eps) = (AdamW::BETA1 as f32, AdamW::BETA2 as f32, AdamW::EPS as f32);
    let update = |p: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
        let g = g * h.scale;
        *m = *m * beta1 + g * (1.0 - beta1);
        *v = *v * beta2 + g * g * (1.0 - beta2);
        *p = *p * h.decay - h.lr * ((*m / h.c1) / ((*v / h.c2).sqrt() + eps));
    };
    let weights = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut());
    // One and two shards (one and two threads) as plain zips, so they vectorise.
    match grads {
        [g0] => {
            for (((p, m), v), &g) in weights.zip(g0.iter()) {
                update(p, m, v, g);
            }
        }
        [g0, g1] => {
            for (((p, m), v), (&a, &b)) in weights.zip(g0.iter().zip(g1.iter())) {
                update(p, m, v, a + b);
            }
        }
        _ => {
            for (j, ((p, m), v)) in weights.enumerate() {
                update(p, m, v, shard_sum(grads, j));
            }
        }
    }
}

/// `f` on the elements of `tensors` (contiguous f32 on the CPU, see `fusable`).
fn with_elements<R>(tensors: &[Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => Ok(f32_elements(cpu, layout, "adamw")?),
            _ => bail!("adamw: a gradient is not on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    f(&slices)
}

/// `f` on the elements of `t` (contiguous f32 on the CPU), writable. Calls
/// nest, so that one pass can write several tensors.
fn with_elements_mut<R>(t: &Tensor, f: impl FnOnce(&mut [f32]) -> Result<R>) -> Result<R> {
    let op = Writable {
        f: Cell::new(Some(f)),
        out: Cell::new(None),
    };
    t.inplace_op1(&op)?;
    op.out
        .take()
        .unwrap_or_else(|| bail!("adamw: the in-place pass did not run"))
}

/// Lends an in-place op's destination to a closure.
struct Writable<F, R> {
    f: Cell<Option<F>>,
    out: Cell<Option<Result<R>>>,
}

impl<F: FnOnce(&mut [f32]) -> Result<R>, R> InplaceOp1 for Writable<F, R> {
    fn name(&self) -> &'static str {
        "adamw-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let elements = f32_elements_mut(storage, layout, self.name())?;
        if let Some(f) = self.f.take() {
            self.out.set(Some(f(elements)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Init, VarBuilder};

    /// Two identical variable sets: a matrix (decayed), a bias and a gate (10× lr).
    /// Three variables with fixed values of magnitude about one, so that
    /// every run of a test compares the same numbers.
    fn vars() -> Result<VarMap> {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        vb.get_with_hints((7, 5), "w", Init::Const(0.0))?;
        vb.get_with_hints(5, "b", Init::Const(0.0))?;
        vb.get_with_hints(1, "gate_alpha", Init::Const(0.0))?;
        for (i, (_, var)) in sorted_vars(&map).into_iter().enumerate() {
            let n = var.elem_count() as u32;
            let values = ((Tensor::arange(0u32, n, &Device::Cpu)?.to_dtype(DType::F32)? * 0.53)?
                + (1.0 + i as f64))?
                .cos()?
                .reshape(var.dims())?;
            var.set(&values)?;
        }
        Ok(map)
    }

    fn copy_of(map: &VarMap) -> Result<VarMap> {
        let other = vars()?;
        for ((_, a), (_, b)) in sorted_vars(map).iter().zip(sorted_vars(&other)) {
            b.set(a.as_tensor())?;
        }
        Ok(other)
    }

    /// Gradients of Σ var · target, with `target` a fixed function of `seed`.
    fn grads(map: &VarMap, seed: u64) -> Result<GradStore> {
        let dev = Device::Cpu;
        let mut loss = Tensor::zeros((), DType::F32, &dev)?;
        for (_, var) in sorted_vars(map) {
            let n = var.elem_count() as u32;
            let target = ((Tensor::arange(0u32, n, &dev)?.to_dtype(DType::F32)? * 0.37)?
                + seed as f64)?
                .sin()?
                .affine(3.0, 0.0)?
                .reshape(var.dims())?;
            loss = (loss + (var.as_tensor() * target)?.sum_all()?)?;
        }
        Ok(loss.backward()?)
    }

    #[test]
    fn sharded_steps_equal_one_step_on_the_summed_gradients() -> Result<()> {
        for threads in [1, 2, 3] {
            let workers = Workers::new(threads)?;
            let a = vars()?;
            let b = copy_of(&a)?;
            let (mut sharded, mut whole) = (AdamW::new(&a, 0.1)?, AdamW::new(&b, 0.1)?);
            for (step, clip) in [(1u64, 0.5), (2, 100.0)] {
                let shards = [grads(&a, step)?, grads(&a, step + 10)?];
                let mut sum = grads(&b, step)?;
                let more = grads(&b, step + 10)?;
                for (_, var) in sorted_vars(&b) {
                    let (Some(x), Some(y)) = (sum.get(var.as_tensor()), more.get(var.as_tensor()))
                    else {
                        bail!("a gradient is missing");
                    };
                    let total = (x + y)?;
                    sum.insert(var.as_tensor(), total);
                }
                let n1 = sharded.step_sharded(&shards, &workers, 1e-2, clip)?;
                let n2 = whole.step(&sum, 1e-2, clip)?;
                assert_eq!(n1, n2, "{threads} threads: norms");
            }
            for (i, ((name, x), (_, y))) in sorted_vars(&a).iter().zip(sorted_vars(&b)).enumerate()
            {
                for (p, q) in [
                    (x.as_tensor(), y.as_tensor()),
                    (&sharded.m[i], &whole.m[i]),
                    (&sharded.v[i], &whole.v[i]),
                ] {
                    assert_eq!(
                        p.flatten_all()?.to_vec1::<f32>()?,
                        q.flatten_all()?.to_vec1::<f32>()?,
                        "{threads} threads: {name}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn scaled_learning_rates_scale_the_first_step_of_only_their_variables() -> Result<()> {
        // Adam's first step moves each weight by lr · g/|g| (about lr), so
        // the moves compare directly.
        let a = vars()?;
        let b = copy_of(&a)?;
        let (mut plain, mut scaled) = (AdamW::new(&a, 0.0)?, AdamW::new(&b, 0.0)?);
        scaled.scale_learning_rate("w", 0.1);
        // The gate's default is 10× the step's rate: 1 is a tenth of it.
        scaled.set_gate_learning_rate_scale(1.0);
        let before = copy_of(&a)?;
        plain.step(&grads(&a, 1)?, 1e-2, 100.0)?;
        scaled.step(&grads(&b, 1)?, 1e-2, 100.0)?;
        let moved = |map: &VarMap, name: &str| -> Result<f32> {
            let find = |m: &VarMap| {
                sorted_vars(m)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| anyhow!("no {name}"))
            };
            let delta = (find(map)?.as_tensor() - find(&before)?.as_tensor())?;
            Ok(delta.abs()?.max_all()?.to_scalar::<f32>()?)
        };
        for name in ["w", "gate_alpha"] {
            let ratio = moved(&b, name)? / moved(&a, name)?;
            assert!((ratio - 0.1).abs() < 1e-3, "{name} moved {ratio} as far");
        }
        assert_eq!(moved(&b, "b")?, moved(&a, "b")?);
        Ok(())
    }

    #[test]
    fn the_in_place_pass_matches_the_composed_update() -> Result<()> {
        let a = vars()?;
        let b = copy_of(&a)?;
        let (mut fast, mut slow) = (AdamW::new(&a, 0.1)?, AdamW::new(&b, 0.1)?);
        // Clip norms below and above the gradient norm, so both scales are used.
        for (step, clip) in [(1u64, 0.5), (2, 100.0), (3, 1.0)] {
            let n1 = fast.step_with(&[grads(&a, step)?], None, 1e-2, clip, true)?;
            let n2 = slow.step_with(&[grads(&b, step)?], None, 1e-2, clip, false)?;
            assert!((n1 - n2).abs() <= 1e-5 * n2, "norms {n1} {n2}");
        }
        for (i, ((name, x), (_, y))) in sorted_vars(&a).iter().zip(sorted_vars(&b)).enumerate() {
            let pairs = [
                (x.as_tensor(), y.as_tensor()),
                (&fast.m[i], &slow.m[i]),
                (&fast.v[i], &slow.v[i]),
            ];
            for (p, q) in pairs {
                let diff = (p - q)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let size = q.abs()?.max_all()?.to_scalar::<f32>()?;
                // Rounding in the two orders of operations is relative to the
                // values met along the way (about one for the weights), not
                // to where a weight ends, which may be near zero.
                assert!(
                    size > 0.0 && diff <= 1e-5 * size.max(1.0),
                    "{name}: {diff} of {size}"
                );
            }
        }
        assert_eq!((fast.step, slow.step), (3, 3));
        Ok(())
    }
}
