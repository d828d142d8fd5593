//! Vision tokens that read the question (`Config::question_vision_layers`).
//!
//! After the text encoder, each layer lets every vision token attend to the
//! question's tokens, then to the other vision tokens, then applies an FFN.
//! An object's token holds its own colour, shape and place together, so it
//! can tell whether the question names it, and its neighbours can tell that
//! they sit next to it. Without this the decoder must match a conjunction
//! ("the small red circle") against the image tokens in one dot product.
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::KeyMask;
use super::blocks::{CrossAttention, EncoderBlock};
use super::Config;

#[derive(Debug, Clone)]
struct ConditioningLayer {
    read_question: CrossAttention,
    block: EncoderBlock,
}

#[derive(Debug, Clone)]
pub struct QuestionConditioning {
    layers: Vec<ConditioningLayer>,
}

impl QuestionConditioning {
    /// `None` when the config asks for no layers, so older models load unchanged.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Option<Self>> {
        if cfg.question_vision_layers == 0 {
            return Ok(None);
        }
        let layers = (0..cfg.question_vision_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(ConditioningLayer {
                    read_question: CrossAttention::new(
                        cfg,
                        vb.pp("ln_question"),
                        vb.pp("question_attn"),
                    )?,
                    block: EncoderBlock::new(cfg, vb.clone())?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(QuestionConditioning { layers }))
    }

    /// vision [B, Nv, d], text [B, Nt, d] with its key mask -> vision [B, Nv, d]
    pub fn forward(&self, vision: &Tensor, text: &Tensor, text_mask: &KeyMask) -> Result<Tensor> {
        let mut x = vision.clone();
        for layer in &self.layers {
            let kv = layer.read_question.project_kv(text)?;
            let mask = layer.read_question.mask_for(text_mask)?;
            let (read, _) = layer.read_question.forward(&x, &kv, Some(&mask))?;
            x = layer.block.forward(&(x + read)?, None)?;
        }
        Ok(x)
    }
}
