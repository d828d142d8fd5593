//! The vision encoder: pixels -> patch tokens -> transformer blocks.
//!
//! The stem that makes the tokens is a config choice (`Config::vision_stem`):
//! one linear projection of each `patch_size`² patch, or a stack of 3×3
//! stride-2 convolutions (ReLU between them) that reaches the same token grid,
//! or a pretrained encoder (`Config::vision_encoder`), to whose tokens
//! coordinate positions add a patch embedding of the pixels and coordinates.
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::blocks::{embedding_table, EncoderBlock, LayerNorm, Linear};
use super::pretrained::PretrainedVision;
use super::{Config, VisionPositions, VisionStem};

#[derive(Debug, Clone)]
enum Stem {
    Patch(PatchEmbedding),
    Conv(Vec<Conv3x3>),
    /// A pretrained encoder's pooled, projected tokens (`Config::vision_encoder`),
    /// plus the patch embedding of the pixels with their coordinate channels
    /// when the positions are `Coordinates`.
    Pretrained {
        encoder: PretrainedVision,
        pixels: Option<PatchEmbedding>,
    },
}

/// One linear projection of each `size`² patch of the stem's input.
#[derive(Debug, Clone)]
struct PatchEmbedding {
    embed: Linear,
    size: usize,
}

impl PatchEmbedding {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let patch_dim = cfg.vision_input_channels() * cfg.patch_size * cfg.patch_size;
        Ok(PatchEmbedding {
            embed: Linear::new(patch_dim, cfg.d_model, true, cfg, vb.pp("patch_embed"))?,
            size: cfg.patch_size,
        })
    }

    /// [B, C, S, S] -> [B, Nv, d]
    fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let p = self.size;
        let (gh, gw) = (h / p, w / p);
        // [B, C, gh, p, gw, p] -> [B, gh, gw, C, p, p] -> [B, Nv, C·p·p]
        let patches = images
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, gh * gw, c * p * p))?;
        self.embed.forward(&patches)
    }
}

/// Where a token's place enters the encoder.
#[derive(Debug, Clone)]
enum Positions {
    /// [Nv, d], added to the stem's tokens (learned or sin-cos).
    Added(Tensor),
    /// [1, 2, S, S] column and row channels, appended to the pixels.
    InputChannels(Tensor),
}

#[derive(Debug, Clone)]
pub struct VisionEncoder {
    stem: Stem,
    stem_norm: Option<LayerNorm>,
    positions: Positions,
    blocks: Vec<EncoderBlock>,
    ln_f: LayerNorm,
}

impl VisionEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let stem = match (&cfg.vision_encoder, cfg.vision_stem) {
            (Some(spec), _) => {
                let p = PretrainedVision::load(
                    spec,
                    cfg.d_model,
                    cfg.inference,
                    vb.pp("pretrained"),
                    vb.device(),
                )
                .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
                let (mean, std) = p.normalisation();
                if mean != cfg.image_mean || std != cfg.image_std {
                    candle_core::bail!(
                        "the vision_encoder expects images normalised with mean {mean:?} and std {std:?}: set image_mean and image_std to them"
                    );
                }
                let pixels = match cfg.vision_positions {
                    VisionPositions::Coordinates => Some(PatchEmbedding::new(cfg, vb.clone())?),
                    VisionPositions::Learned | VisionPositions::SinCos2d => None,
                };
                Stem::Pretrained { encoder: p, pixels }
            }
            (None, VisionStem::Patch) => Stem::Patch(PatchEmbedding::new(cfg, vb.clone())?),
            (None, VisionStem::Conv) => {
                let channels = cfg.conv_stem_channels();
                let inputs =
                    std::iter::once(cfg.vision_input_channels()).chain(channels.iter().copied());
                Stem::Conv(
                    inputs
                        .zip(&channels)
                        .enumerate()
                        .map(|(i, (c_in, &c_out))| {
                            Conv3x3::new(c_in, c_out, cfg, vb.pp(format!("stem.{i}")))
                        })
                        .collect::<Result<_>>()?,
                )
            }
        };
        Ok(VisionEncoder {
            stem,
            stem_norm: if cfg.vision_stem_norm {
                Some(LayerNorm::new(cfg, vb.pp("stem_norm"))?)
            } else {
                None
            },
            positions: match cfg.vision_positions {
                VisionPositions::Learned => Positions::Added(embedding_table(
                    cfg.num_patches(),
                    cfg.d_model,
                    "pos_embed",
                    &vb,
                )?),
                VisionPositions::SinCos2d => Positions::Added(sincos_2d(
                    cfg.grid_side(),
                    cfg.d_model,
                    vb.dtype(),
                    vb.device(),
                )?),
                VisionPositions::Coordinates => Positions::InputChannels(coordinate_channels(
                    cfg.image_size,
                    vb.dtype(),
                    vb.device(),
                )?),
            },
            blocks: (0..cfg.vision_layers)
                .map(|i| EncoderBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(cfg, vb.pp("ln_f"))?,
        })
    }

    /// The pretrained encoder that makes the tokens, if the config names one.
    pub fn pretrained(&self) -> Option<&PretrainedVision> {
        match &self.stem {
            Stem::Pretrained { encoder, .. } => Some(encoder),
            _ => None,
        }
    }

    /// images: [B, 3, S, S], normalised -> [B, Nv, d]
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let with_coordinates;
        let pixels = match &self.positions {
            Positions::InputChannels(coordinates) => {
                let b = images.dim(0)?;
                let (_, c, h, w) = coordinates.dims4()?;
                with_coordinates =
                    Tensor::cat(&[images, &coordinates.broadcast_as((b, c, h, w))?], 1)?;
                &with_coordinates
            }
            Positions::Added(_) => images,
        };
        let tokens = match &self.stem {
            Stem::Patch(patches) => patches.forward(pixels)?,
            Stem::Conv(convs) => {
                let b = pixels.dim(0)?;
                // channels last: [B, S, S, C] -> ... -> [B, S/p, S/p, d]
                let mut x = pixels.permute((0, 2, 3, 1))?;
                for (i, conv) in convs.iter().enumerate() {
                    x = conv.forward(&x)?;
                    if i + 1 < convs.len() {
                        x = x.relu()?;
                    }
                }
                let (_, gh, gw, d) = x.dims4()?;
                x.reshape((b, gh * gw, d))?
            }
            Stem::Pretrained {
                encoder,
                pixels: None,
            } => encoder.forward(images)?,
            Stem::Pretrained {
                encoder,
                pixels: Some(patches),
            } => (encoder.forward(images)? + patches.forward(pixels)?)?,
        };
        let tokens = match &self.stem_norm {
            Some(norm) => norm.forward(&tokens)?,
            None => tokens,
        };
        let mut x = match &self.positions {
            Positions::Added(table) => tokens.broadcast_add(table)?,
            Positions::InputChannels(_) => tokens,
        };
        for block in &self.blocks {
            x = block.forward(&x, None)?;
        }
        self.ln_f.forward(&x)
    }
}

/// Fixed 2-D positions for a `side`×`side` grid in row-major order: the
/// first half of the `d` channels are sines and cosines of the row at
/// `d/4` frequencies, the second half the same of the column.
/// [side², d]. Not a parameter: nothing is stored for it.
pub fn sincos_2d(
    side: usize,
    d: usize,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let quarter = d / 4;
    let features = |coordinate: usize| {
        (0..quarter).flat_map(move |k| {
            let frequency = 1.0 / 100f32.powf(k as f32 / quarter.max(1) as f32);
            let angle = coordinate as f32 * frequency;
            [angle.sin(), angle.cos()]
        })
    };
    let mut table = Vec::with_capacity(side * side * d);
    for row in 0..side {
        for col in 0..side {
            table.extend(features(row));
            table.extend(features(col));
        }
    }
    Tensor::from_vec(table, (side * side, d), device)?.to_dtype(dtype)
}

/// [1, 2, S, S]: each pixel's column (channel 0) and row (channel 1), from
/// -2 to 2 across the image, the range of pixels normalised with the shipped
/// mean 0.5 and std 0.25.
pub fn coordinate_channels(
    side: usize,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let at = |i: usize| 4.0 * (i as f32 + 0.5) / side as f32 - 2.0;
    let columns = (0..side * side).map(|i| at(i % side));
    let rows = (0..side * side).map(|i| at(i / side));
    let values: Vec<f32> = columns.chain(rows).collect();
    Tensor::from_vec(values, (1, 2, side, side), device)?.to_dtype(dtype)
}

/// A 3×3 convolution with stride 2 and zero padding 1 on channels-last maps:
/// [B, H, W, C_in] -> [B, H/2, W/2, C_out]. The nine shifted views are
/// gathered with reshapes and slices (im2col), then one matmul mixes them;
/// all of it has gradients in candle.
///
/// `proj.weight` is [C_out, 9·C_in], its columns ordered (ky, kx, c_in).
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    proj: Linear,
}

impl Conv3x3 {
    pub fn new(c_in: usize, c_out: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Conv3x3 {
            proj: Linear::new(9 * c_in, c_out, true, cfg, vb)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let (oh, ow) = (h / 2, w / 2);
        // Padded row 2i + k (k = 0, 1, 2) is row i + k/2 of parity k%2 in
        // [B, H/2 + 1, 2, W/2 + 1, 2, C].
        let padded = x
            .pad_with_zeros(1, 1, 1)?
            .pad_with_zeros(2, 1, 1)?
            .reshape((b, oh + 1, 2, ow + 1, 2, c))?;
        let mut taps = Vec::with_capacity(9);
        for ky in 0..3 {
            let rows = padded.narrow(1, ky / 2, oh)?.narrow(2, ky % 2, 1)?;
            for kx in 0..3 {
                taps.push(
                    rows.narrow(3, kx / 2, ow)?
                        .narrow(4, kx % 2, 1)?
                        .reshape((b, oh, ow, c))?,
                );
            }
        }
        let cols = Tensor::cat(&taps, 3)?.reshape((b * oh * ow, 9 * c))?;
        self.proj.forward(&cols)?.reshape((b, oh, ow, ()))
    }
}
