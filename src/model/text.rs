//! The text encoder: question tokens -> bidirectional transformer blocks.
//!
//! With `Config::text_cross_attention`, each block first lets every question
//! token attend to the image patches, so a word like "brown" can look for
//! brown patches itself. Without it, "is there a brown shape?" asks the decoder
//! to find the colour word and then compare it with the image in two hops,
//! and training stalled at the answer prior on such questions (README).
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::attention::KeyMask;
use super::blocks::{embedding_table, CrossAttention, EncoderBlock, LayerNorm};
use super::config::Config;

#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embed: Tensor,
    pos_embed: Tensor,
    /// One per block when `cfg.text_cross_attention`, else empty.
    image_attn: Vec<CrossAttention>,
    blocks: Vec<EncoderBlock>,
    ln_f: LayerNorm,
}

impl TextEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let image_layers = if cfg.text_cross_attention {
            cfg.text_layers
        } else {
            0
        };
        Ok(TextEncoder {
            token_embed: embedding_table(cfg.vocab_size, cfg.d_model, "token_embed", &vb)?,
            pos_embed: embedding_table(cfg.max_text_len, cfg.d_model, "pos_embed", &vb)?,
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

    /// ids: [B, Nt] u32, mask: the question's key mask, image: the vision
    /// encoder's output [B, Nv, d] (used when the encoder attends to it) -> [B, Nt, d]
    pub fn forward(&self, ids: &Tensor, mask: &KeyMask, image: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let tokens = self
            .token_embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, ()))?;
        let mut x = tokens.broadcast_add(&self.pos_embed.narrow(0, 0, t)?)?;
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
