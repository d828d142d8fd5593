//! DINOv2: conversion of a Hugging Face `Dinov2Model` exported to ONNX into
//! candle-transformers' `dinov2` tensor layout, and a forward pass over that
//! layout.
//!
//! The forward pass is written here rather than taken from
//! `candle_transformers::models::dinov2` because that module differs from the
//! reference model in three ways that change the features by far more than
//! 1e-4: it interpolates the position table by nearest neighbour (the
//! reference is bicubic), uses the tanh approximation of GELU (the reference
//! uses erf) and a layer-norm epsilon of 1e-5 (the reference 1e-6). It also
//! insists on a 1000-class head. The tensor names are the same, so a directory
//! written here loads in either.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::onnx::{Graph, TensorProto};
use super::ops::{norm, softmax};

/// ImageNet statistics, which DINOv2 was trained with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `config.json` of a DINOv2 encoder directory. The field names follow Hugging
/// Face's `Dinov2Config` where one exists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dinov2Config {
    /// Always "dinov2".
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub mlp_ratio: usize,
    pub patch_size: usize,
    /// Side of the image the position table was made for (table side × patch).
    pub image_size: usize,
    pub layer_norm_eps: f64,
    /// "gelu": the exact (erf) GELU.
    pub hidden_act: String,
    /// The input side the source model was run at.
    pub input_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Where the weights came from.
    #[serde(default)]
    pub source: String,
}

impl Dinov2Config {
    /// Side of the square position table, in patches.
    pub fn position_grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Tensor,
    heads: usize,
}

impl Block {
    fn new(cfg: &Dinov2Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let hidden = d * cfg.mlp_ratio;
        let ln = |vb: VarBuilder| candle_nn::layer_norm(d, cfg.layer_norm_eps, vb);
        Ok(Block {
            norm1: ln(vb.pp("norm1"))?,
            qkv: candle_nn::linear(d, 3 * d, vb.pp("attn").pp("qkv"))?,
            proj: candle_nn::linear(d, d, vb.pp("attn").pp("proj"))?,
            ls1: vb.pp("ls1").get(d, "gamma")?,
            norm2: ln(vb.pp("norm2"))?,
            fc1: candle_nn::linear(d, hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(hidden, d, vb.pp("mlp").pp("fc2"))?,
            ls2: vb.pp("ls2").get(d, "gamma")?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor, grads: bool) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let qkv = self
            .qkv
            .forward(&norm(&self.norm1, x, grads)?)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?; // 3, b, heads, n, hd
        let q = (qkv.i(0)?.contiguous()? * (1.0 / (hd as f64).sqrt()))?;
        let k = qkv.i(1)?.contiguous()?;
        let v = qkv.i(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?;
        let attn = softmax(&scores, grads)?;
        let ctx = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        let x = (x + self.proj.forward(&ctx)?.broadcast_mul(&self.ls1)?)?;
        let h = self
            .fc1
            .forward(&norm(&self.norm2, &x, grads)?)?
            .gelu_erf()?;
        &x + self.fc2.forward(&h)?.broadcast_mul(&self.ls2)?
    }
}

/// A DINOv2 backbone: image [B, 3, H, W] (normalised) -> tokens [B, 1 + (H/14)(W/14), D],
/// the class token first, after the final layer norm.
pub struct Dinov2 {
    pub config: Dinov2Config,
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    grads: bool,
}

impl Dinov2 {
    pub fn new(config: &Dinov2Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = config.hidden_size;
        let p = config.patch_size;
        let grid = config.position_grid();
        let conv = Conv2dConfig {
            stride: p,
            ..Default::default()
        };
        Ok(Dinov2 {
            config: config.clone(),
            patch_embed: candle_nn::conv2d(3, d, p, conv, vb.pp("patch_embed").pp("proj"))?,
            cls_token: vb.get((1, 1, d), "cls_token")?,
            pos_embed: vb.get((1, 1 + grid * grid, d), "pos_embed")?,
            blocks: (0..config.num_hidden_layers)
                .map(|i| Block::new(config, vb.pp("blocks").pp(i.to_string())))
                .collect::<candle_core::Result<_>>()?,
            norm: candle_nn::layer_norm(d, config.layer_norm_eps, vb.pp("norm"))?,
            grads: false,
        })
    }

    /// Uses ops that record gradients (slower), for fine-tuning; by default
    /// the forward pass is for inference and frozen use.
    pub fn with_gradients(mut self, on: bool) -> Self {
        self.grads = on;
        self
    }

    /// Loads `DIR/config.json` and `DIR/model.safetensors` (memory-mapped, frozen).
    pub fn load(dir: &std::path::Path, device: &Device) -> anyhow::Result<Self> {
        let config = read_config(dir)?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is only read; a concurrent writer could change it under
        // the map, as for every memory-mapped model load in candle.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("cannot read {}", weights.display()))?;
        Dinov2::new(&config, vb)
            .with_context(|| format!("{} does not hold a DINOv2 backbone", weights.display()))
    }

    /// The position embeddings for a grid of `gh` × `gw` patches: the table,
    /// bicubically interpolated (as PyTorch's `interpolate(..., mode="bicubic",
    /// align_corners=False)`) when the grid differs from its own. A matrix
    /// product, so gradients reach the table.
    pub fn position_embeddings(&self, gh: usize, gw: usize) -> candle_core::Result<Tensor> {
        let grid = self.config.position_grid();
        if gh == grid && gw == grid {
            return Ok(self.pos_embed.clone());
        }
        let d = self.config.hidden_size;
        let cls = self.pos_embed.i((.., ..1))?;
        let table = self.pos_embed.i((0, 1..))?; // grid*grid, d
        let rows = bicubic_weights(grid, gh);
        let cols = bicubic_weights(grid, gw);
        let mut m = vec![0f32; gh * gw * grid * grid];
        for i in 0..gh {
            for j in 0..gw {
                let out = (i * gw + j) * grid * grid;
                for a in 0..grid {
                    let wa = rows[i * grid + a];
                    if wa == 0.0 {
                        continue;
                    }
                    for b in 0..grid {
                        m[out + a * grid + b] += wa * cols[j * grid + b];
                    }
                }
            }
        }
        let m = Tensor::from_vec(m, (gh * gw, grid * grid), self.pos_embed.device())?
            .to_dtype(self.pos_embed.dtype())?;
        let patch = m.matmul(&table)?.reshape((1, gh * gw, d))?;
        Tensor::cat(&[&cls, &patch], 1)
    }

    pub fn forward(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _c, h, w) = images.dims4()?;
        let p = self.config.patch_size;
        if !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            candle_core::bail!("image side {h}x{w} is not a multiple of the patch size {p}");
        }
        let x = self.patch_embed.forward(images)?; // b, d, gh, gw
        let (_, d, gh, gw) = x.dims4()?;
        let x = x.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, d))?;
        let mut x =
            Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.position_embeddings(gh, gw)?)?;
        for block in &self.blocks {
            x = block.forward(&x, self.grads)?;
        }
        norm(&self.norm, &x, self.grads)
    }

    /// The patch grid of each square image, average-pooled to `tokens` ×
    /// `tokens` (the class token dropped): [B, tokens², hidden]. The grid's
    /// side must be a multiple of `tokens`.
    pub fn pooled_patches(&self, images: &Tensor, tokens: usize) -> candle_core::Result<Tensor> {
        let (b, _, side, _) = images.dims4()?;
        let grid = side / self.config.patch_size;
        if tokens == 0 || !grid.is_multiple_of(tokens) {
            candle_core::bail!("a {grid}x{grid} patch grid does not pool to {tokens}x{tokens}");
        }
        let hidden = self.forward(images)?;
        let d = hidden.dim(2)?;
        hidden
            .narrow(1, 1, grid * grid)?
            .transpose(1, 2)?
            .reshape((b, d, grid, grid))?
            .avg_pool2d(grid / tokens)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()
    }
}

pub fn read_config(dir: &std::path::Path) -> anyhow::Result<Dinov2Config> {
    let config: Dinov2Config = super::read_config(dir, "a DINOv2 encoder config")?;
    let path = dir.join("config.json");
    if config.model_type != "dinov2" {
        bail!(
            "{} describes a {:?} model, not dinov2",
            path.display(),
            config.model_type
        );
    }
    let c = &config;
    if c.patch_size == 0
        || c.image_size < c.patch_size
        || c.num_attention_heads == 0
        || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        || c.mlp_ratio == 0
    {
        bail!(
            "{}: patch_size {}, image_size {}, hidden_size {}, num_attention_heads {} and mlp_ratio {} do not describe a DINOv2 model",
            path.display(),
            c.patch_size,
            c.image_size,
            c.hidden_size,
            c.num_attention_heads,
            c.mlp_ratio
        );
    }
    Ok(config)
}

/// Row-major [out, inp] weights of PyTorch's bicubic resampling (A = -0.75,
/// half-pixel centres, edge indices clamped).
fn bicubic_weights(inp: usize, out: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = inp as f64 / out as f64;
    let mut w = vec![0f32; out * inp];
    for o in 0..out {
        let src = scale * (o as f64 + 0.5) - 0.5;
        let i0 = src.floor();
        let t = src - i0;
        let coeffs = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, c) in coeffs.iter().enumerate() {
            let idx = (i0 as i64 + k as i64 - 1).clamp(0, inp as i64 - 1) as usize;
            w[o * inp + idx] += *c as f32;
        }
    }
    w
}

/// What the conversion kept and dropped.
#[derive(Debug, Clone, Serialize)]
pub struct Conversion {
    pub config: Dinov2Config,
    /// Initializers that are not part of the backbone, by their first name component.
    pub dropped: BTreeMap<String, usize>,
    /// MatMul weights found under generated names and traced to their layer.
    pub traced_matmuls: usize,
}

/// Converts an ONNX graph holding a Hugging Face `Dinov2Model` (possibly under
/// a prefix such as `backbone.`) into candle-transformers' `dinov2` names.
pub fn from_onnx(
    graph: &Graph,
    source: &str,
) -> anyhow::Result<(HashMap<String, Tensor>, Conversion)> {
    let cpu = Device::Cpu;
    let by_name: HashMap<&str, &TensorProto> = graph
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    const PATCH: &str = "embeddings.patch_embeddings.projection.weight";
    let prefix = graph
        .initializers
        .iter()
        .find_map(|t| t.name.strip_suffix(PATCH))
        .with_context(|| format!("the ONNX graph has no initializer named *{PATCH}: it is not a DINOv2 (Hugging Face Dinov2Model) export"))?
        .to_string();
    let mut hf: HashMap<String, Tensor> = HashMap::new();
    let mut used: Vec<String> = Vec::new();
    let load = |t: &TensorProto| -> anyhow::Result<Tensor> {
        Ok(Tensor::from_vec(t.to_f32()?, t.shape()?, &cpu)?)
    };
    for t in &graph.initializers {
        if t.name.starts_with(&prefix) && !t.name.starts_with("onnx::") {
            hf.insert(t.name[prefix.len()..].to_string(), load(t)?);
            used.push(t.name.clone());
        }
    }

    // MatMul weights under generated names: follow the product to the Add of its bias.
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut traced = 0;
    for node in graph.nodes.iter().filter(|n| n.op_type == "MatMul") {
        let Some(weight) = node.inputs.get(1).and_then(|w| by_name.get(w.as_str())) else {
            continue;
        };
        let Some(out) = node.outputs.first() else {
            continue;
        };
        let bias = consumers
            .get(out.as_str())
            .into_iter()
            .flatten()
            .map(|&i| &graph.nodes[i])
            .filter(|n| n.op_type == "Add")
            .flat_map(|n| n.inputs.iter())
            .find(|i| i.ends_with(".bias") && by_name.contains_key(i.as_str()));
        let Some(bias) = bias else {
            bail!(
                "cannot trace the MatMul weight {} (node {}) to a layer: no Add of a *.bias follows it",
                weight.name,
                node.name
            );
        };
        let Some(layer) = bias
            .strip_suffix(".bias")
            .and_then(|b| b.strip_prefix(&prefix))
        else {
            continue;
        };
        let w = load(weight)?.t()?.contiguous()?; // ONNX MatMul holds [in, out]
        hf.insert(format!("{layer}.weight"), w);
        used.push(weight.name.clone());
        traced += 1;
    }

    // Position embeddings: whole, or split by the exporter into the class
    // position [1, 1, D] (into a Concat) and the patch table [1, N*N, D] (into a Reshape).
    let cls = hf
        .get("embeddings.cls_token")
        .with_context(|| format!("the ONNX graph has no {prefix}embeddings.cls_token"))?
        .clone();
    let d = cls.dim(2)?;
    let pos = match hf.remove("embeddings.position_embeddings") {
        Some(p) => p,
        None => {
            let consumed_by = |name: &str, op: &str| {
                consumers
                    .get(name)
                    .into_iter()
                    .flatten()
                    .any(|&i| graph.nodes[i].op_type == op)
            };
            let generated = || {
                graph
                    .initializers
                    .iter()
                    .filter(|t| !t.name.starts_with(&prefix))
            };
            let class_pos: Vec<_> = generated()
                .filter(|t| t.dims == [1, 1, d as i64] && consumed_by(&t.name, "Concat"))
                .collect();
            let table: Vec<_> = generated()
                .filter(|t| {
                    t.dims.len() == 3
                        && t.dims[0] == 1
                        && t.dims[2] == d as i64
                        && is_square(t.dims[1])
                        && t.dims[1] > 1
                        && consumed_by(&t.name, "Reshape")
                })
                .collect();
            let (&[c], &[p]) = (class_pos.as_slice(), table.as_slice()) else {
                bail!(
                    "cannot find the position embeddings: expected one [1, 1, {d}] initializer into a Concat and one [1, N*N, {d}] into a Reshape, found {} and {}",
                    class_pos.len(),
                    table.len()
                );
            };
            used.push(c.name.clone());
            used.push(p.name.clone());
            Tensor::cat(&[load(c)?, load(p)?], 1)?
        }
    };
    let (out, config) = rename_hugging_face(
        hf,
        pos,
        &prefix,
        traced_layer_norm_eps(graph).unwrap_or(1e-6),
        graph
            .inputs
            .first()
            .and_then(|i| i.dims.last().copied().flatten())
            .map(|s| s as usize)
            .unwrap_or(224),
        source,
    )?;
    let mut dropped = BTreeMap::new();
    for t in &graph.initializers {
        if !used.contains(&t.name) {
            let head = t.name.split(['.', ':']).next().unwrap_or("").to_string();
            *dropped.entry(head).or_insert(0) += 1;
        }
    }
    Ok((
        out,
        Conversion {
            config,
            dropped,
            traced_matmuls: traced,
        },
    ))
}

/// `config.json` of a Hugging Face `Dinov2Model`, the fields the conversion reads.
#[derive(Debug, Deserialize)]
pub struct HuggingFaceConfig {
    pub layer_norm_eps: f64,
    #[serde(default = "default_input_size")]
    pub image_size: usize,
}

fn default_input_size() -> usize {
    224
}

/// Converts the tensors of a Hugging Face `Dinov2Model` safetensors file
/// (names such as `encoder.layer.0.norm1.weight`, with or without a prefix
/// such as `dinov2.`) into candle-transformers' `dinov2` names.
pub fn from_hugging_face(
    tensors: HashMap<String, Tensor>,
    config: &HuggingFaceConfig,
    source: &str,
) -> anyhow::Result<(HashMap<String, Tensor>, Dinov2Config)> {
    const PATCH: &str = "embeddings.patch_embeddings.projection.weight";
    let prefix = tensors
        .keys()
        .find_map(|n| n.strip_suffix(PATCH))
        .with_context(|| {
            format!("{source} has no tensor named *{PATCH}: it is not a Hugging Face Dinov2Model")
        })?
        .to_string();
    let mut hf: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in tensors {
        match name.strip_prefix(&prefix) {
            Some(rest) => hf.insert(rest.to_string(), t.to_dtype(candle_core::DType::F32)?),
            None => bail!("{source}: {name} does not start with {prefix:?} as the others do"),
        };
    }
    let pos = hf
        .remove("embeddings.position_embeddings")
        .with_context(|| format!("{source} has no {prefix}embeddings.position_embeddings"))?;
    // The position table is sized for the model's own input (518 for DINOv2);
    // fusecap interpolates it to the input it is given, so 224 is the default.
    rename_hugging_face(
        hf,
        pos,
        &prefix,
        config.layer_norm_eps,
        224.min(config.image_size),
        source,
    )
}

/// The tensors of a Hugging Face `Dinov2Model` (without their prefix, the
/// position table apart) under candle-transformers' names, and their config.
fn rename_hugging_face(
    mut hf: HashMap<String, Tensor>,
    pos: Tensor,
    prefix: &str,
    layer_norm_eps: f64,
    input_size: usize,
    source: &str,
) -> anyhow::Result<(HashMap<String, Tensor>, Dinov2Config)> {
    let cls = hf
        .get("embeddings.cls_token")
        .with_context(|| format!("{source} has no {prefix}embeddings.cls_token"))?
        .clone();
    let d = cls.dim(2)?;
    let n = match pos.dims() {
        &[1, n, width] if width == d && n > 1 => n - 1,
        dims => bail!("the position embeddings have shape {dims:?}, expected [1, 1 + N*N, {d}]"),
    };
    let grid = (n as f64).sqrt().round() as usize;
    if grid * grid != n {
        bail!("the position table has {n} patch positions, not a square grid");
    }

    let proj = hf
        .get("embeddings.patch_embeddings.projection.weight")
        .context("missing patch embedding")?;
    let (_, channels, patch, patch_w) = proj.dims4()?;
    if channels != 3 || patch != patch_w {
        bail!(
            "the patch embedding has shape {:?}, expected [D, 3, P, P]",
            proj.dims()
        );
    }
    let layers = (0..)
        .take_while(|i| hf.contains_key(&format!("encoder.layer.{i}.norm1.weight")))
        .count();
    if layers == 0 {
        bail!("{source} has no {prefix}encoder.layer.0.norm1.weight");
    }
    let mlp_hidden = hf
        .get("encoder.layer.0.mlp.fc1.bias")
        .context("missing encoder.layer.0.mlp.fc1.bias")?
        .dim(0)?;
    if d == 0 || !d.is_multiple_of(64) || !mlp_hidden.is_multiple_of(d) {
        bail!("hidden size {d} and MLP size {mlp_hidden} do not match a DINOv2 model");
    }
    let config = Dinov2Config {
        model_type: "dinov2".into(),
        hidden_size: d,
        num_hidden_layers: layers,
        // Every DINOv2 size uses 64-wide heads (S 6, B 12, L 16, g 24).
        num_attention_heads: d / 64,
        mlp_ratio: mlp_hidden / d,
        patch_size: patch,
        image_size: grid * patch,
        layer_norm_eps,
        hidden_act: "gelu".into(),
        input_size,
        image_mean: IMAGENET_MEAN,
        image_std: IMAGENET_STD,
        source: source.to_string(),
    };

    let mut take = |name: &str, shape: &[usize]| -> anyhow::Result<Tensor> {
        let t = hf
            .remove(name)
            .with_context(|| format!("{source} has no {prefix}{name}"))?;
        if t.dims() != shape {
            bail!(
                "{prefix}{name} has shape {:?}, expected {shape:?}",
                t.dims()
            );
        }
        Ok(t)
    };
    let mut out = HashMap::new();
    out.insert(
        "cls_token".into(),
        take("embeddings.cls_token", &[1, 1, d])?,
    );
    out.insert("pos_embed".into(), pos);
    let pe = "embeddings.patch_embeddings.projection";
    out.insert(
        "patch_embed.proj.weight".into(),
        take(&format!("{pe}.weight"), &[d, 3, patch, patch])?,
    );
    out.insert(
        "patch_embed.proj.bias".into(),
        take(&format!("{pe}.bias"), &[d])?,
    );
    for i in 0..layers {
        let hf_l = format!("encoder.layer.{i}");
        let c = format!("blocks.{i}");
        for (from, to) in [("norm1", "norm1"), ("norm2", "norm2")] {
            out.insert(
                format!("{c}.{to}.weight"),
                take(&format!("{hf_l}.{from}.weight"), &[d])?,
            );
            out.insert(
                format!("{c}.{to}.bias"),
                take(&format!("{hf_l}.{from}.bias"), &[d])?,
            );
        }
        let mut qkv_w = Vec::new();
        let mut qkv_b = Vec::new();
        for part in ["query", "key", "value"] {
            qkv_w.push(take(
                &format!("{hf_l}.attention.attention.{part}.weight"),
                &[d, d],
            )?);
            qkv_b.push(take(
                &format!("{hf_l}.attention.attention.{part}.bias"),
                &[d],
            )?);
        }
        out.insert(format!("{c}.attn.qkv.weight"), Tensor::cat(&qkv_w, 0)?);
        out.insert(format!("{c}.attn.qkv.bias"), Tensor::cat(&qkv_b, 0)?);
        let linears = [
            ("attention.output.dense", "attn.proj", d, d),
            ("mlp.fc1", "mlp.fc1", mlp_hidden, d),
            ("mlp.fc2", "mlp.fc2", d, mlp_hidden),
        ];
        for (from, to, o, inp) in linears {
            out.insert(
                format!("{c}.{to}.weight"),
                take(&format!("{hf_l}.{from}.weight"), &[o, inp])?,
            );
            out.insert(
                format!("{c}.{to}.bias"),
                take(&format!("{hf_l}.{from}.bias"), &[o])?,
            );
        }
        out.insert(
            format!("{c}.ls1.gamma"),
            take(&format!("{hf_l}.layer_scale1.lambda1"), &[d])?,
        );
        out.insert(
            format!("{c}.ls2.gamma"),
            take(&format!("{hf_l}.layer_scale2.lambda1"), &[d])?,
        );
    }
    out.insert("norm.weight".into(), take("layernorm.weight", &[d])?);
    out.insert("norm.bias".into(), take("layernorm.bias", &[d])?);
    // HF's mask token is only used for masked-image training.
    hf.remove("embeddings.mask_token");
    if let Some(extra) = hf.keys().min() {
        bail!(
            "{source}: the backbone has tensors this conversion does not know, such as {prefix}{extra} ({} in all)",
            hf.len()
        );
    }
    Ok((out, config))
}

fn is_square(n: i64) -> bool {
    let r = (n as f64).sqrt().round() as i64;
    r * r == n
}

/// The epsilon of the first layer norm: `Sqrt(Add(variance, Constant))`.
fn traced_layer_norm_eps(graph: &Graph) -> Option<f64> {
    let producer: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let sqrt = graph.nodes.iter().find(|n| n.op_type == "Sqrt")?;
    let add = &graph.nodes[*producer.get(sqrt.inputs.first()?.as_str())?];
    if add.op_type != "Add" {
        return None;
    }
    add.inputs.iter().find_map(|input| {
        let node = &graph.nodes[*producer.get(input.as_str())?];
        if node.op_type != "Constant" {
            return None;
        }
        let (_, t) = node.tensor_attributes.iter().find(|(n, _)| n == "value")?;
        match t.to_f32().ok()?.as_slice() {
            // via the f32's shortest decimal form, so that 1e-6 reads as 1e-6
            [eps] => eps.to_string().parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_rows_sum_to_one_and_identity_at_same_size() {
        let w = bicubic_weights(37, 16);
        for row in w.chunks(37) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "row sums to {s}");
        }
        let id = bicubic_weights(5, 5);
        for (i, row) in id.chunks(5).enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6);
            }
        }
    }
}
