//! The vision encoder: pixels -> patch tokens -> transformer blocks.
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::blocks::{embedding_table, EncoderBlock, LayerNorm, Linear};
use super::Config;

#[derive(Debug, Clone)]
pub struct VisionEncoder {
    patch_embed: Linear,
    pos_embed: Tensor,
    blocks: Vec<EncoderBlock>,
    ln_f: LayerNorm,
    patch_size: usize,
}

impl VisionEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let patch_dim = 3 * cfg.patch_size * cfg.patch_size;
        Ok(VisionEncoder {
            patch_embed: Linear::new(patch_dim, cfg.d_model, true, cfg, vb.pp("patch_embed"))?,
            pos_embed: embedding_table(cfg.num_patches(), cfg.d_model, "pos_embed", &vb)?,
            blocks: (0..cfg.vision_layers)
                .map(|i| EncoderBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(cfg, vb.pp("ln_f"))?,
            patch_size: cfg.patch_size,
        })
    }

    /// images: [B, 3, S, S], normalised -> [B, Nv, d]
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        // [B, 3, gh, p, gw, p] -> [B, gh, gw, 3, p, p] -> [B, Nv, 3·p·p]
        let patches = images
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, gh * gw, c * p * p))?;
        let mut x = self
            .patch_embed
            .forward(&patches)?
            .broadcast_add(&self.pos_embed)?;
        for block in &self.blocks {
            x = block.forward(&x, None)?;
        }
        self.ln_f.forward(&x)
    }
}
