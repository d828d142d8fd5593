//! Rasterising scenes: each pixel centre is tested against each shape, no anti-aliasing.

use super::resize::round_to_u8;
use super::scene::{Scene, Shape};
use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How far (per channel) noise may darken the background.
const NOISE_DEPTH: u8 = 60;

/// What the objects are drawn on: a linear blend from `from` to `to`, down
/// the image or across it. `from == to` is a plain background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backdrop {
    pub from: [u8; 3],
    pub to: [u8; 3],
    pub horizontal: bool,
}

impl Backdrop {
    pub fn plain(rgb: [u8; 3]) -> Self {
        Backdrop {
            from: rgb,
            to: rgb,
            horizontal: false,
        }
    }

    fn at(&self, x: u32, y: u32, size: u32) -> [u8; 3] {
        let along = if self.horizontal { x } else { y };
        let t = along as f32 / (size.max(2) - 1) as f32;
        std::array::from_fn(|c| {
            round_to_u8(self.from[c] as f32 + t * (self.to[c] as f32 - self.from[c] as f32))
        })
    }
}

/// Draws `scene` as a `size`×`size` RGB image on its kind's plain background.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    render_on(scene, size, &Backdrop::plain(scene.kind.background()))
}

/// Draws `scene` on `backdrop`, darkened by the scene's noise if it has any.
pub fn render_on(scene: &Scene, size: u32, backdrop: &Backdrop) -> RgbImage {
    let mut img = RgbImage::from_fn(size, size, |x, y| Rgb(backdrop.at(x, y, size)));
    if let Some(seed) = scene.noise_seed {
        let mut rng = StdRng::seed_from_u64(seed);
        for pixel in img.pixels_mut() {
            for channel in pixel.0.iter_mut() {
                *channel = channel.saturating_sub(rng.random_range(0..=NOISE_DEPTH));
            }
        }
    }
    let side = size as f32;
    for object in &scene.objects {
        let (cx, cy, r) = (object.cx * side, object.cy * side, object.radius * side);
        let rgb = Rgb(object.color.rgb_in(scene.kind));
        let x0 = (cx - r).floor().max(0.0) as u32;
        let y0 = (cy - r).floor().max(0.0) as u32;
        let x1 = ((cx + r).ceil() as u32).min(size);
        let y1 = ((cy + r).ceil() as u32).min(size);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if inside(object.shape, dx, dy, r) {
                    img.put_pixel(x, y, rgb);
                }
            }
        }
    }
    img
}

/// Is the offset (`dx`, `dy`) from a shape's centre (y pointing down) inside the shape
/// of circumradius `r`?
pub fn inside(shape: Shape, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        Shape::Circle => dx * dx + dy * dy <= r * r,
        // Squares are shrunk so their area is close to the circle's.
        Shape::Square => dx.abs() <= 0.8 * r && dy.abs() <= 0.8 * r,
        Shape::Rectangle => dx.abs() <= 0.95 * r && dy.abs() <= 0.55 * r,
        Shape::Triangle => {
            let h = r * 3f32.sqrt() / 2.0;
            in_polygon(&[(0.0, -r), (h, r / 2.0), (-h, r / 2.0)], dx, dy)
        }
        Shape::Star => {
            // Ten vertices alternating between the outer radius and a fat inner radius,
            // starting at the top; a thin star would vanish at 64 pixels.
            let mut points = [(0.0, 0.0); 10];
            for (i, p) in points.iter_mut().enumerate() {
                let radius = if i % 2 == 0 { r } else { 0.47 * r };
                let angle = -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::PI / 5.0;
                *p = (radius * angle.cos(), radius * angle.sin());
            }
            in_polygon(&points, dx, dy)
        }
    }
}

/// Even–odd ray casting.
fn in_polygon(points: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        let (xi, yi) = points[i];
        let (xj, yj) = points[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}
