//! The built binary as a user runs it, on tiny models written by `fusecap init`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fusecap"))
}

fn init_model(dir: &Path, fusion: &str) -> PathBuf {
    let out = dir.join(format!("model-{fusion}"));
    let status = bin()
        .args(["init", "--size", "tiny", "--fusion", fusion, "--out"])
        .arg(&out)
        .status()
        .expect("init");
    assert!(status.success());
    out
}

/// Three good images of different kinds plus one corrupt file.
fn image_folder(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("nested")).expect("mkdir");
    RgbImage::from_fn(40, 30, |x, _| Rgb([(x * 6) as u8, 0, 200]))
        .save(images.join("a.png"))
        .expect("png");
    GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * y) as u8]))
        .save(images.join("b.jpg"))
        .expect("jpg");
    RgbaImage::from_fn(20, 20, |_, _| Rgba([255, 0, 0, 100]))
        .save(images.join("nested/c.png"))
        .expect("png");
    std::fs::write(
        images.join("broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not really a png",
    )
    .expect("write");
    images
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run fusecap");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// `fusecap caption IMAGES --model MODEL` with `args`.
fn caption(images: &Path, model: &Path, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("caption")
        .arg(images)
        .arg("--model")
        .arg(model)
        .args(args);
    cmd
}

fn jsonl(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn a_corrupt_file_gives_one_error_record_and_the_rest_are_captioned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "concat");
    let images = image_folder(dir.path());
    let (out, stdout, stderr) = run(&mut caption(
        &images,
        &model,
        &["--format", "jsonl", "--max-new-tokens", "4"],
    ));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed file must give exit code 1; stderr: {stderr}"
    );
    let records = jsonl(&stdout);
    assert_eq!(records.len(), 4);
    let errors: Vec<_> = records
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["image"]
        .as_str()
        .is_some_and(|p| p.ends_with("broken.png")));
    let good: Vec<_> = records
        .iter()
        .filter(|r| r.get("output").is_some())
        .collect();
    assert_eq!(good.len(), 3);
    for r in good {
        assert_eq!(r["fusion"], "concat");
        assert_eq!(r["task"], "caption");
        assert!(r["ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert!(r["model"].as_str().is_some_and(|m| m == "model-concat"));
    }
    assert!(
        stderr.contains("broken.png"),
        "the failing file is named on stderr: {stderr}"
    );
}

#[test]
fn sidecars_are_written_and_skip_existing_skips_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "separate");
    let images = image_folder(dir.path());
    std::fs::remove_file(images.join("broken.png")).expect("rm");
    let (out, _, stderr) = run(&mut caption(
        &images,
        &model,
        &["--sidecar", "--quiet", "--max-new-tokens", "3"],
    ));
    assert!(out.status.success(), "{stderr}");
    for name in ["a.txt", "b.txt", "nested/c.txt"] {
        assert!(images.join(name).is_file(), "{name} was not written");
    }
    // Resume: an image whose sidecar exists is not captioned again.
    std::fs::remove_file(images.join("b.txt")).expect("rm");
    let (out, stdout, _) = run(&mut caption(
        &images,
        &model,
        &[
            "--sidecar",
            "--skip-existing",
            "--format",
            "jsonl",
            "--max-new-tokens",
            "3",
        ],
    ));
    assert!(out.status.success());
    let records = jsonl(&stdout);
    assert_eq!(records.len(), 1);
    assert!(records[0]["image"]
        .as_str()
        .is_some_and(|p| p.ends_with("b.jpg")));
}

#[test]
fn shards_partition_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "gated");
    let images = image_folder(dir.path());
    std::fs::remove_file(images.join("broken.png")).expect("rm");
    let mut seen = Vec::new();
    for k in 0..2 {
        let (out, stdout, _) = run(&mut caption(
            &images,
            &model,
            &[
                "--format",
                "jsonl",
                "--max-new-tokens",
                "2",
                "--shard",
                &format!("{k}/2"),
            ],
        ));
        assert!(out.status.success());
        seen.extend(
            jsonl(&stdout)
                .iter()
                .map(|r| r["image"].as_str().unwrap_or_default().to_string()),
        );
    }
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(before, seen.len(), "an image was in two shards");
    assert_eq!(seen.len(), 3, "every image is in one shard");
    let (out, _, stderr) = run(&mut caption(&images, &model, &["--shard", "2/2"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("shard"), "{stderr}");
}

#[test]
fn csv_output_has_a_header_and_one_row_per_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "concat");
    let images = image_folder(dir.path());
    let (_, stdout, _) = run(&mut caption(
        &images,
        &model,
        &["--format", "csv", "--max-new-tokens", "2"],
    ));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("image,task,question,output"));
    assert_eq!(lines.len(), 5, "header + 4 rows: {stdout}");
}

#[test]
fn ask_answers_every_question_in_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "separate");
    let images = image_folder(dir.path());
    let questions = dir.path().join("q.txt");
    std::fs::write(
        &questions,
        "what color is the shape?\n\n# a comment\nis there a circle?\n",
    )
    .expect("write");
    let (out, stdout, stderr) = run(bin()
        .arg("ask")
        .arg(images.join("a.png"))
        .arg("--questions")
        .arg(&questions)
        .arg("--model")
        .arg(&model)
        .args(["--format", "jsonl"]));
    assert!(out.status.success(), "{stderr}");
    let records = jsonl(&stdout);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["question"], "what color is the shape?");
    assert_eq!(records[1]["task"], "vqa");
    let (out, _, _) = run(bin()
        .arg("ask")
        .arg(images.join("broken.png"))
        .arg("is it red?")
        .arg("--model")
        .arg(&model));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a corrupt image is a per-input failure"
    );
}

#[test]
fn model_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "concat");
    let images = image_folder(dir.path());
    let (out, _, stderr) = run(&mut caption(&images, &model, &["--fusion", "gated"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--model pretrained-gated"), "{stderr}");
    let (out, _, stderr) = run(bin()
        .arg("caption")
        .arg(&images)
        .arg("--model")
        .arg(dir.path().join("nope")));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("does not exist") && stderr.contains("fusecap init"),
        "{stderr}"
    );
    // A broken weights file names the file.
    std::fs::write(model.join("model.safetensors"), b"garbage").expect("write");
    let (out, _, stderr) = run(bin().arg("caption").arg(&images).arg("--model").arg(&model));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("model.safetensors"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_paths_and_empty_files_are_per_file_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = init_model(dir.path(), "concat");
    let good = dir.path().join("good.png");
    ImageBuffer::from_pixel(8, 8, Rgb([1u8, 2, 3]))
        .save(&good)
        .expect("png");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let (out, stdout, _) = run(bin()
        .arg("caption")
        .arg(&good)
        .arg(&empty)
        .arg(dir.path().join("missing.png"))
        .arg("--model")
        .arg(&model)
        .args(["--format", "jsonl", "--max-new-tokens", "2"]));
    assert_eq!(out.status.code(), Some(1));
    let records = jsonl(&stdout);
    assert_eq!(records.len(), 3);
    let error_of = |name: &str| {
        records
            .iter()
            .find(|r| r["image"].as_str().is_some_and(|p| p.ends_with(name)))
            .and_then(|r| r["error"].as_str())
            .map(String::from)
    };
    assert!(error_of("empty.png").is_some_and(|e| e.contains("empty")));
    assert!(error_of("missing.png").is_some_and(|e| e.contains("no such file")));
    assert!(error_of("good.png").is_none());
}

/// A `--config` file may leave out what the command decides: the fusion
/// (from --fusion) and the vocabulary size (from the tokenizer).
#[test]
fn config_files_need_neither_fusion_nor_vocab_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = init_model(dir.path(), "gated");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).expect("read"))
            .expect("json");
    let fields = cfg.as_object_mut().expect("an object");
    fields.remove("fusion");
    fields.remove("vocab_size");
    let architecture = dir.path().join("architecture.json");
    std::fs::write(&architecture, cfg.to_string()).expect("write");

    let vocab = dir.path().join("vocab.txt");
    std::fs::write(&vocab, "zebra giraffe okapi").expect("write");
    let out = dir.path().join("new");
    let (output, _, stderr) = run(bin()
        .args(["init", "--fusion", "concat", "--quiet", "--config"])
        .arg(&architecture)
        .arg("--vocab-from")
        .arg(&vocab)
        .arg("--out")
        .arg(&out));
    assert!(output.status.success(), "{stderr}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("read"))
            .expect("json");
    assert_eq!(written["fusion"], "concat");
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).expect("read"))
            .expect("json");
    let tokens = tokenizer["model"]["vocab"]
        .as_object()
        .expect("a word-level vocabulary")
        .len();
    assert_eq!(written["vocab_size"].as_u64(), Some(tokens as u64));
    assert_eq!(written["d_model"], cfg["d_model"]);

    // A broken file is refused naming the option and the file.
    std::fs::write(&architecture, "{\"d_model\": 0}").expect("write");
    let (output, _, stderr) = run(bin()
        .args(["init", "--fusion", "concat", "--config"])
        .arg(&architecture)
        .arg("--out")
        .arg(dir.path().join("broken")));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("--config") && stderr.contains("architecture.json"),
        "{stderr}"
    );
}

/// `--model NAME` finds a shipped model by name when no such folder exists.
#[test]
fn model_names_a_shipped_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = dir.path().join("shipped");
    std::fs::create_dir_all(&shipped).expect("mkdir");
    std::fs::rename(init_model(dir.path(), "gated"), shipped.join("tiny-gated")).expect("move");
    let image = image_folder(dir.path()).join("a.png");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let by_name = |name: &str| {
        run(bin()
            .current_dir(&elsewhere)
            .env("FUSECAP_MODELS", &shipped)
            .args(["caption", "--format", "jsonl", "--quiet", "--model", name])
            .arg(&image))
    };

    let (output, stdout, stderr) = by_name("tiny-gated");
    assert!(output.status.success(), "{stderr}");
    let records = jsonl(&stdout);
    assert_eq!(records.len(), 1, "{stdout}");
    assert_eq!(records[0]["model"], "tiny-gated");
    assert_eq!(records[0]["fusion"], "gated");

    let (output, _, stderr) = by_name("no-such-model");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("no-such-model"), "{stderr}");
}
