//! The text encoder: question tokens -> bidirectional transformer blocks.
//!
//! With `Config::text_cross_attention`, each block first lets every question
//! token attend to the image patches, so a word like "brown" can look for
//! brown patches itself. Without it, "is there a brown shape?" asks the decoder
//! to find the colour word and then compare it with the image in two hops,
//! and training stalled at the answer prior on such questions (README).
//!
//! With `Config::text_encoder`, a pretrained BERT's per-word features
//! (`pretrained_text.rs`) replace the token and position tables; the blocks
//! follow as before.
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::attention::KeyMask;
use super::blocks::{embedding_table, CrossAttention, EncoderBlock, LayerNorm};
use super::config::Config;
use super::pretrained_text::PretrainedText;

/// Where the question tokens' first vectors come from.
#[derive(Debug, Clone)]
enum Embedding {
    /// Learned token and position tables.
    Tables {
        token: Tensor,
        position: Tensor,
    },
    Pretrained(PretrainedText),
}

#[derive(Debug, Clone)]
pub struct TextEncoder {
    embedding: Embedding,
    /// One per block when `cfg.text_cross_attention`, else empty.
    image_attn: Vec<CrossAttention>,
    blocks: Vec<EncoderBlock>,
    ln_f: LayerNorm,
}

impl TextEncoder {
    /// `words`: the model's vocabulary by id, needed only with a `text_encoder`.
    pub fn new(cfg: &Config, words: &[String], vb: VarBuilder) -> Result<Self> {
        let embedding = match &cfg.text_encoder {
            Some(spec) => {
                if words.len() != cfg.vocab_size {
                    candle_core::bail!(
                        "a text_encoder needs the model's vocabulary ({} words), got {}",
                        cfg.vocab_size,
                        words.len()
                    );
                }
                let p = PretrainedText::load(
                    spec,
                    words,
                    cfg.d_model,
                    cfg.inference,
                    vb.pp("pretrained"),
                    vb.device(),
                )
                .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
                Embedding::Pretrained(p)
            }
            None => Embedding::Tables {
                token: embedding_table(cfg.vocab_size, cfg.d_model, "token_embed", &vb)?,
                position: embedding_table(cfg.max_text_len, cfg.d_model, "pos_embed", &vb)?,
            },
        };
        let image_layers = if cfg.text_cross_attention {
            cfg.text_layers
        } else {
            0
        };
        Ok(TextEncoder {
            embedding,
            image_attn: (0..image_layers)
                .map(|i| {
                    let vb = vb.pp(format!("blocks.{i}"));
                    CrossAttention::new(cfg, vb.pp("ln_image"), vb.pp("image_attn"))
                })
                .collect::<Result<_>>()?,
            blocks: (0..cfg.text_layers)
                .map(|i| EncoderBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(cfg, vb.pp("ln_f"))?,
        })
    }

    /// ids: [B, Nt] u32, valid: [B, Nt] (1 = token) and `mask` made from it,
    /// image: the vision encoder's output [B, Nv, d] (used when the encoder
    /// attends to it) -> [B, Nt, d]
    pub fn forward(
        &self,
        ids: &Tensor,
        valid: &Tensor,
        mask: &KeyMask,
        image: &Tensor,
    ) -> Result<Tensor> {
        let mut x = match &self.embedding {
            Embedding::Tables { token, position } => {
                let (b, t) = ids.dims2()?;
                let tokens = token.embedding(&ids.flatten_all()?)?.reshape((b, t, ()))?;
                tokens.broadcast_add(&position.narrow(0, 0, t)?)?
            }
            Embedding::Pretrained(p) => p.forward(ids, valid)?,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(image_attn) = self.image_attn.get(i) {
                let kv = image_attn.project_kv(image)?;
                let (seen, _) = image_attn.forward(&x, &kv, None)?;
                x = (x + seen)?;
            }
            x = block.forward(&x, Some(mask))?;
        }
        self.ln_f.forward(&x)
    }
}
