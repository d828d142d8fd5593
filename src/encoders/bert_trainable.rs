//! A BERT forward pass that records gradients, for fine-tuning.
//!
//! candle-transformers' `BertModel` normalises with candle-nn's fused layer
//! norm, which records no gradient (docs/candle-notes.md): fine-tuned through
//! it, no BERT weight would learn. This is the same computation (Hugging
//! Face's post-norm BERT with absolute positions) over the same tensor names,
//! built from plain ops; `bert::TextEncoder` uses it only when gradients are
//! wanted, and a test holds the two to the same outputs.
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use super::ops::{norm, softmax};

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub(super) struct TrainableBert {
    words: Embedding,
    positions: Tensor,
    /// Row 0 of the token-type table: every token is of type 0.
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

impl TrainableBert {
    pub(super) fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let ln = |vb: VarBuilder| candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"));
        let emb = vb.pp("embeddings");
        let layer = |i: usize| -> Result<Layer> {
            let vb = vb.pp(format!("encoder.layer.{i}"));
            let attention = vb.pp("attention");
            let own = attention.pp("self");
            Ok(Layer {
                query: candle_nn::linear(h, h, own.pp("query"))?,
                key: candle_nn::linear(h, h, own.pp("key"))?,
                value: candle_nn::linear(h, h, own.pp("value"))?,
                attention_out: candle_nn::linear(h, h, attention.pp("output").pp("dense"))?,
                attention_norm: ln(attention.pp("output"))?,
                intermediate: candle_nn::linear(
                    h,
                    cfg.intermediate_size,
                    vb.pp("intermediate").pp("dense"),
                )?,
                output: candle_nn::linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
                output_norm: ln(vb.pp("output"))?,
            })
        };
        Ok(TrainableBert {
            words: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            positions: emb
                .pp("position_embeddings")
                .get((cfg.max_position_embeddings, h), "weight")?,
            token_type: emb
                .pp("token_type_embeddings")
                .get((cfg.type_vocab_size, h), "weight")?
                .get(0)?,
            embedding_norm: ln(emb)?,
            layers: (0..cfg.num_hidden_layers)
                .map(layer)
                .collect::<Result<_>>()?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    /// ids [B, L] u32, mask [B, L] (1 = token) -> hidden states [B, L, H].
    pub(super) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.narrow(0, 0, l)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = norm(&self.embedding_norm, &x, true)?;
        // Padding keys get the lowest float, as Hugging Face's BERT does.
        let mask = mask.to_dtype(DType::F32)?;
        let key_bias = ((1.0 - mask)? * f64::from(f32::MIN))?.reshape((b, 1, 1, l))?;
        for layer in &self.layers {
            x = layer.forward(&x, &key_bias, self.heads, self.act)?;
        }
        Ok(x)
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        key_bias: &Tensor,
        heads: usize,
        act: HiddenAct,
    ) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let dh = h / heads;
        let split = |t: Tensor| t.reshape((b, l, heads, dh))?.transpose(1, 2)?.contiguous();
        let q = split((self.query.forward(x)? / (dh as f64).sqrt())?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(key_bias)?;
        let context = softmax(&scores, true)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, l, h))?;
        let x = norm(
            &self.attention_norm,
            &(self.attention_out.forward(&context)? + x)?,
            true,
        )?;
        let inner = self.intermediate.forward(&x)?;
        let inner = match act {
            HiddenAct::Gelu => inner.gelu_erf()?,
            HiddenAct::GeluApproximate => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        norm(
            &self.output_norm,
            &(self.output.forward(&inner)? + x)?,
            true,
        )
    }
}
