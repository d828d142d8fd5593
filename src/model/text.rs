//! The text encoder: question tokens -> bidirectional transformer blocks.
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::attention::KeyMask;
use super::blocks::{embedding_table, EncoderBlock, LayerNorm};
use super::Config;

#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embed: Tensor,
    pos_embed: Tensor,
    blocks: Vec<EncoderBlock>,
    ln_f: LayerNorm,
}

impl TextEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(TextEncoder {
            token_embed: embedding_table(cfg.vocab_size, cfg.d_model, "token_embed", &vb)?,
            pos_embed: embedding_table(cfg.max_text_len, cfg.d_model, "pos_embed", &vb)?,
            blocks: (0..cfg.text_layers)
                .map(|i| EncoderBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(cfg, vb.pp("ln_f"))?,
        })
    }

    /// ids: [B, Nt] u32, mask: the question's key mask -> [B, Nt, d]
    pub fn forward(&self, ids: &Tensor, mask: &KeyMask) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let tokens = self
            .token_embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, ()))?;
        let mut x = tokens.broadcast_add(&self.pos_embed.narrow(0, 0, t)?)?;
        for block in &self.blocks {
            x = block.forward(&x, Some(mask))?;
        }
        self.ln_f.forward(&x)
    }
}
