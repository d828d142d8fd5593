//! The decoder: masked self-attention -> fusion -> feed-forward, per layer.
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::attention::{causal_mask, Attention, KeyValue};
use super::blocks::{embedding_table, FeedForward, LayerNorm};
use super::config::Config;
use super::fusion::{CrossKv, CrossWeights, FusionLayer};
use super::linear::Linear;

/// Per-layer self-attention keys/values of the tokens decoded so far.
#[derive(Debug, Clone, Default)]
pub struct SelfCache {
    pub layers: Vec<Option<KeyValue>>,
}

impl SelfCache {
    pub fn new(n_layers: usize) -> Self {
        SelfCache {
            layers: vec![None; n_layers],
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> Result<usize> {
        match self.layers.first() {
            Some(Some(kv)) => kv.len(),
            _ => Ok(0),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reorders the batch rows (beam reselection).
    pub fn select(&mut self, index: &Tensor) -> Result<()> {
        for kv in self.layers.iter_mut().flatten() {
            *kv = kv.select(index)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    ln_self: LayerNorm,
    self_attn: Attention,
    fusion: FusionLayer,
    ln_ff: LayerNorm,
    ff: FeedForward,
}

impl DecoderLayer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(DecoderLayer {
            ln_self: LayerNorm::new(cfg, vb.pp("ln_self"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            fusion: FusionLayer::new(cfg, &vb)?,
            ln_ff: LayerNorm::new(cfg, vb.pp("ln_ff"))?,
            ff: FeedForward::new(cfg, vb.pp("ff"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        causal: &Tensor,
        cross: &CrossKv,
        cache: Option<&mut Option<KeyValue>>,
    ) -> Result<(Tensor, CrossWeights)> {
        let x = (x + self.self_attn.self_attend(
            &self.ln_self.forward(x)?,
            None,
            Some(causal),
            cache,
        )?)?;
        let (x, weights) = self.fusion.forward(&x, cross)?;
        let x = (&x + self.ff.forward(&self.ln_ff.forward(&x)?)?)?;
        Ok((x, weights))
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    token_embed: Tensor,
    /// The LM head, tied to the token embeddings.
    lm_head: Linear,
    pos_embed: Tensor,
    pub layers: Vec<DecoderLayer>,
    ln_f: LayerNorm,
}

impl Decoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let token_embed = embedding_table(cfg.vocab_size, cfg.d_model, "token_embed", &vb)?;
        Ok(Decoder {
            lm_head: Linear::from_weights(token_embed.clone(), None, cfg.inference)?,
            token_embed,
            pos_embed: embedding_table(cfg.max_decode_len, cfg.d_model, "pos_embed", &vb)?,
            layers: (0..cfg.decoder_layers)
                .map(|i| DecoderLayer::new(cfg, vb.pp(format!("layers.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(cfg, vb.pp("ln_f"))?,
        })
    }

    pub fn fusion_layers(&self) -> impl Iterator<Item = &FusionLayer> {
        self.layers.iter().map(|l| &l.fusion)
    }

    /// tokens: [B·K, T] at positions `past..past+T` -> logits [B·K, T, vocab].
    /// `cache` holds the earlier positions' self-attention keys/values and is
    /// extended in place; without it, `tokens` must start at position 0.
    /// `weights`, if given, receives each layer's cross-attention weights.
    pub fn forward(
        &self,
        tokens: &Tensor,
        cross: &[CrossKv],
        mut cache: Option<&mut SelfCache>,
        mut weights: Option<&mut Vec<CrossWeights>>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let past = match cache.as_deref() {
            Some(c) => c.len()?,
            None => 0,
        };
        if past + t > self.pos_embed.dim(0)? {
            candle_core::bail!(
                "decoder sequence of {} tokens exceeds max_decode_len {}",
                past + t,
                self.pos_embed.dim(0)?
            );
        }
        let embedded = self
            .token_embed
            .embedding(&tokens.flatten_all()?)?
            .reshape((b, t, ()))?;
        let mut x = embedded.broadcast_add(&self.pos_embed.narrow(0, past, t)?)?;
        let causal = causal_mask(t, past, tokens.device())?;
        for (i, (layer, cross)) in self.layers.iter().zip(cross).enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let (next, w) = layer.forward(&x, &causal, cross, layer_cache)?;
            x = next;
            if let Some(all) = weights.as_deref_mut() {
                all.push(w);
            }
        }
        // One [B·T, d] × [d, vocab] product (`Linear` takes the rows): a
        // broadcast batched matmul of B one-row products was the slow part of
        // a beam-search step.
        self.lm_head.forward(&self.ln_f.forward(&x)?)
    }
}
