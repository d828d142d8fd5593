//! Any supported image becomes normalised RGB of the model's size.
use fusecap::data::image::{decode_rgb, Preprocess};
use fusecap::model::ResizeMode;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn preprocess(resize: ResizeMode) -> Preprocess {
    Preprocess {
        size: 8,
        resize,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}

#[test]
fn grey_alpha_and_16_bit_images_become_rgb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grey = dir.path().join("grey.png");
    ImageBuffer::from_pixel(4, 4, Luma([128u8]))
        .save(&grey)
        .expect("save");
    let grey16 = dir.path().join("grey16.png");
    ImageBuffer::from_pixel(4, 4, Luma([65535u16]))
        .save(&grey16)
        .expect("save");
    let rgb16 = dir.path().join("rgb16.png");
    ImageBuffer::from_pixel(4, 4, Rgb([65535u16, 0, 0]))
        .save(&rgb16)
        .expect("save");
    let transparent = dir.path().join("transparent.png");
    ImageBuffer::from_pixel(4, 4, Rgba([0u8, 0, 0, 0]))
        .save(&transparent)
        .expect("save");
    let grey_alpha = dir.path().join("ga.png");
    ImageBuffer::from_pixel(4, 4, LumaA([0u8, 255]))
        .save(&grey_alpha)
        .expect("save");

    assert_eq!(
        decode_rgb(&grey).expect("grey").get_pixel(0, 0).0,
        [128, 128, 128]
    );
    assert_eq!(
        decode_rgb(&grey16).expect("grey16").get_pixel(0, 0).0,
        [255, 255, 255]
    );
    assert_eq!(
        decode_rgb(&rgb16).expect("rgb16").get_pixel(0, 0).0,
        [255, 0, 0]
    );
    // Fully transparent pixels are composited over white, not black.
    assert_eq!(
        decode_rgb(&transparent).expect("rgba").get_pixel(0, 0).0,
        [255, 255, 255]
    );
    assert_eq!(
        decode_rgb(&grey_alpha).expect("ga").get_pixel(0, 0).0,
        [0, 0, 0]
    );
}

#[test]
fn every_image_comes_out_at_the_model_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = dir.path().join("wide.png");
    // Left half red, right half blue.
    ImageBuffer::from_fn(32, 8, |x, _| {
        if x < 16 {
            Rgb([255u8, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
    .save(&wide)
    .expect("save");
    for mode in [ResizeMode::Stretch, ResizeMode::CenterCrop] {
        let pixels = preprocess(mode).load(&wide).expect("load");
        assert_eq!(pixels.len(), 3 * 8 * 8);
    }
    // Centre-crop keeps the middle 8×8: its left column is red, its right column blue;
    // stretch keeps both halves across the width too, but from the whole image.
    let crop = preprocess(ResizeMode::CenterCrop)
        .load(&wide)
        .expect("load");
    let (red_left, blue_right) = (crop[0], crop[2 * 64 + 7]);
    assert!(
        red_left > 0.9 && blue_right > 0.9,
        "{red_left} {blue_right}"
    );
}

#[test]
fn oversized_and_unknown_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = dir.path().join("huge.png");
    ImageBuffer::from_pixel(20_000, 1, Luma([0u8]))
        .save(&huge)
        .expect("save");
    let err = decode_rgb(&huge).expect_err("too large").to_string();
    assert!(
        err.contains("huge.png") && err.contains("too large"),
        "{err}"
    );
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "hello, this is text").expect("write");
    let err = format!("{:#}", decode_rgb(&text).expect_err("not an image"));
    assert!(err.contains("notes.png"), "{err}");
}

#[test]
fn the_exif_orientation_is_applied() {
    use image::ImageEncoder;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rotated.png");
    // Left pixel red, right pixel blue, tagged "rotate 180°" (orientation 3).
    let pixels: [u8; 6] = [255, 0, 0, 0, 0, 255];
    let exif: Vec<u8> = vec![
        0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, // little-endian TIFF header, IFD at 8
        0x01, 0x00, // one entry
        0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x00, // Orientation = 3
        0x00, 0x00, 0x00, 0x00, // no next IFD
    ];
    let file = std::fs::File::create(&path).expect("create");
    let mut encoder = image::codecs::png::PngEncoder::new(file);
    encoder.set_exif_metadata(exif).expect("exif");
    encoder
        .write_image(&pixels, 2, 1, image::ExtendedColorType::Rgb8)
        .expect("write");
    let decoded = decode_rgb(&path).expect("decode");
    assert_eq!(
        decoded.get_pixel(0, 0).0,
        [0, 0, 255],
        "the image was not rotated"
    );
    assert_eq!(decoded.get_pixel(1, 0).0, [255, 0, 0]);
}

#[test]
fn every_listed_extension_has_a_decoder() {
    use fusecap::data::image::IMAGE_EXTENSIONS;
    let dir = tempfile::tempdir().expect("tempdir");
    // Binary PPM, written by hand so the test does not rely on an encoder:
    // a 2×1 image, one red and one blue pixel.
    let ppm = dir.path().join("two.ppm");
    let mut bytes = b"P6\n2 1\n255\n".to_vec();
    bytes.extend_from_slice(&[255, 0, 0, 0, 0, 255]);
    std::fs::write(&ppm, bytes).expect("write");
    let image = decode_rgb(&ppm).expect("a listed extension decodes");
    assert_eq!((image.width(), image.height()), (2, 1));
    assert_eq!(image.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(image.get_pixel(1, 0).0, [0, 0, 255]);

    // Every other listed extension: a 1×1 image saved in that format decodes.
    for ext in IMAGE_EXTENSIONS.iter().filter(|e| **e != "ppm") {
        let path = dir.path().join(format!("one.{ext}"));
        ImageBuffer::from_pixel(1, 1, Rgb([10u8, 200, 30]))
            .save(&path)
            .unwrap_or_else(|e| panic!("saving .{ext}: {e}"));
        let decoded = decode_rgb(&path).unwrap_or_else(|e| panic!(".{ext}: {e:#}"));
        assert_eq!((decoded.width(), decoded.height()), (1, 1), ".{ext}");
    }
}
