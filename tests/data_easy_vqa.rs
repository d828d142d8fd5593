//! The easy-VQA importer on a tiny wheel-shaped zip made here (not the real wheel).

use clap::Parser;
use fusecap::data::draw::render;
use fusecap::data::easy_vqa::convert_easy_vqa;
use fusecap::data::manifest::{load_manifest, Task};
use fusecap::data::scene::{Color, Scene, SceneKind, SceneObject, Shape, Size};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

fn png(shape: Shape, color: Color) -> Vec<u8> {
    let scene = Scene {
        kind: SceneKind::Easy,
        objects: vec![SceneObject {
            shape,
            color,
            size: Size::Large,
            row: 1,
            col: 1,
            cx: 0.45,
            cy: 0.55,
            radius: 0.25,
        }],
        noise_seed: None,
    };
    let mut bytes = Vec::new();
    render(&scene, 64)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// (split, id, shape, colour, questions).
type Item = (
    &'static str,
    u64,
    Shape,
    Color,
    Vec<(&'static str, &'static str)>,
);

/// The fixture's images. Image train/5's answers leave its shape and colour open between
/// candidates, so its caption needs the pixels.
fn fixture() -> Vec<Item> {
    use Color::*;
    use Shape::*;
    let basic = |shape: &'static str, color: &'static str| {
        vec![
            ("what shape is in the image?", shape),
            ("what color is the shape?", color),
            (
                "is there a blue shape?",
                if color == "blue" { "yes" } else { "no" },
            ),
        ]
    };
    vec![
        ("train", 0, Circle, Red, basic("circle", "red")),
        ("train", 1, Rectangle, Blue, basic("rectangle", "blue")),
        ("train", 2, Triangle, Green, basic("triangle", "green")),
        ("train", 3, Rectangle, Red, basic("rectangle", "red")),
        ("train", 4, Circle, Blue, basic("circle", "blue")),
        (
            "train",
            5,
            Triangle,
            Red,
            vec![
                ("does the image contain a circle?", "no"),
                ("is there not a blue shape?", "yes"),
            ],
        ),
        (
            "test",
            0,
            Circle,
            Green,
            vec![("what is the green shape?", "circle")],
        ),
        (
            "test",
            1,
            Triangle,
            Blue,
            vec![
                ("what is the color of the triangle?", "blue"),
                ("is there a red shape in the image?", "no"),
            ],
        ),
    ]
}

fn write_wheel(path: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("easy_vqa/__init__.py", opts).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file("easy_vqa/data/answers.txt", opts).unwrap();
    zip.write_all(b"circle\nred\n").unwrap();
    let mut questions: BTreeMap<&str, Vec<(String, String, u64)>> = BTreeMap::new();
    for (split, id, shape, color, qs) in fixture() {
        zip.start_file(format!("easy_vqa/data/{split}/images/{id}.png"), opts)
            .unwrap();
        zip.write_all(&png(shape, color)).unwrap();
        for (q, a) in qs {
            questions
                .entry(split)
                .or_default()
                .push((q.to_string(), a.to_string(), id));
        }
    }
    // A question about an image the archive lacks.
    questions.entry("train").or_default().push((
        "what shape is present?".into(),
        "circle".into(),
        99,
    ));
    for (split, qs) in questions {
        zip.start_file(format!("easy_vqa/data/{split}/questions.json"), opts)
            .unwrap();
        zip.write_all(&serde_json::to_vec(&qs).unwrap()).unwrap();
    }
    zip.start_file("easy_vqa-1.0.dist-info/WHEEL", opts)
        .unwrap();
    zip.write_all(b"Wheel-Version: 1.0\n").unwrap();
    zip.finish().unwrap();
}

fn unpack(wheel: &Path, to: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    archive.extract(to).unwrap();
}

#[test]
fn converts_a_wheel_keeping_the_split_with_captions_for_every_image() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("easy_vqa-1.0-py3-none-any.whl");
    write_wheel(&wheel);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let s = convert_easy_vqa(&wheel, &out).unwrap();

    assert_eq!((s.train_images, s.test_images), (6, 2));
    assert_eq!(s.vqa_records, 5 * 3 + 2 + 1 + 2);
    assert_eq!(s.questions_without_image, 1);
    assert_eq!(s.caption_records, 8);
    assert_eq!(s.captions_from_questions, 7);
    assert_eq!(s.captions_from_pixels, 1);
    assert_eq!(s.question_types["yes/no color"], 5 + 1 + 1);
    assert_eq!(s.question_types["yes/no shape"], 1);
    assert_eq!(s.question_types["shape"], 5 + 1);
    assert_eq!(s.question_types["color"], 5 + 1);

    let m = load_manifest(&out.join("manifest.jsonl")).unwrap();
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(m.records.len(), s.vqa_records + s.caption_records);
    let truth: BTreeMap<String, (Shape, Color)> = fixture()
        .into_iter()
        .map(|(split, id, shape, color, _)| (format!("{split}/{id}"), (shape, color)))
        .collect();
    for r in &m.records {
        let rel = r.image.strip_prefix(out.join("images")).unwrap();
        let split = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        assert!(r.in_split(split), "{} not in split {split}", r.source);
        let key = format!("{split}/{}", rel.file_stem().unwrap().to_str().unwrap());
        let (shape, color) = truth[&key];
        match &r.task {
            Task::Caption { captions } => {
                assert_eq!(captions[0], format!("a {} {}", color.name(), shape.name()));
            }
            Task::Vqa {
                answers, answer, ..
            } => assert_eq!(answers, &vec![answer.clone()]),
        }
    }
    // Images are copied byte for byte.
    let (_, _, shape, color, _) = &fixture()[1];
    assert_eq!(
        std::fs::read(out.join("images/train/1.png")).unwrap(),
        png(*shape, *color)
    );
}

#[test]
fn the_unpacked_folder_converts_like_the_wheel() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("w.whl");
    write_wheel(&wheel);
    let unpacked = tmp.path().join("unpacked");
    unpack(&wheel, &unpacked);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let sa = convert_easy_vqa(&wheel, &a).unwrap();
    let sb = convert_easy_vqa(&unpacked, &b).unwrap();
    assert_eq!(sa, sb);
    let read = |d: &Path| std::fs::read_to_string(d.join("manifest.jsonl")).unwrap();
    assert_eq!(read(&a), read(&b));
    // The inner easy_vqa/data folder works too.
    let c = tmp.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    convert_easy_vqa(&unpacked.join("easy_vqa/data"), &c).unwrap();
    assert_eq!(read(&a), read(&c));
}

#[test]
fn wrong_inputs_are_errors_that_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let not_zip = tmp.path().join("notes.txt");
    std::fs::write(&not_zip, "hello").unwrap();
    let err = format!("{:#}", convert_easy_vqa(&not_zip, tmp.path()).unwrap_err());
    assert!(err.contains("notes.txt") && err.contains("wheel"), "{err}");
    let err = format!(
        "{:#}",
        convert_easy_vqa(&tmp.path().join("nope.whl"), tmp.path()).unwrap_err()
    );
    assert!(err.contains("nope.whl"), "{err}");
    let err = format!(
        "{:#}",
        convert_easy_vqa(tmp.path(), tmp.path()).unwrap_err()
    );
    assert!(err.contains("train/questions.json"), "{err}");
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    data: fusecap::cli::data::DataArgs,
}

#[test]
fn the_command_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("w.whl");
    write_wheel(&wheel);
    let out = tmp.path().join("out");
    let args = |force: bool| {
        let mut a = vec![
            "fusecap",
            "easy-vqa",
            "--from",
            wheel.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        if force {
            a.push("--force");
        }
        Cli::try_parse_from(a).unwrap().data
    };
    // The fixture holds a question whose image is missing: skipped work exits 1.
    let code = fusecap::cli::data::run(args(false)).unwrap();
    assert_eq!(code, std::process::ExitCode::from(1));
    let err = fusecap::cli::data::run(args(false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("manifest.jsonl") && err.contains("--force"),
        "{err}"
    );
    assert!(fusecap::cli::data::run(args(true)).is_ok());
}
