//! The fusion model: vision encoder + text encoder -> decoder with cross-attention fusion.
pub mod attention;
pub mod blocks;
pub mod conditioning;
pub mod config;
pub mod decoder;
pub mod dir;
pub mod feature_cache;
pub mod feed_forward;
pub mod fused;
pub mod fusion;
pub mod heads;
pub mod linear;
pub mod pretrained;
pub mod pretrained_text;
pub mod product;
pub mod row_product;
pub mod text;
pub mod vision;
pub mod weight_grads;

use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

pub use attention::KeyMask;
use conditioning::QuestionConditioning;
pub use config::{
    Activation, Config, FineTunedEncoder, Fusion, MentionTarget, ResizeMode, VisionPositions,
    VisionStem,
};
pub use decoder::{Decoder, SelfCache};
pub use fusion::{AttentionParts, CrossKv, CrossWeights, FusionLayer, Memory};
use text::TextEncoder;
use vision::VisionEncoder;

#[derive(Debug, Clone)]
pub struct FusionModel {
    pub cfg: Config,
    vision: VisionEncoder,
    text: TextEncoder,
    conditioning: Option<QuestionConditioning>,
    /// [2, d]: added to the vision (row 0) and text (row 1) memories under `concat`.
    modality_embed: Option<Tensor>,
    /// Per vision token, logits of colour, shape and size (`attribute_loss`).
    attribute_head: Option<linear::Linear>,
    /// Per question-conditioned vision token, the logit that the question
    /// describes its object (`mention_loss`).
    mention_head: Option<linear::Linear>,
    pub decoder: Decoder,
}

/// A linear head from `d_model` to `outputs`, if its loss has a weight.
fn auxiliary_head(
    cfg: &Config,
    weight: f32,
    outputs: usize,
    vb: VarBuilder,
) -> Result<Option<linear::Linear>> {
    if weight > 0.0 {
        Ok(Some(linear::Linear::new(
            cfg.d_model,
            outputs,
            true,
            cfg,
            vb,
        )?))
    } else {
        Ok(None)
    }
}

/// What the auxiliary heads of `FusionModel::forward_with_auxiliary` say.
#[derive(Debug, Clone)]
pub struct Auxiliary {
    /// [N, Nv, 17]: per image, each token's colour, shape and size logits.
    pub attributes: Option<Tensor>,
    /// [B, Nv]: per input, each conditioned token's mention logit.
    pub mentions: Option<Tensor>,
}

/// Classes of the attribute head: the scenes' 8 colours, 4 shapes and 2
/// sizes, each plus "no object" (`data::cells` makes the targets).
pub const ATTRIBUTE_CLASSES: [usize; 3] = [9, 5, 3];

impl FusionModel {
    /// A model whose config names no `text_encoder`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::with_words(cfg, &[], vb)
    }

    /// `words`: the model's vocabulary by id (`TextTokenizer::words`), which a
    /// `text_encoder` splits into its own tokens; other models ignore it.
    pub fn with_words(cfg: &Config, words: &[String], vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let modality_embed = if cfg.fusion.joint_memory() {
            Some(blocks::embedding_table(
                2,
                cfg.d_model,
                "modality_embed",
                &vb,
            )?)
        } else {
            None
        };
        Ok(FusionModel {
            cfg: cfg.clone(),
            vision: VisionEncoder::new(cfg, vb.pp("vision"))?,
            text: TextEncoder::new(cfg, words, vb.pp("text"))?,
            conditioning: QuestionConditioning::new(cfg, vb.pp("conditioning"))?,
            modality_embed,
            attribute_head: auxiliary_head(
                cfg,
                cfg.attribute_loss,
                ATTRIBUTE_CLASSES.iter().sum(),
                vb.pp("attribute_head"),
            )?,
            mention_head: auxiliary_head(cfg, cfg.mention_loss, 1, vb.pp("mention_head"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
        })
    }

    /// images: [B, 3, S, S]; text_ids: [B, Nt] u32; text_valid: [B, Nt] (1 = token).
    pub fn encode(
        &self,
        images: &Tensor,
        text_ids: &Tensor,
        text_valid: &Tensor,
    ) -> Result<Memory> {
        self.encode_shared(images, None, text_ids, text_valid)
    }

    /// As `encode`, with `images` [N, 3, S, S] holding each distinct image once
    /// and `image_of` [B] u32 naming the image of each of the B inputs.
    pub fn encode_shared(
        &self,
        images: &Tensor,
        image_of: Option<&Tensor>,
        text_ids: &Tensor,
        text_valid: &Tensor,
    ) -> Result<Memory> {
        let vision = self.vision.forward(images)?;
        self.encode_tokens(&vision, image_of, text_ids, text_valid)
    }

    /// As `encode_shared`, from the vision encoder's tokens of the images.
    fn encode_tokens(
        &self,
        vision: &Tensor,
        image_of: Option<&Tensor>,
        text_ids: &Tensor,
        text_valid: &Tensor,
    ) -> Result<Memory> {
        let text_mask = KeyMask::from_valid(text_valid)?;
        let vision = match image_of {
            Some(rows) => vision.index_select(rows, 0)?,
            None => vision.clone(),
        };
        let text = self
            .text
            .forward(text_ids, text_valid, &text_mask, &vision)?;
        let vision = match &self.conditioning {
            Some(conditioning) => conditioning.forward(&vision, &text, &text_mask)?,
            None => vision,
        };
        Ok(Memory {
            text,
            vision,
            text_valid: text_valid.to_dtype(candle_core::DType::F32)?,
        })
    }

    /// Every decoder layer's cross-attention keys/values, computed once per input.
    pub fn cross_kv(&self, memory: &Memory) -> Result<Vec<CrossKv>> {
        let joint = match &self.modality_embed {
            Some(types) => {
                let vision = memory.vision.broadcast_add(&types.get(0)?)?;
                let text = memory.text.broadcast_add(&types.get(1)?)?;
                let joint = Tensor::cat(&[&vision, &text], 1)?;
                let (b, nv, _) = memory.vision.dims3()?;
                let vision_valid = Tensor::ones((b, nv), candle_core::DType::F32, vision.device())?;
                let valid = Tensor::cat(&[&vision_valid, &memory.text_valid], 1)?;
                Some((joint, KeyMask::from_valid(&valid)?))
            }
            None => None,
        };
        self.decoder
            .fusion_layers()
            .map(|layer| layer.project(memory, joint.as_ref()))
            .collect()
    }

    /// Teacher-forced logits [B, T, vocab] for decoder input `tokens` [B, T];
    /// `images` and `image_of` as in `encode_shared`.
    pub fn forward(
        &self,
        images: &Tensor,
        image_of: &Tensor,
        text_ids: &Tensor,
        text_valid: &Tensor,
        tokens: &Tensor,
    ) -> Result<Tensor> {
        Ok(self
            .forward_with_auxiliary(images, image_of, text_ids, text_valid, tokens)?
            .0)
    }

    /// `forward`, plus the outputs of the auxiliary heads the model has.
    pub fn forward_with_auxiliary(
        &self,
        images: &Tensor,
        image_of: &Tensor,
        text_ids: &Tensor,
        text_valid: &Tensor,
        tokens: &Tensor,
    ) -> Result<(Tensor, Auxiliary)> {
        let vision = self.vision.forward(images)?;
        let attributes = match &self.attribute_head {
            Some(head) => Some(head.forward(&vision)?),
            None => None,
        };
        let memory = self.encode_tokens(&vision, Some(image_of), text_ids, text_valid)?;
        let mentions = match &self.mention_head {
            Some(head) => Some(head.forward(&memory.vision)?.squeeze(2)?),
            None => None,
        };
        let cross = self.cross_kv(&memory)?;
        let logits = self.decoder.forward(tokens, &cross, None, None)?;
        Ok((
            logits,
            Auxiliary {
                attributes,
                mentions,
            },
        ))
    }

    /// Writes the image features a frozen pretrained vision encoder has
    /// computed to its directory, for later runs; returns the file written.
    pub fn persist_feature_caches(&self) -> anyhow::Result<Option<std::path::PathBuf>> {
        match self.vision.pretrained() {
            Some(p) => p.persist(),
            None => Ok(None),
        }
    }

    /// `tanh(alpha)` per decoder layer (vision, text); empty unless gated.
    pub fn gate_values(&self) -> Result<Vec<(f32, f32)>> {
        Ok(self
            .decoder
            .fusion_layers()
            .map(|l| l.gate_values())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect())
    }
}

/// Right-pads token sequences to a common length (at least 1, at most `max_len`)
/// and returns the ids [B, T] and the validity mask [B, T] (1 = token).
pub fn pad_tokens(
    seqs: &[Vec<u32>],
    pad_id: u32,
    max_len: usize,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let len = seqs
        .iter()
        .map(|s| s.len().min(max_len))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut ids = Vec::with_capacity(seqs.len() * len);
    let mut valid = Vec::with_capacity(seqs.len() * len);
    for seq in seqs {
        let seq = &seq[..seq.len().min(max_len)];
        ids.extend_from_slice(seq);
        ids.extend(std::iter::repeat_n(pad_id, len - seq.len()));
        valid.extend(std::iter::repeat_n(1f32, seq.len()));
        valid.extend(std::iter::repeat_n(0f32, len - seq.len()));
    }
    Ok((
        Tensor::from_vec(ids, (seqs.len(), len), device)?,
        Tensor::from_vec(valid, (seqs.len(), len), device)?,
    ))
}
