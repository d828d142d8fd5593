//! Image decoding and preprocessing: any supported file -> normalised CHW floats.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::resize::triangle_resize;
use crate::model::{Config, ResizeMode};

/// Largest accepted image side, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Largest decoder allocation, in bytes.
pub const MAX_IMAGE_BYTES: u64 = 512 * 1024 * 1024;

/// File extensions treated as images when a folder is walked.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff", "ppm",
];

pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub size: usize,
    pub resize: ResizeMode,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    pub fn from_config(cfg: &Config) -> Self {
        Preprocess {
            size: cfg.image_size,
            resize: cfg.resize,
            mean: cfg.image_mean,
            std: cfg.image_std,
        }
    }

    /// Decodes `path` and returns its normalised pixels, CHW, `3·size·size` values.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>> {
        Ok(self.pixels(&decode_rgb(path)?))
    }

    pub fn pixels(&self, image: &RgbImage) -> Vec<f32> {
        self.normalise(&self.resized(image))
    }

    /// The image at the model's input size.
    pub fn resized(&self, image: &RgbImage) -> RgbImage {
        resize(image, self.size as u32, self.resize)
    }

    /// CHW floats of an image already at the model's input size.
    pub fn normalise(&self, resized: &RgbImage) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut out = vec![0f32; 3 * plane];
        for (i, pixel) in resized.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (pixel[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

/// Reads any supported image as 8-bit RGB: the EXIF orientation is applied,
/// transparency is composited over white, and grey, palette and 16-bit images are converted.
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read the file", path.display()))?;
    if meta.len() == 0 {
        return Err(anyhow!(
            "{}: empty file (0 bytes); re-export or remove it",
            path.display()
        ));
    }
    let mut reader = ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if reader.format().is_none() {
        return Err(anyhow!(
            "{}: not an image in a supported format ({})",
            path.display(),
            IMAGE_EXTENSIONS.join(", ")
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let orientation = decoder.orientation().map_err(|e| decode_error(path, e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?;
    image.apply_orientation(orientation);
    Ok(flatten_alpha(image))
}

fn decode_error(path: &Path, e: image::ImageError) -> anyhow::Error {
    match e {
        image::ImageError::Limits(_) => anyhow!(
            "{}: image too large (limit {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} pixels, {} MiB); downscale it first",
            path.display(),
            MAX_IMAGE_BYTES / (1024 * 1024)
        ),
        image::ImageError::Unsupported(e) => anyhow!("{}: unsupported image ({e})", path.display()),
        e => anyhow!("{}: corrupt or truncated image ({e})", path.display()),
    }
}

fn flatten_alpha(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = p[3] as f32 / 255.0;
        let blend = |c: u8| (c as f32 * a + 255.0 * (1.0 - a)).round() as u8;
        image::Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}

fn resize(image: &RgbImage, size: u32, mode: ResizeMode) -> RgbImage {
    if image.width() == size && image.height() == size {
        return image.clone();
    }
    match mode {
        ResizeMode::Stretch => triangle_resize(image, size, size),
        ResizeMode::CenterCrop => {
            let (w, h) = (image.width(), image.height());
            let side = w.min(h);
            let cropped =
                image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side)
                    .to_image();
            triangle_resize(&cropped, size, size)
        }
    }
}

/// Stacks preprocessed images into [B, 3, size, size].
pub fn batch_tensor(images: &[Vec<f32>], size: usize, device: &Device) -> Result<Tensor> {
    let flat: Vec<f32> = images.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(
        flat,
        (images.len(), 3, size, size),
        device,
    )?)
}
