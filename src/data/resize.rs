//! A triangle-filter (bilinear) resize of 8-bit RGB images that gives the
//! same bytes as `image::imageops::resize(_, _, _, FilterType::Triangle)`:
//! the same taps, weights and order of float sums, without that function's
//! per-pixel bounds checks and boxed kernel. The training loader resizes
//! every streamed scene, so this is on the two-thread training path.
use image::RgbImage;

/// `x.clamp(0.0, 255.0).round() as u8`, to the bit, without `f32::round`,
/// which compiles to a call into libm (`roundf`, 11% of the training
/// loader's time in a profile). The fraction `x - floor(x)` is exact for x
/// in [0, 255], so comparing it with 0.5 rounds halves away from zero as
/// `round` does.
pub(crate) fn round_to_u8(x: f32) -> u8 {
    let x = x.clamp(0.0, 255.0);
    let whole = x as u8;
    whole + u8::from(x - f32::from(whole) >= 0.5)
}

/// The source pixels one output row or column reads, and their weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// One `Taps` per output pixel of a `from` → `to` resample along one axis.
fn taps(from: u32, to: u32) -> Vec<Taps> {
    let ratio = from as f32 / to as f32;
    let scale = ratio.max(1.0);
    let support = scale; // the triangle's support, 1, stretched when shrinking
    (0..to)
        .map(|out| {
            let centre = (out as f32 + 0.5) * ratio;
            let first = ((centre - support).floor() as i64).clamp(0, i64::from(from) - 1);
            let end = ((centre + support).ceil() as i64).clamp(first + 1, i64::from(from));
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (first..end)
                .map(|i| triangle((i as f32 - centre) / scale))
                .collect();
            let sum = weights.iter().fold(0.0f32, |acc, w| acc + w);
            for w in &mut weights {
                *w /= sum;
            }
            Taps {
                first: first as usize,
                weights,
            }
        })
        .collect()
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// `image` resampled to `width` × `height` with a triangle filter:
/// vertically into floats, then horizontally, rounded and clamped to 0–255.
pub fn triangle_resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (src_w, src_h) = image.dimensions();
    if (src_w, src_h) == (width, height) || src_w == 0 || src_h == 0 {
        return image::imageops::resize(
            image,
            width,
            height,
            image::imageops::FilterType::Triangle,
        );
    }
    let src = image.as_raw();
    let row = 3 * src_w as usize;

    let mut vertical = vec![0f32; row * height as usize];
    for (out_y, tap) in taps(src_h, height).iter().enumerate() {
        let out = &mut vertical[out_y * row..(out_y + 1) * row];
        for (i, &w) in tap.weights.iter().enumerate() {
            let line = &src[(tap.first + i) * row..(tap.first + i + 1) * row];
            for (acc, &v) in out.iter_mut().zip(line) {
                *acc += f32::from(v) * w;
            }
        }
    }

    let mut out = RgbImage::new(width, height);
    let dst = &mut *out;
    let out_row = 3 * width as usize;
    let horizontal = taps(src_w, width);
    for y in 0..height as usize {
        let line = &vertical[y * row..(y + 1) * row];
        let dst_line = &mut dst[y * out_row..(y + 1) * out_row];
        for (pixel, tap) in dst_line.chunks_exact_mut(3).zip(&horizontal) {
            let mut acc = [0f32; 3];
            let window = &line[3 * tap.first..3 * (tap.first + tap.weights.len())];
            for (source, &w) in window.chunks_exact(3).zip(&tap.weights) {
                for c in 0..3 {
                    acc[c] += source[c] * w;
                }
            }
            for c in 0..3 {
                pixel[c] = round_to_u8(acc[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;
    use rand::{Rng, SeedableRng};

    /// Every float within 2,000 steps of each integer and each half in
    /// [0, 255], every 4,099th float from −1 to 257, and the odd ones.
    #[test]
    fn rounding_to_u8_is_clamp_and_round() {
        let reference = |x: f32| x.clamp(0.0, 255.0).round() as u8;
        let around = |centre: f32| {
            let bits = centre.to_bits();
            (bits.saturating_sub(2000)..=bits + 2000).map(f32::from_bits)
        };
        let near_boundaries = (0..=510).flat_map(|k| around(k as f32 / 2.0));
        let sweep = ((-1f32).to_bits()..=(-1f32).to_bits() + 2)
            .chain((0..=257f32.to_bits()).step_by(4099))
            .map(f32::from_bits);
        let odd = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.49999997,
            254.5,
            255.49,
        ];
        for x in near_boundaries.chain(sweep).chain(odd) {
            assert_eq!(round_to_u8(x), reference(x), "x = {x:e}");
        }
    }

    fn random_image(rng: &mut impl Rng, width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |_, _| image::Rgb(rng.random()))
    }

    #[test]
    fn the_same_bytes_as_the_image_crates_triangle_resize() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let sizes = [
            (64, 64, 48, 48),
            (64, 64, 96, 96),
            (1, 1, 5, 3),
            (300, 7, 48, 48),
        ];
        let random_sizes: Vec<(u32, u32, u32, u32)> = (0..40)
            .map(|_| {
                (
                    rng.random_range(1..120),
                    rng.random_range(1..120),
                    rng.random_range(1..120),
                    rng.random_range(1..120),
                )
            })
            .collect();
        for &(w, h, to_w, to_h) in sizes.iter().chain(&random_sizes) {
            let image = random_image(&mut rng, w, h);
            let expected = image::imageops::resize(&image, to_w, to_h, FilterType::Triangle);
            let got = triangle_resize(&image, to_w, to_h);
            assert_eq!(got.dimensions(), (to_w, to_h));
            assert!(got == expected, "{w}x{h} -> {to_w}x{to_h} differs");
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let image = RgbImage::from_pixel(64, 64, image::Rgb([10, 200, 255]));
        let out = triangle_resize(&image, 48, 37);
        assert!(out.pixels().all(|p| p.0 == [10, 200, 255]));
    }
}
