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

    /// The colour `along` pixels down (or across) an image of `size`.
    fn at(&self, along: u32, size: u32) -> [u8; 3] {
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
    // The blend changes along one axis only: one colour per row or column.
    let blend: Vec<[u8; 3]> = (0..size).map(|i| backdrop.at(i, size)).collect();
    let mut img = match backdrop.horizontal {
        true => RgbImage::from_fn(size, size, |x, _| Rgb(blend[x as usize])),
        false => RgbImage::from_fn(size, size, |_, y| Rgb(blend[y as usize])),
    };
    if let Some(seed) = scene.noise_seed {
        let mut rng = StdRng::seed_from_u64(seed);
        for channel in img.iter_mut() {
            *channel = channel.saturating_sub(rng.random_range(0..=NOISE_DEPTH));
        }
    }
    let side = size as f32;
    for object in &scene.objects {
        let (cx, cy, r) = (object.cx * side, object.cy * side, object.radius * side);
        let outline = Outline::new(object.shape, r);
        let rgb = Rgb(object.color.rgb_in(scene.kind));
        let x0 = (cx - r).floor().max(0.0) as u32;
        let y0 = (cy - r).floor().max(0.0) as u32;
        let x1 = ((cx + r).ceil() as u32).min(size);
        let y1 = ((cy + r).ceil() as u32).min(size);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if outline.contains(dx, dy) {
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
    Outline::new(shape, r).contains(dx, dy)
}

/// A shape of a given circumradius, its corners worked out once for all the
/// pixels it is tested against.
enum Outline {
    Circle {
        r_squared: f32,
    },
    Rectangle {
        half_width: f32,
        half_height: f32,
    },
    Polygon {
        points: [(f32, f32); 10],
        corners: usize,
    },
}

impl Outline {
    fn new(shape: Shape, r: f32) -> Self {
        match shape {
            Shape::Circle => Outline::Circle { r_squared: r * r },
            // Squares are shrunk so their area is close to the circle's.
            Shape::Square => Outline::Rectangle {
                half_width: 0.8 * r,
                half_height: 0.8 * r,
            },
            Shape::Rectangle => Outline::Rectangle {
                half_width: 0.95 * r,
                half_height: 0.55 * r,
            },
            Shape::Triangle => {
                let h = r * 3f32.sqrt() / 2.0;
                let mut points = [(0.0, 0.0); 10];
                points[..3].copy_from_slice(&[(0.0, -r), (h, r / 2.0), (-h, r / 2.0)]);
                Outline::Polygon { points, corners: 3 }
            }
            Shape::Star => {
                // Ten vertices alternating between the outer radius and a fat inner radius,
                // starting at the top; a thin star would vanish at 64 pixels.
                let mut points = [(0.0, 0.0); 10];
                for (i, p) in points.iter_mut().enumerate() {
                    let radius = if i % 2 == 0 { r } else { 0.47 * r };
                    let angle =
                        -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::PI / 5.0;
                    *p = (radius * angle.cos(), radius * angle.sin());
                }
                Outline::Polygon {
                    points,
                    corners: 10,
                }
            }
        }
    }

    fn contains(&self, dx: f32, dy: f32) -> bool {
        match self {
            Outline::Circle { r_squared } => dx * dx + dy * dy <= *r_squared,
            Outline::Rectangle {
                half_width,
                half_height,
            } => dx.abs() <= *half_width && dy.abs() <= *half_height,
            Outline::Polygon { points, corners } => in_polygon(&points[..*corners], dx, dy),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scene::{Color, SceneKind, SceneObject, Size};
    use crate::data::synth::random_scene_of_at_most;

    /// The shapes' definitions, evaluated from scratch at every pixel.
    fn inside_by_definition(shape: Shape, dx: f32, dy: f32, r: f32) -> bool {
        let polygon = |points: &[(f32, f32)]| in_polygon(points, dx, dy);
        match shape {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= 0.8 * r && dy.abs() <= 0.8 * r,
            Shape::Rectangle => dx.abs() <= 0.95 * r && dy.abs() <= 0.55 * r,
            Shape::Triangle => {
                let h = r * 3f32.sqrt() / 2.0;
                polygon(&[(0.0, -r), (h, r / 2.0), (-h, r / 2.0)])
            }
            Shape::Star => {
                let points: Vec<(f32, f32)> = (0..10)
                    .map(|i| {
                        let radius = if i % 2 == 0 { r } else { 0.47 * r };
                        let angle =
                            -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::PI / 5.0;
                        (radius * angle.cos(), radius * angle.sin())
                    })
                    .collect();
                polygon(&points)
            }
        }
    }

    /// Every pixel on its own: the backdrop's blend, the noise in raster
    /// order, then each object whose shape holds the pixel's centre.
    fn render_by_definition(scene: &Scene, size: u32, backdrop: &Backdrop) -> RgbImage {
        let mut noise = scene.noise_seed.map(StdRng::seed_from_u64);
        let side = size as f32;
        RgbImage::from_fn(size, size, |x, y| {
            let mut rgb = backdrop.at(if backdrop.horizontal { x } else { y }, size);
            if let Some(rng) = noise.as_mut() {
                for channel in &mut rgb {
                    *channel = channel.saturating_sub(rng.random_range(0..=NOISE_DEPTH));
                }
            }
            for object in &scene.objects {
                let (cx, cy, r) = (object.cx * side, object.cy * side, object.radius * side);
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if inside_by_definition(object.shape, dx, dy, r) {
                    rgb = object.color.rgb_in(scene.kind);
                }
            }
            Rgb(rgb)
        })
    }

    #[test]
    fn rendering_matches_the_per_pixel_definition() {
        let mut rng = StdRng::seed_from_u64(7);
        let backdrops = [
            Backdrop::plain([255; 3]),
            Backdrop {
                from: [200, 230, 255],
                to: [255, 210, 200],
                horizontal: false,
            },
            Backdrop {
                from: [250, 200, 220],
                to: [205, 255, 240],
                horizontal: true,
            },
        ];
        let shapes = [
            Shape::Circle,
            Shape::Square,
            Shape::Rectangle,
            Shape::Triangle,
            Shape::Star,
        ];
        for i in 0..60 {
            let mut scene = random_scene_of_at_most(&mut rng, i % 2 == 0, 6);
            // Every shape, off the grid's centres and partly outside the image.
            scene.objects.push(SceneObject {
                cx: rng.random_range(-0.1..1.1),
                cy: rng.random_range(-0.1..1.1),
                radius: rng.random_range(0.05..0.3),
                ..SceneObject::centred(shapes[i % 5], Color::Red, Size::Large, 0, 0)
            });
            scene.kind = [SceneKind::Scenes, SceneKind::Easy][i % 2];
            for size in [48, 64, 97] {
                let backdrop = &backdrops[i % 3];
                assert!(
                    render_on(&scene, size, backdrop)
                        == render_by_definition(&scene, size, backdrop),
                    "scene {i} at {size} pixels"
                );
            }
        }
    }
}
