//! A pretrained vision encoder as a source of memory tokens: a DINOv2
//! encoder directory (`fusecap encoders import`), its patch grid average-pooled
//! to `tokens` × `tokens`, and a learned projection to `d_model`.
//!
//! The stem of the vision encoder when a config names a `vision_encoder`
//! (`vision.rs`). Only frozen encoders so far (`freeze: false` is refused): the
//! encoder's output is detached, and its weights come from its own directory,
//! outside the model's trainable variables.
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::encoders::dinov2::Dinov2;

fn frozen() -> bool {
    true
}

/// `vision_encoder` in a model config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VisionEncoderSpec {
    /// "dinov2".
    pub kind: String,
    /// The encoder directory.
    pub dir: PathBuf,
    #[serde(default = "frozen")]
    pub freeze: bool,
    /// Input side in pixels, a multiple of the patch size (14).
    pub image_size: usize,
    /// Side of the pooled token grid handed to the decoder; divides the patch grid.
    pub tokens: usize,
}

impl VisionEncoderSpec {
    /// Why the spec cannot work with an encoder of patch size `patch`, if it cannot.
    pub fn check(&self, patch: usize) -> std::result::Result<(), String> {
        if self.kind != "dinov2" {
            return Err(format!(
                "vision_encoder kind {:?} is not supported: use \"dinov2\"",
                self.kind
            ));
        }
        if !self.freeze {
            return Err("vision_encoder freeze: false (fine-tuning) is not supported yet".into());
        }
        if patch == 0 || self.image_size == 0 || !self.image_size.is_multiple_of(patch) {
            return Err(format!(
                "vision_encoder image_size {} is not a positive multiple of the patch size {patch}",
                self.image_size
            ));
        }
        let grid = self.image_size / patch;
        if self.tokens == 0 || !grid.is_multiple_of(self.tokens) {
            return Err(format!(
                "vision_encoder tokens {} does not divide the {grid}x{grid} patch grid of a {}-pixel input",
                self.tokens, self.image_size
            ));
        }
        Ok(())
    }
}

/// Frozen DINOv2 -> pooled patch tokens -> learned projection.
#[derive(Clone)]
pub struct PretrainedVision {
    encoder: Arc<Dinov2>,
    proj: candle_nn::Linear,
    spec: VisionEncoderSpec,
}

impl std::fmt::Debug for PretrainedVision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainedVision")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PretrainedVision {
    /// Loads the encoder from `spec.dir`; the projection comes from `vb` (`proj.weight`, `proj.bias`).
    pub fn load(
        spec: &VisionEncoderSpec,
        d_model: usize,
        vb: VarBuilder,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let encoder = Dinov2::load(&spec.dir, device)?;
        Ok(Self::new(spec, encoder, d_model, vb)?)
    }

    /// With an encoder already built.
    pub fn new(
        spec: &VisionEncoderSpec,
        encoder: Dinov2,
        d_model: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        spec.check(encoder.config.patch_size)
            .map_err(candle_core::Error::Msg)?;
        let proj = candle_nn::linear(encoder.config.hidden_size, d_model, vb.pp("proj"))?;
        Ok(PretrainedVision {
            encoder: Arc::new(encoder),
            proj,
            spec: spec.clone(),
        })
    }

    /// The image mean and std the encoder expects.
    pub fn normalisation(&self) -> ([f32; 3], [f32; 3]) {
        (
            self.encoder.config.image_mean,
            self.encoder.config.image_std,
        )
    }

    /// Number of memory tokens per image.
    pub fn num_tokens(&self) -> usize {
        self.spec.tokens * self.spec.tokens
    }

    /// images [B, 3, S, S], normalised with the encoder's mean and std, S =
    /// `image_size` -> [B, tokens², d_model].
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = images.dims4()?;
        if h != self.spec.image_size || w != self.spec.image_size {
            candle_core::bail!(
                "the pretrained vision encoder takes {0}x{0} images, got {h}x{w}",
                self.spec.image_size
            );
        }
        let grid = self.spec.image_size / self.encoder.config.patch_size;
        let hidden = self.encoder.forward(images)?.detach();
        let d = hidden.dim(2)?;
        let patches = hidden
            .narrow(1, 1, grid * grid)?
            .transpose(1, 2)?
            .reshape((b, d, grid, grid))?;
        let k = grid / self.spec.tokens;
        let pooled = patches
            .avg_pool2d(k)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()?;
        self.proj.forward(&pooled)
    }
}
