//! `fusecap data filter`: the records that pass every criterion, loadable from the new folder.

use fusecap::data::filter::{filter_manifests, RecordFilter};
use fusecap::data::manifest::{load_manifest, Task};
use std::path::{Path, PathBuf};

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not really a png").unwrap();
}

/// A manifest with one caption, four yes/no shape questions (two negated, one
/// in the test split), a colour question and a bad line (line 4).
fn fixture(dir: &Path) -> PathBuf {
    touch(&dir.join("images/a.png"));
    touch(&dir.join("images/b.png"));
    let lines = [
        r#"{"image":"images/a.png","task":"caption","captions":["a red circle"],"split":"train"}"#,
        r#"{"image":"images/a.png","task":"vqa","question":"is there a circle?","answer":"yes","question_type":"yes/no shape","split":"train"}"#,
        r#"{"image":"images/a.png","task":"vqa","question":"is there not a circle?","answer":"no","question_type":"yes/no shape","split":"train"}"#,
        r#"{"image":"images/a.png","task":"vqa","question":"#,
        r#"{"image":"images/b.png","task":"vqa","question":"Is No triangle present?","answer":"yes","question_type":"yes/no shape"}"#,
        r#"{"image":"images/b.png","task":"vqa","question":"what color is the shape?","answer":"blue","question_type":"color","split":"train"}"#,
        r#"{"image":"images/b.png","task":"vqa","question":"is a notch present?","answer":"no","question_type":"yes/no shape","split":"test"}"#,
    ];
    let manifest = dir.join("m.jsonl");
    std::fs::write(&manifest, lines.join("\n")).unwrap();
    manifest
}

fn new_folder(parent: &Path, name: &str) -> PathBuf {
    let folder = parent.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

fn questions(manifest: &Path) -> Vec<String> {
    load_manifest(manifest)
        .unwrap()
        .records
        .iter()
        .map(|r| match &r.task {
            Task::Vqa { question, .. } => question.clone(),
            Task::Caption { captions } => captions[0].clone(),
        })
        .collect()
}

#[test]
fn only_records_passing_every_criterion_are_written_with_paths_that_still_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let out = new_folder(dir.path(), "derived/positive");
    let filter = RecordFilter {
        split: Some("train".into()),
        question_types: vec!["yes/no shape".into()],
        without_words: vec!["not".into(), "no".into()],
        ..RecordFilter::default()
    };
    let summary = filter_manifests(&[manifest], &filter, &out).unwrap();

    assert_eq!((summary.read, summary.kept), (6, 1));
    assert_eq!(summary.problems.len(), 1);
    assert!(
        summary.problems[0].contains("m.jsonl:4:"),
        "{:?}",
        summary.problems
    );
    let written = out.join("manifest.jsonl");
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains(r#""image":"../../images/a.png""#), "{text}");
    let loaded = load_manifest(&written).unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert!(loaded.problems.is_empty());
    // Loading normalises `derived/positive/../../images/a.png` to the original's path.
    assert_eq!(loaded.records[0].image, dir.path().join("images/a.png"));
    assert_eq!(questions(&written), vec!["is there a circle?"]);
}

#[test]
fn words_match_whole_words_in_any_case_and_no_split_counts_as_train() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let out = new_folder(dir.path(), "negated-excluded");
    let filter = RecordFilter {
        question_types: vec!["yes/no shape".into()],
        without_words: vec!["no".into()],
        ..RecordFilter::default()
    };
    filter_manifests(std::slice::from_ref(&manifest), &filter, &out).unwrap();
    // "Is No triangle" goes, "notch" and "not" are other words.
    assert_eq!(
        questions(&out.join("manifest.jsonl")),
        vec![
            "is there a circle?",
            "is there not a circle?",
            "is a notch present?"
        ]
    );

    let train_vqa = new_folder(dir.path(), "train-vqa");
    let filter = RecordFilter {
        split: Some("train".into()),
        task: Some("vqa".into()),
        ..RecordFilter::default()
    };
    let summary = filter_manifests(&[manifest], &filter, &train_vqa).unwrap();
    assert_eq!(summary.kept, 4);
    let text = std::fs::read_to_string(train_vqa.join("manifest.jsonl")).unwrap();
    assert!(text.contains("Is No triangle present?"));
    assert!(!text.contains("notch") && !text.contains("captions"));
}

#[test]
fn a_filter_that_keeps_nothing_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let out = new_folder(dir.path(), "empty");
    let filter = RecordFilter {
        question_types: vec!["count".into()],
        ..RecordFilter::default()
    };
    let err = filter_manifests(&[manifest], &filter, &out).unwrap_err();
    assert!(err.to_string().contains("question types"), "{err}");
    assert!(!out.join("manifest.jsonl").exists());
}

#[test]
fn a_filtered_manifest_holds_out_the_same_images_for_validation() {
    use fusecap::data::split::split_records;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..40 {
        touch(&dir.path().join(format!("images/{i}.png")));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"vqa","question":"is there a circle?","answer":"yes","question_type":"yes/no shape","split":"train"}}"#
        ));
        lines.push(format!(
            r#"{{"image":"images/{i}.png","task":"caption","captions":["a circle"],"split":"train"}}"#
        ));
    }
    let manifest = dir.path().join("m.jsonl");
    std::fs::write(&manifest, lines.join("\n")).unwrap();
    let out = new_folder(dir.path(), "subset");
    let filter = RecordFilter {
        task: Some("vqa".into()),
        ..RecordFilter::default()
    };
    filter_manifests(std::slice::from_ref(&manifest), &filter, &out).unwrap();

    let held_out = |path: &Path| -> Vec<String> {
        let m = load_manifest(path).unwrap();
        let mut names: Vec<String> = split_records(&m.records, 50)
            .val
            .iter()
            .filter(|r| matches!(r.task, Task::Vqa { .. }))
            .map(|r| r.image.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let original = held_out(&manifest);
    assert!(!original.is_empty() && original.len() < 40, "{original:?}");
    assert_eq!(held_out(&out.join("manifest.jsonl")), original);
}

#[test]
fn answers_and_required_words_select_the_questions_whose_answer_matches_the_scene() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    // Negated questions answered "no": the shape is there.
    let out = new_folder(dir.path(), "negated-no");
    let filter = RecordFilter {
        answers: vec!["no".into()],
        with_words: vec!["not".into(), "no".into()],
        ..RecordFilter::default()
    };
    filter_manifests(std::slice::from_ref(&manifest), &filter, &out).unwrap();
    // "a notch" holds neither word; "Is No triangle" is answered "yes".
    assert_eq!(
        questions(&out.join("manifest.jsonl")),
        vec!["is there not a circle?"]
    );

    let out = new_folder(dir.path(), "yes-or-blue");
    let filter = RecordFilter {
        answers: vec!["yes".into(), "blue".into()],
        ..RecordFilter::default()
    };
    filter_manifests(&[manifest], &filter, &out).unwrap();
    assert_eq!(
        questions(&out.join("manifest.jsonl")),
        vec![
            "is there a circle?",
            "Is No triangle present?",
            "what color is the shape?"
        ]
    );
}
