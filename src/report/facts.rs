//! Facts about a loaded model: gate values, parameter counts, memory.
use anyhow::Result;
use serde::Serialize;

use crate::model::dir::{parameter_count, ModelDir};
use crate::model::FusionModel;

/// One decoder layer's gate values `tanh(alpha)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gate {
    pub layer: usize,
    pub vision: f32,
    pub text: f32,
}

/// The gate values per decoder layer; `None` unless the model is gated.
pub fn gates(model: &FusionModel) -> Result<Option<Vec<Gate>>> {
    if !model.cfg.fusion.is_gated() {
        return Ok(None);
    }
    let values = model.gate_values()?;
    Ok(Some(
        values
            .into_iter()
            .enumerate()
            .map(|(layer, (vision, text))| Gate {
                layer,
                vision,
                text,
            })
            .collect(),
    ))
}

/// (all parameters, cross-attention parameters) of a loaded model.
pub fn parameter_counts(md: &ModelDir) -> (usize, usize) {
    (
        parameter_count(&md.varmap, |_| true),
        parameter_count(&md.varmap, |name| name.contains("cross_attn")),
    )
}

/// The process's peak resident memory so far (VmHWM in /proc/self/status),
/// in bytes; `None` where /proc is not available.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
