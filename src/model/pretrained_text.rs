//! A pretrained text encoder as the source of the question tokens: a BERT
//! encoder directory (`fusecap encoders import`, e.g. all-MiniLM-L6-v2) and a
//! learned projection to `d_model`.
//!
//! The model's own word-level tokenizer stays the one the data pipeline and
//! the decoder use. Each of its words is split once into the encoder's
//! WordPiece tokens; a question runs through BERT as `[CLS] pieces… [SEP]`,
//! and each word's output is the mean of its pieces' hidden states. So the
//! text memory keeps one token per question word, and everything downstream
//! (masks, question conditioning, attention reports) is unchanged.
//!
//! A frozen encoder (the default) stays in its directory and gives the same
//! features for the same question every time, so they are kept in memory,
//! keyed by the question's token ids: training asks the same questions many
//! times, and BERT runs once per distinct question. A fine-tuned one
//! (`freeze: false`) is part of the model, as a fine-tuned vision encoder is
//! (`pretrained.rs`): its weights are variables under `text.pretrained.encoder.`,
//! and every question runs through it with gradients.
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::feature_cache::{FeatureCache, Features};
use crate::encoders::bert;

/// `text_encoder` in a model config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextEncoderSpec {
    /// "bert".
    pub kind: String,
    /// The encoder directory.
    pub dir: PathBuf,
    #[serde(default = "super::pretrained::frozen")]
    pub freeze: bool,
    /// A fine-tuned encoder's learning rate as a fraction of the model's
    /// (1, the default, is not written).
    #[serde(
        default = "super::pretrained::full_rate",
        skip_serializing_if = "super::pretrained::is_full_rate"
    )]
    pub lr_scale: f64,
    /// As `VisionEncoderSpec::weights_xxh3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_xxh3: Option<String>,
}

impl TextEncoderSpec {
    /// Why the spec cannot work, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.kind != "bert" {
            return Err(format!(
                "text_encoder kind {:?} is not supported: use \"bert\"",
                self.kind
            ));
        }
        super::pretrained::check_lr_scale("text_encoder", self.freeze, self.lr_scale)
    }
}

/// Per word of a question, the range of its pieces in BERT's input.
type WordSpans = Vec<std::ops::Range<usize>>;

/// Distinct questions whose features are kept.
const CACHE_QUESTIONS: usize = 50_000;

/// BERT (frozen or fine-tuned) -> one feature per question word -> learned projection.
#[derive(Clone)]
pub struct PretrainedText {
    encoder: Arc<bert::TextEncoder>,
    fine_tuned: bool,
    /// The encoder's WordPiece ids of each word of the model's vocabulary, by id.
    pieces: Arc<Vec<Vec<u32>>>,
    cls: u32,
    sep: u32,
    proj: candle_nn::Linear,
    cache: Arc<FeatureCache<Vec<u32>>>,
}

impl std::fmt::Debug for PretrainedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainedText")
            .field("words", &self.pieces.len())
            .finish_non_exhaustive()
    }
}

impl PretrainedText {
    /// Loads the encoder from `spec.dir`; `words` is the model's vocabulary
    /// by id; the projection comes from `vb` (`proj.weight`, `proj.bias`).
    /// A fine-tuned encoder takes only its config and tokenizer from
    /// `spec.dir` and its weights from `vb` (`encoder.*`), recording
    /// gradients unless `for_inference`.
    pub fn load(
        spec: &TextEncoderSpec,
        words: &[String],
        d_model: usize,
        for_inference: bool,
        vb: VarBuilder,
        device: &Device,
    ) -> anyhow::Result<Self> {
        spec.check().map_err(anyhow::Error::msg)?;
        if !spec.freeze {
            let (config, tokenizer) = bert::read_config_and_tokenizer(&spec.dir)?;
            let encoder = bert::TextEncoder::with_gradients(
                config,
                tokenizer,
                vb.pp(super::pretrained::ENCODER_PREFIX),
                !for_inference,
            )?;
            return Self::build(encoder, true, words, d_model, vb);
        }
        let encoder = bert::TextEncoder::load(&spec.dir, device)?;
        Self::new(encoder, words, d_model, vb)
    }

    /// With a frozen encoder already built.
    pub fn new(
        encoder: bert::TextEncoder,
        words: &[String],
        d_model: usize,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        Self::build(encoder, false, words, d_model, vb)
    }

    fn build(
        encoder: bert::TextEncoder,
        fine_tuned: bool,
        words: &[String],
        d_model: usize,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        let unk = encoder.token_id("[UNK]")?;
        let pieces = words
            .iter()
            .map(|word| {
                let enc = encoder
                    .tokenizer
                    .encode(word.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("cannot split {word:?} into WordPieces: {e}"))?;
                let ids = enc.get_ids();
                // A word the encoder cannot split (a special token, say) is its
                // [UNK], so that every word has at least one piece to average.
                Ok(if ids.is_empty() {
                    vec![unk]
                } else {
                    ids.to_vec()
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let proj = candle_nn::linear(encoder.config.hidden_size, d_model, vb.pp("proj"))?;
        Ok(PretrainedText {
            cls: encoder.token_id("[CLS]")?,
            sep: encoder.token_id("[SEP]")?,
            encoder: Arc::new(encoder),
            fine_tuned,
            pieces: Arc::new(pieces),
            proj,
            cache: Arc::new(FeatureCache::new(CACHE_QUESTIONS)),
        })
    }

    fn hidden_size(&self) -> usize {
        self.encoder.config.hidden_size
    }

    /// ids: [B, Nt] u32 in the model's vocabulary, valid: [B, Nt] (1 = word)
    /// -> [B, Nt, d_model]; padding positions get the projection of zero.
    pub fn forward(&self, ids: &Tensor, valid: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if valid.dims() != ids.dims() {
            candle_core::bail!(
                "question ids {:?} and their mask {:?} differ in shape",
                ids.dims(),
                valid.dims()
            );
        }
        let ids = ids.to_vec2::<u32>()?;
        let valid = valid.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        // Per row, the positions that hold a word.
        let positions: Vec<Vec<usize>> = valid
            .iter()
            .map(|v| (0..t).filter(|&i| v[i] > 0.5).collect())
            .collect();
        let questions: Vec<Vec<u32>> = ids
            .iter()
            .zip(&positions)
            .map(|(row, at)| at.iter().map(|&i| row[i]).collect())
            .collect();
        if self.fine_tuned {
            return self
                .proj
                .forward(&self.word_states(&questions, &positions, t)?);
        }
        let features = self.word_features(&questions)?;
        let h = self.hidden_size();
        let mut flat = vec![0f32; b * t * h];
        for (row, (at, feats)) in positions.iter().zip(&features).enumerate() {
            for (word, &pos) in at.iter().enumerate() {
                let at = (row * t + pos) * h;
                flat[at..at + h].copy_from_slice(&feats[word * h..(word + 1) * h]);
            }
        }
        let x = Tensor::from_vec(flat, (b, t, h), self.proj.weight().device())?;
        self.proj.forward(&x)
    }

    /// How many distinct questions' features are held.
    pub fn cached_questions(&self) -> usize {
        self.cache.len()
    }

    /// The per-word features of each question (model token ids, no
    /// padding), [words × hidden] row by row, from the cache or from BERT.
    pub fn word_features(&self, questions: &[Vec<u32>]) -> Result<Vec<Features>> {
        self.cache
            .get_or_compute(questions, |missing| self.run_encoder(missing))
    }

    /// Each word's state, the mean of its pieces' hidden states, at its
    /// place among `t` positions (`positions`, row by row), as one tensor
    /// [B, t, hidden] that records gradients; other places are zero.
    fn word_states(
        &self,
        questions: &[Vec<u32>],
        positions: &[Vec<usize>],
        t: usize,
    ) -> Result<Tensor> {
        let questions: Vec<&Vec<u32>> = questions.iter().collect();
        let (hidden, spans) = self.hidden_states(&questions)?;
        let (b, l, _) = hidden.dims3()?;
        let mut mean = vec![0f32; b * t * l];
        for (row, (at, word_spans)) in positions.iter().zip(&spans).enumerate() {
            for (&pos, span) in at.iter().zip(word_spans) {
                let share = 1.0 / span.len().max(1) as f32;
                for piece in span.clone() {
                    mean[(row * t + pos) * l + piece] = share;
                }
            }
        }
        Tensor::from_vec(mean, (b, t, l), hidden.device())?.matmul(&hidden)
    }

    /// Runs BERT over `questions` in one padded batch and averages each word's pieces.
    fn run_encoder(&self, questions: &[&Vec<u32>]) -> Result<Vec<Features>> {
        let (hidden, spans) = self.hidden_states(questions)?;
        let hidden = hidden.detach().to_vec3::<f32>()?;
        let h = self.hidden_size();
        Ok(hidden
            .iter()
            .zip(&spans)
            .map(|(states, word_spans)| {
                let mut out = vec![0f32; word_spans.len() * h];
                for (word, span) in word_spans.iter().enumerate() {
                    let n = span.len().max(1) as f32;
                    let dst = &mut out[word * h..(word + 1) * h];
                    for state in &states[span.clone()] {
                        for (d, s) in dst.iter_mut().zip(state) {
                            *d += s / n;
                        }
                    }
                }
                Features::from(out)
            })
            .collect())
    }

    /// BERT's hidden states [B, L, hidden] of `questions` as `[CLS] pieces…
    /// [SEP]` in one padded batch, and per question, per word, the range of
    /// its pieces.
    fn hidden_states(&self, questions: &[&Vec<u32>]) -> Result<(Tensor, Vec<WordSpans>)> {
        let limit = self
            .encoder
            .config
            .max_position_embeddings
            .saturating_sub(2);
        let mut inputs = Vec::with_capacity(questions.len());
        // Per question, per word: the range of its pieces in the input.
        let mut spans: Vec<WordSpans> = Vec::with_capacity(questions.len());
        for question in questions {
            let mut input = vec![self.cls];
            let mut word_spans = Vec::with_capacity(question.len());
            for &id in question.iter() {
                let pieces = self
                    .pieces
                    .get(id as usize)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let room = (limit + 1).saturating_sub(input.len());
                let start = input.len();
                input.extend(pieces.iter().take(room));
                word_spans.push(start..input.len());
            }
            input.push(self.sep);
            inputs.push(input);
            spans.push(word_spans);
        }
        let (hidden, _) = self
            .encoder
            .encode_ids(&inputs)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        Ok((hidden, spans))
    }
}
