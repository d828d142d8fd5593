//! A pretrained vision encoder as a source of memory tokens: a DINOv2
//! encoder directory (`fusecap encoders import`), its patch grid average-pooled
//! to `tokens` × `tokens`, and a learned projection to `d_model`.
//!
//! The stem of the vision encoder when a config names a `vision_encoder`
//! (`vision.rs`). A frozen encoder (`freeze: true`, the default) is read from
//! its own directory, outside the model's trainable variables, and its output
//! is detached. A fine-tuned one (`freeze: false`) is part of the model: its
//! weights are variables under `vision.pretrained.encoder.`, copied from the
//! directory when the model is initialised (`dir::init_model_with_words`) and
//! saved in the model's own `model.safetensors`; every image runs through it
//! with gradients, and nothing is cached.
//!
//! The pooled features of each image a frozen encoder sees are kept, keyed by a hash of its
//! pixels (`feature_cache.rs`), rounded to f16 so that features read back
//! from the disk cache equal freshly computed ones, and a resumed run
//! trains as an uninterrupted one. The encoder directory holds the cache
//! file (`features-{image_size}px-{tokens}x{tokens}.cache`), which
//! `FusionModel::persist_feature_caches` writes and the next model reads
//! when it first encodes an image.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use super::feature_cache::{hash_file, hash_floats, FeatureCache, Features};
use crate::encoders::dinov2::Dinov2;

/// Images whose features are kept in memory (16 tokens of 384 floats: 250 MB).
const CACHE_IMAGES: usize = 40_000;

/// Where a fine-tuned encoder's weights sit under the pretrained block's variables.
pub const ENCODER_PREFIX: &str = "encoder";

/// The default of an encoder spec's `freeze`.
pub(super) fn frozen() -> bool {
    true
}

/// The default of an encoder spec's `lr_scale`: the model's learning rate.
pub(super) fn full_rate() -> f64 {
    1.0
}

pub(super) fn is_full_rate(scale: &f64) -> bool {
    *scale == 1.0
}

/// Why an encoder spec's `lr_scale` cannot work, if it cannot; `which` names the spec.
pub(super) fn check_lr_scale(
    which: &str,
    freeze: bool,
    lr_scale: f64,
) -> std::result::Result<(), String> {
    if !(lr_scale.is_finite() && lr_scale > 0.0) {
        Err(format!(
            "{which} lr_scale {lr_scale} must be a positive number"
        ))
    } else if freeze && lr_scale != 1.0 {
        Err(format!(
            "{which} lr_scale applies to a fine-tuned encoder only: set freeze to false, or remove lr_scale"
        ))
    } else {
        Ok(())
    }
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
    /// A fine-tuned encoder's learning rate as a fraction of the model's
    /// (1, the default, is not written).
    #[serde(default = "full_rate", skip_serializing_if = "is_full_rate")]
    pub lr_scale: f64,
    /// Of a frozen encoder: the XXH3-64 of the `model.safetensors` the model
    /// was trained with, in hex, written with the model (`dir::save_config`)
    /// and checked when it is read (`dir::load_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_xxh3: Option<String>,
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
        check_lr_scale("vision_encoder", self.freeze, self.lr_scale)?;
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

/// The features of the images seen so far. A model loaded with an encoder
/// directory reads that directory's cache file on first use, not at load:
/// building a model must stay cheap, and it is built more than once (the
/// inference layout, the parameter count).
#[derive(Debug)]
struct LazyCache {
    file: Option<CacheFile>,
    loaded: OnceLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    features: FeatureCache<u64>,
    /// Of the encoder's weights and the settings: `None` without a cache
    /// file, or if the weights could not be read (then nothing is written).
    fingerprint: Option<u64>,
}

/// Where a model's image features persist between runs.
#[derive(Debug)]
struct CacheFile {
    path: PathBuf,
    weights: PathBuf,
    /// The pooling settings, part of the fingerprint.
    settings: String,
    /// Entries in the file as last read or written.
    saved: AtomicUsize,
}

impl LazyCache {
    fn loaded(&self, width: usize) -> &Loaded {
        self.loaded.get_or_init(|| {
            let fingerprint = self.file.as_ref().and_then(CacheFile::fingerprint);
            let features = self
                .file
                .as_ref()
                .zip(fingerprint)
                .and_then(|(file, fingerprint)| file.load(fingerprint, width))
                .unwrap_or_else(|| FeatureCache::new(CACHE_IMAGES));
            Loaded {
                features,
                fingerprint,
            }
        })
    }

    fn features(&self, width: usize) -> &FeatureCache<u64> {
        &self.loaded(width).features
    }
}

impl CacheFile {
    /// Of the encoder's weights and the settings; `None`, with a warning,
    /// if the weights cannot be read.
    fn fingerprint(&self) -> Option<u64> {
        match hash_file(&self.weights) {
            Ok(weights) => Some(XxHash3_64::oneshot(
                format!("{weights:016x} {}", self.settings).as_bytes(),
            )),
            Err(e) => {
                eprintln!("warning: {e:#}; image features are not cached on disk");
                None
            }
        }
    }

    /// The cached features of the same weights and settings, if the file has them.
    fn load(&self, fingerprint: u64, width: usize) -> Option<FeatureCache<u64>> {
        match FeatureCache::load(&self.path, fingerprint, width, CACHE_IMAGES) {
            Ok(Some(cache)) => {
                self.saved.store(cache.len(), Ordering::SeqCst);
                Some(cache)
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("warning: {e:#}; computing the features anew");
                None
            }
        }
    }
}

/// DINOv2 (frozen or fine-tuned) -> pooled patch tokens -> learned projection.
#[derive(Clone)]
pub struct PretrainedVision {
    encoder: Arc<Dinov2>,
    proj: candle_nn::Linear,
    spec: VisionEncoderSpec,
    cache: Arc<LazyCache>,
}

impl std::fmt::Debug for PretrainedVision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainedVision")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PretrainedVision {
    /// A frozen encoder is loaded from `spec.dir`; for training, the
    /// features it cached there for the same weights and settings are read on
    /// first use (for inference, features are kept in memory only).
    /// A fine-tuned one takes only its config from `spec.dir` and its weights
    /// from `vb` (`encoder.*`), recording gradients unless `for_inference`.
    /// The projection comes from `vb` (`proj.weight`, `proj.bias`).
    pub fn load(
        spec: &VisionEncoderSpec,
        d_model: usize,
        for_inference: bool,
        vb: VarBuilder,
        device: &Device,
    ) -> anyhow::Result<Self> {
        if !spec.freeze {
            let config = crate::encoders::dinov2::read_config(&spec.dir)?;
            let encoder =
                Dinov2::new(&config, vb.pp(ENCODER_PREFIX))?.with_gradients(!for_inference);
            return Ok(Self::with_cache(spec, encoder, d_model, vb, None)?);
        }
        let encoder = Dinov2::load(&spec.dir, device)?;
        // The file holds the features of the images a model was trained on
        // (166 MB for 24,000 images); for inference, reading it would cost a
        // single caption a second and 400 MB for images it almost never holds.
        let file = (!for_inference).then(|| CacheFile {
            path: spec.dir.join(format!(
                "features-{}px-{1}x{1}.cache",
                spec.image_size, spec.tokens
            )),
            weights: spec.dir.join("model.safetensors"),
            settings: format!(
                "{}px {}x{} mean-pooled patches, f16",
                spec.image_size, spec.tokens, spec.tokens
            ),
            saved: AtomicUsize::new(0),
        });
        Ok(Self::with_cache(spec, encoder, d_model, vb, file)?)
    }

    /// With an encoder already built, and (frozen) an empty cache kept in
    /// memory only. A fine-tuned spec trains `encoder` where its forward pass
    /// records gradients (`Dinov2::with_gradients`).
    pub fn new(
        spec: &VisionEncoderSpec,
        encoder: Dinov2,
        d_model: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::with_cache(spec, encoder, d_model, vb, None)
    }

    fn with_cache(
        spec: &VisionEncoderSpec,
        encoder: Dinov2,
        d_model: usize,
        vb: VarBuilder,
        file: Option<CacheFile>,
    ) -> Result<Self> {
        spec.check(encoder.config.patch_size)
            .map_err(candle_core::Error::Msg)?;
        let proj = candle_nn::linear(encoder.config.hidden_size, d_model, vb.pp("proj"))?;
        Ok(PretrainedVision {
            encoder: Arc::new(encoder),
            proj,
            spec: spec.clone(),
            cache: Arc::new(LazyCache {
                file,
                loaded: OnceLock::new(),
            }),
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

    /// Floats of one image's cached features.
    fn width(&self) -> usize {
        self.num_tokens() * self.encoder.config.hidden_size
    }

    /// How many images' features are held (reading the cache file, if
    /// that has not happened yet).
    pub fn cached_images(&self) -> usize {
        self.cache.features(self.width()).len()
    }

    /// Writes the cached features to the encoder directory if there are new
    /// ones; returns the file written, if any.
    pub fn persist(&self) -> anyhow::Result<Option<PathBuf>> {
        let (Some(file), Some(loaded)) = (&self.cache.file, self.cache.loaded.get()) else {
            return Ok(None);
        };
        let (features, Some(fingerprint)) = (&loaded.features, loaded.fingerprint) else {
            return Ok(None);
        };
        let held = features.len();
        if held == file.saved.load(Ordering::SeqCst) {
            return Ok(None);
        }
        features.save(&file.path, fingerprint, self.width())?;
        file.saved.store(held, Ordering::SeqCst);
        Ok(Some(file.path.clone()))
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
        if !self.spec.freeze {
            return self.proj.forward(&self.pooled_grid(images)?);
        }
        let keys: Vec<u64> = images
            .flatten_from(1)?
            .to_vec2::<f32>()?
            .iter()
            .map(|pixels| hash_floats(pixels))
            .collect();
        let features = self
            .cache
            .features(self.width())
            .get_or_compute(&keys, |missing| {
                let rows: Vec<u32> = missing
                    .iter()
                    .filter_map(|k| keys.iter().position(|key| key == *k))
                    .map(|i| i as u32)
                    .collect();
                let rows = Tensor::from_vec(rows, missing.len(), images.device())?;
                self.pooled(&images.index_select(&rows, 0)?)
            })?;
        let flat: Vec<f32> = features.iter().flat_map(|f| f.iter().copied()).collect();
        let pooled = Tensor::from_vec(
            flat,
            (b, self.num_tokens(), self.encoder.config.hidden_size),
            self.proj.weight().device(),
        )?;
        self.proj.forward(&pooled)
    }

    /// The encoder's patch grid of each image, average-pooled to `tokens` ×
    /// `tokens`: [B, tokens², hidden].
    fn pooled_grid(&self, images: &Tensor) -> Result<Tensor> {
        self.encoder.pooled_patches(images, self.spec.tokens)
    }

    /// `pooled_grid` of a frozen encoder, detached and rounded to f16:
    /// [tokens² × hidden] per image.
    fn pooled(&self, images: &Tensor) -> Result<Vec<Features>> {
        let pooled = self
            .pooled_grid(images)?
            .detach()
            .flatten_from(1)?
            .to_vec2::<f32>()?;
        Ok(pooled
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| half::f16::from_f32(v).to_f32())
                    .collect()
            })
            .collect())
    }
}
