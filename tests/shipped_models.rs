//! The shipped models under models/ load and answer easy questions about the
//! samples: a broken model directory, a config that does not match its weights
//! or a tokenizer from another run fails here.

use std::process::Command;

/// The last tab-separated field of the last line `fusecap ARGS` prints.
fn last_field(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fusecap"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run fusecap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    line.rsplit('\t').next().unwrap_or_default().to_string()
}

fn answer(fusion: &str, image: &str, question: &str) -> String {
    last_field(&[
        "ask",
        "--model",
        &format!("scenes-{fusion}"),
        image,
        question,
    ])
}

#[test]
fn every_shipped_model_answers_colour_and_shape_of_the_single_shape_samples() {
    for fusion in ["concat", "separate", "gated"] {
        for (image, colour, shape) in [
            ("samples/red-circle.png", "red", "circle"),
            ("samples/green-triangle.png", "green", "triangle"),
        ] {
            assert_eq!(
                answer(fusion, image, "what color is the shape?"),
                colour,
                "{fusion} {image}"
            );
            assert_eq!(
                answer(fusion, image, "what shape is this?"),
                shape,
                "{fusion} {image}"
            );
        }
    }
}

/// Drawn on white, the single-shape samples were captioned as scenes ("two
/// squares" for a blue rectangle); on easy-VQA's kind of tinted background
/// they are captioned as easy-VQA images.
#[test]
fn every_shipped_model_captions_the_single_shape_samples() {
    for fusion in ["concat", "separate", "gated"] {
        for (image, caption) in [
            ("samples/red-circle.png", "a red circle"),
            ("samples/blue-rectangle.png", "a blue rectangle"),
            ("samples/green-triangle.png", "a green triangle"),
            ("samples/yellow-circle.png", "a yellow circle"),
        ] {
            let got = last_field(&["caption", "--model", &format!("scenes-{fusion}"), image]);
            assert_eq!(got, caption, "{fusion} {image}");
        }
    }
}
