//! BERT text encoders (all-MiniLM-L6-v2): import and a loader over
//! candle-transformers' `bert` module with the encoder's own tokenizer.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use super::bert_trainable::TrainableBert;
use super::{read_config, ImportSummary};
use crate::atomic::write_atomically;

/// Checks the three files of a BERT encoder and writes them to `out` unchanged.
pub fn import(
    config: &[u8],
    weights: &[u8],
    tokenizer: &[u8],
    source: &str,
    out: &Path,
) -> Result<ImportSummary> {
    let cfg: Config = serde_json::from_slice(config)
        .with_context(|| format!("{source}config.json is not a BERT config"))?;
    if cfg.model_type.as_deref().is_some_and(|t| t != "bert") {
        bail!(
            "{source}config.json describes a {:?} model, not bert",
            cfg.model_type
        );
    }
    let tensors = candle_core::safetensors::load_buffer(weights, &Device::Cpu)
        .with_context(|| format!("{source}model.safetensors is not a safetensors file"))?;
    let word = "embeddings.word_embeddings.weight";
    match tensors.get(word).map(|t| t.dims().to_vec()) {
        Some(dims) if dims == [cfg.vocab_size, cfg.hidden_size] => {}
        Some(dims) => bail!(
            "{source}model.safetensors: {word} has shape {dims:?}, config.json says [{}, {}]",
            cfg.vocab_size,
            cfg.hidden_size
        ),
        None => bail!("{source}model.safetensors has no {word}"),
    }
    // Load it as candle will, so that a missing layer fails here, not at training.
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    BertModel::load(vb, &cfg)
        .with_context(|| format!("{source}model.safetensors does not match its config.json"))?;
    tokenizers::Tokenizer::from_bytes(tokenizer)
        .map_err(|e| anyhow::anyhow!("{source}tokenizer.json is not a tokenizer: {e}"))?;

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, bytes) in [
        ("config.json", config),
        ("model.safetensors", weights),
        ("tokenizer.json", tokenizer),
    ] {
        write_atomically(&out.join(name), |tmp| Ok(std::fs::write(tmp, bytes)?))?;
    }
    Ok(ImportSummary {
        kind: "bert".into(),
        source: source.into(),
        out: out.to_path_buf(),
        tensors: tensors.len(),
        parameters: tensors
            .values()
            .filter(|t| t.dtype() == DType::F32)
            .map(|t| t.elem_count())
            .sum(),
        hidden_size: cfg.hidden_size,
        layers: cfg.num_hidden_layers,
        dropped: Default::default(),
        traced_matmuls: 0,
    })
}

/// A BERT encoder: its tokenizer (without the padding the file may
/// configure) and its model.
pub struct TextEncoder {
    pub config: Config,
    pub tokenizer: tokenizers::Tokenizer,
    model: Backbone,
    device: Device,
}

/// candle-transformers' `BertModel` for inference and frozen use, or the
/// same computation recording gradients for fine-tuning.
enum Backbone {
    Fast(BertModel),
    Trainable(TrainableBert),
}

impl TextEncoder {
    /// Loads `DIR/{config.json,model.safetensors,tokenizer.json}` (weights memory-mapped).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (config, tokenizer) = read_config_and_tokenizer(dir)?;
        let weights = dir.join("model.safetensors");
        // SAFETY: read-only map of a model file, as candle's own loaders do.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("cannot read {}", weights.display()))?;
        Self::new(config, tokenizer, vb)
            .with_context(|| format!("{} does not hold a BERT model", weights.display()))
    }

    pub fn new(config: Config, tokenizer: tokenizers::Tokenizer, vb: VarBuilder) -> Result<Self> {
        Self::with_gradients(config, tokenizer, vb, false)
    }

    /// With `gradients`, the forward pass records them (slower), for
    /// fine-tuning the weights in `vb`.
    pub fn with_gradients(
        config: Config,
        tokenizer: tokenizers::Tokenizer,
        vb: VarBuilder,
        gradients: bool,
    ) -> Result<Self> {
        let device = vb.device().clone();
        let model = if gradients {
            Backbone::Trainable(TrainableBert::new(&config, vb)?)
        } else {
            Backbone::Fast(BertModel::load(vb, &config)?)
        };
        Ok(TextEncoder {
            config,
            tokenizer,
            model,
            device,
        })
    }

    /// Token ids of one text, with [CLS] and [SEP], truncated to the model's positions.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(self.config.max_position_embeddings);
        Ok(ids)
    }

    /// The id of a token of the encoder's vocabulary, such as "[CLS]".
    pub fn token_id(&self, token: &str) -> Result<u32> {
        self.tokenizer
            .token_to_id(token)
            .with_context(|| format!("the BERT tokenizer has no {token} token"))
    }

    /// Hidden states [B, L, D] and the attention mask [B, L] (1 for tokens, 0 for padding).
    pub fn encode(&self, texts: &[&str]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        self.encode_ids(&ids)
    }

    /// As `encode`, for token id sequences that already hold [CLS] and [SEP].
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let device = &self.device;
        let len = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let pad = self.config.pad_token_id as u32;
        let mut flat = Vec::with_capacity(ids.len() * len);
        let mut mask = Vec::with_capacity(ids.len() * len);
        for row in ids {
            flat.extend(row.iter().copied().chain(std::iter::repeat(pad)).take(len));
            mask.extend((0..len).map(|i| u32::from(i < row.len())));
        }
        let shape = (ids.len(), len);
        let input = Tensor::from_vec(flat, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let hidden = match &self.model {
            Backbone::Fast(model) => model.forward(&input, &input.zeros_like()?, Some(&mask))?,
            Backbone::Trainable(model) => model.forward(&input, &mask)?,
        };
        Ok((hidden, mask))
    }

    /// Sentence embeddings [B, D] as sentence-transformers makes them for
    /// all-MiniLM-L6-v2: the mean of the token states, L2-normalised.
    pub fn sentence_embeddings(&self, texts: &[&str]) -> Result<Tensor> {
        let (hidden, mask) = self.encode(texts)?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
        let mean = sum.broadcast_div(&mask.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?)
    }
}

pub fn read_config_and_tokenizer(dir: &Path) -> Result<(Config, tokenizers::Tokenizer)> {
    let config: Config = read_config(dir, "a BERT config")?;
    let tok_path = dir.join("tokenizer.json");
    let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", tok_path.display()))?;
    tokenizer.with_padding(None);
    Ok((config, tokenizer))
}
