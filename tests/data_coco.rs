//! COCO captions and VQAv2 importers on small fixtures written here.

use clap::Parser;
use fusecap::data::coco::{convert_coco, CocoOptions};
use fusecap::data::manifest::{load_manifest, Task};
use fusecap::data::vqav2::{convert_vqav2, TypeField, Vqav2Options};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// COCO images 1 and 2 exist (2 only under a 2017-style name), 3 is missing.
fn coco_fixture(root: &Path) {
    write(&root.join("imgs/COCO_val2014_000000000001.jpg"), b"jpg");
    write(&root.join("imgs/000000000002.jpg"), b"jpg");
    write(&root.join("imgs/notes.txt"), b"not an image");
    let captions = json!({
        "images": [
            {"id": 1, "file_name": "COCO_val2014_000000000001.jpg"},
            {"id": 2, "file_name": "COCO_val2014_000000000002.jpg"},
            {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"}
        ],
        "annotations": [
            {"image_id": 1, "caption": "A man riding  a horse."},
            {"image_id": 1, "caption": "Someone on a horse"},
            {"image_id": 2, "caption": "Two cats.\n"},
            {"image_id": 3, "caption": "A missing picture."},
            {"image_id": 7, "caption": "An image nobody listed."}
        ]
    });
    write(
        &root.join("ann/captions_val2014.json"),
        captions.to_string().as_bytes(),
    );
}

#[test]
fn coco_captions_become_one_record_per_found_image() {
    let tmp = tempfile::tempdir().unwrap();
    coco_fixture(tmp.path());
    let out = tmp.path().join("out/coco");
    std::fs::create_dir_all(&out).unwrap();
    let s = convert_coco(
        &tmp.path().join("ann/captions_val2014.json"),
        &tmp.path().join("imgs"),
        &out,
        &CocoOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (s.records, s.images, s.missing_images, s.skipped),
        (2, 2, 1, 1)
    );
    assert_eq!(s.missing_examples, vec!["COCO_val2014_000000000003.jpg"]);
    assert_eq!(s.split.as_deref(), Some("val"));

    let text = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    assert!(
        text.contains("\"../../imgs/"),
        "relative paths expected: {text}"
    );
    let m = load_manifest(&out.join("manifest.jsonl")).unwrap();
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let captions: Vec<Vec<String>> = m
        .records
        .iter()
        .map(|r| match &r.task {
            Task::Caption { captions } => captions.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        captions,
        vec![
            vec![
                "a man riding a horse".to_string(),
                "someone on a horse".into()
            ],
            vec!["two cats".to_string()]
        ]
    );
    assert!(m.records[1].image.ends_with("000000000002.jpg"));
    assert!(m.records.iter().all(|r| r.in_split("val")));
}

#[test]
fn coco_keep_case_and_split_override() {
    let tmp = tempfile::tempdir().unwrap();
    coco_fixture(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = CocoOptions {
        split: Some("test".into()),
        keep_case: true,
    };
    convert_coco(
        &tmp.path().join("ann/captions_val2014.json"),
        &tmp.path().join("imgs"),
        &out,
        &opts,
    )
    .unwrap();
    let m = load_manifest(&out.join("manifest.jsonl")).unwrap();
    assert!(m.records.iter().all(|r| r.in_split("test")));
    assert!(
        matches!(&m.records[0].task, Task::Caption { captions } if captions[0] == "A man riding a horse.")
    );
}

#[test]
fn coco_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    coco_fixture(tmp.path());
    let bad = tmp.path().join("ann/broken.json");
    write(&bad, b"{\"images\": [");
    let err = format!(
        "{:#}",
        convert_coco(
            &bad,
            &tmp.path().join("imgs"),
            tmp.path(),
            &CocoOptions::default()
        )
        .unwrap_err()
    );
    assert!(err.contains("broken.json"), "{err}");
    let err = format!(
        "{:#}",
        convert_coco(
            &tmp.path().join("ann/captions_val2014.json"),
            &tmp.path().join("no-such-dir"),
            tmp.path(),
            &CocoOptions::default()
        )
        .unwrap_err()
    );
    assert!(err.contains("no-such-dir"), "{err}");
    // Images all missing: nothing to write is an error, not an empty manifest.
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    let err = format!(
        "{:#}",
        convert_coco(
            &tmp.path().join("ann/captions_val2014.json"),
            &tmp.path().join("empty"),
            tmp.path(),
            &CocoOptions::default()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("empty") && err.contains("image folder"),
        "{err}"
    );
}

fn vqa_fixture(root: &Path) {
    write(&root.join("imgs/COCO_val2014_000000000001.jpg"), b"jpg");
    write(&root.join("imgs/other_000000000002.png"), b"png");
    let questions = json!({
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 1, "question": "What color is the horse? ", "question_id": 10},
            {"image_id": 1, "question": "Is it sunny?", "question_id": 11},
            {"image_id": 2, "question": "How many cats?", "question_id": 20},
            {"image_id": 3, "question": "Where is this?", "question_id": 30},
            {"image_id": 3, "question": "Is it night?", "question_id": 31},
            {"image_id": 1, "question": "Unannotated?", "question_id": 99}
        ]
    });
    let ten = |a: &str| {
        (0..10)
            .map(|i| json!({"answer": if i < 7 { a } else { "other" }, "answer_id": i + 1}))
            .collect::<Vec<_>>()
    };
    let annotations = json!({
        "annotations": [
            {"question_id": 10, "image_id": 1, "multiple_choice_answer": "brown", "answers": ten("brown"), "question_type": "what color is the", "answer_type": "other"},
            {"question_id": 11, "image_id": 1, "multiple_choice_answer": "yes", "answers": ten("yes"), "question_type": "is it", "answer_type": "yes/no"},
            {"question_id": 20, "image_id": 2, "multiple_choice_answer": "2", "answers": ten("2"), "question_type": "how many", "answer_type": "number"},
            {"question_id": 30, "image_id": 3, "multiple_choice_answer": "park", "answers": ten("park"), "question_type": "where is", "answer_type": "other"},
            {"question_id": 31, "image_id": 3, "multiple_choice_answer": "no", "answers": ten("no"), "question_type": "is it", "answer_type": "yes/no"}
        ]
    });
    write(
        &root.join("v2_OpenEnded_mscoco_val2014_questions.json"),
        questions.to_string().as_bytes(),
    );
    write(
        &root.join("v2_mscoco_val2014_annotations.json"),
        annotations.to_string().as_bytes(),
    );
}

#[test]
fn vqav2_joins_questions_and_annotations_with_all_answers() {
    let tmp = tempfile::tempdir().unwrap();
    vqa_fixture(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let run = |field: TypeField| {
        convert_vqav2(
            &tmp.path()
                .join("v2_OpenEnded_mscoco_val2014_questions.json"),
            &tmp.path().join("v2_mscoco_val2014_annotations.json"),
            &tmp.path().join("imgs"),
            &out,
            &Vqav2Options {
                split: None,
                type_field: field,
            },
        )
        .unwrap()
    };
    let s = run(TypeField::AnswerType);
    assert_eq!(s.records, 3);
    assert_eq!(s.images, 2);
    assert_eq!((s.missing_images, s.records_without_image), (1, 2));
    assert_eq!(s.missing_examples, vec!["COCO_val2014_000000000003.jpg"]);
    assert_eq!(s.skipped, 1);
    assert_eq!(s.split.as_deref(), Some("val"));

    let m = load_manifest(&out.join("manifest.jsonl")).unwrap();
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let vqa: Vec<(String, String, Vec<String>, Option<String>)> = m
        .records
        .iter()
        .map(|r| match &r.task {
            Task::Vqa {
                question,
                answer,
                answers,
                question_type,
            } => (
                question.clone(),
                answer.clone(),
                answers.clone(),
                question_type.clone(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(vqa[0].0, "What color is the horse?");
    assert_eq!(vqa[0].1, "brown");
    assert_eq!(vqa[0].2.len(), 10);
    assert_eq!(vqa[0].2.iter().filter(|a| *a == "brown").count(), 7);
    let types: Vec<_> = vqa.iter().map(|v| v.3.clone().unwrap()).collect();
    assert_eq!(types, vec!["other", "yes/no", "number"]);
    assert!(m.records[2].image.ends_with("other_000000000002.png"));

    std::fs::remove_file(out.join("manifest.jsonl")).unwrap();
    run(TypeField::QuestionType);
    let m = load_manifest(&out.join("manifest.jsonl")).unwrap();
    assert!(
        matches!(&m.records[2].task, Task::Vqa { question_type: Some(t), .. } if t == "how many")
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    data: fusecap::cli::data::DataArgs,
}

#[test]
fn missing_images_give_exit_code_one() {
    let tmp = tempfile::tempdir().unwrap();
    vqa_fixture(tmp.path());
    let root = tmp.path().to_str().unwrap().to_string();
    let cli = Cli::try_parse_from([
        "fusecap".to_string(),
        "vqav2".into(),
        "--questions".into(),
        format!("{root}/v2_OpenEnded_mscoco_val2014_questions.json"),
        "--annotations".into(),
        format!("{root}/v2_mscoco_val2014_annotations.json"),
        "--images".into(),
        format!("{root}/imgs"),
        "--out".into(),
        format!("{root}/new/out"),
        "--split".into(),
        "train".into(),
    ])
    .unwrap();
    let code = fusecap::cli::data::run(cli.data).unwrap();
    assert_eq!(code, ExitCode::from(1));
    let m = load_manifest(&tmp.path().join("new/out/manifest.jsonl")).unwrap();
    assert!(m.records.iter().all(|r| r.in_split("train")));

    coco_fixture(tmp.path());
    write(
        &tmp.path().join("imgs/COCO_val2014_000000000003.jpg"),
        b"jpg",
    );
    let cli = Cli::try_parse_from([
        "fusecap".to_string(),
        "coco".into(),
        "--captions".into(),
        format!("{root}/ann/captions_val2014.json"),
        "--images".into(),
        format!("{root}/imgs"),
        "--out".into(),
        format!("{root}/coco-out"),
    ])
    .unwrap();
    assert_eq!(
        fusecap::cli::data::run(cli.data).unwrap(),
        ExitCode::SUCCESS
    );
}
