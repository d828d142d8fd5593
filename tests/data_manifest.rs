//! Manifest loading: good lines load, each bad line becomes a problem with its line number.

use fusecap::data::manifest::{load_manifest, load_manifests, write_manifest, ManifestLine, Task};
use std::path::Path;

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not really a png").unwrap();
}

#[test]
fn bad_lines_become_problems_with_line_numbers_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("images/a.png"));
    let manifest = dir.path().join("m.jsonl");
    let lines = [
        r#"{"image":"images/a.png","task":"caption","captions":["a red circle"],"split":"train"}"#,
        "",
        r#"{"image":"images/a.png","task":"vqa","question":"what color?","answer":"red","answers":["red","red"],"question_type":"color","split":"test"}"#,
        r#"{"image":"images/a.png","task":"caption""#,
        r#"{"image":"images/a.png","task":"draw","captions":["x"]}"#,
        r#"{"image":"images/a.png","task":"vqa","question":"what?"}"#,
        r#"{"image":"images/a.png","task":"caption","captions":[]}"#,
        r#"{"image":"images/missing.png","task":"caption","captions":["x"]}"#,
        "   ",
        r#"{"image":"images/a.png","task":"vqa","question":"is it?","answer":"yes"}"#,
    ];
    std::fs::write(&manifest, lines.join("\n")).unwrap();
    let m = load_manifest(&manifest).unwrap();

    assert_eq!(m.records.len(), 3);
    let problem_lines: Vec<usize> = m.problems.iter().map(|p| p.line).collect();
    assert_eq!(problem_lines, vec![4, 5, 6, 7, 8]);
    assert!(m.problems[1].message.contains("draw"));
    assert!(m.problems[2].message.contains("answer"));
    assert!(m.problems[4].message.contains("missing.png"));
    let shown = m.problems[0].to_string();
    assert!(
        shown.starts_with(&format!("{}:4: ", manifest.display())),
        "{shown}"
    );

    let first = &m.records[0];
    assert_eq!(first.image, dir.path().join("images/a.png"));
    assert_eq!(first.source, format!("{}:1", manifest.display()));
    assert!(first.in_split("train") && !first.in_split("test"));
    match &m.records[1].task {
        Task::Vqa {
            answers,
            question_type,
            ..
        } => {
            assert_eq!(answers.len(), 2);
            assert_eq!(question_type.as_deref(), Some("color"));
        }
        other => panic!("expected vqa, got {other:?}"),
    }
    assert!(m.records[1].in_split("test"));
    // No split counts as train; no answers list gives an empty one.
    let last = &m.records[2];
    assert!(last.in_split("train"));
    assert!(
        matches!(&last.task, Task::Vqa { answers, question_type: None, .. } if answers.is_empty())
    );
}

#[test]
fn a_manifest_without_usable_records_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.jsonl");
    std::fs::write(&manifest, "{oops\n\n{\"task\":\"caption\"}\n").unwrap();
    let err = format!("{:#}", load_manifest(&manifest).unwrap_err());
    assert!(err.contains("bad.jsonl:1:"), "{err}");
    assert!(err.contains("bad.jsonl:3:"), "{err}");

    std::fs::write(&manifest, "\n\n").unwrap();
    let err = format!("{:#}", load_manifest(&manifest).unwrap_err());
    assert!(
        err.contains("bad.jsonl") && err.contains("no records"),
        "{err}"
    );

    let err = format!(
        "{:#}",
        load_manifest(&dir.path().join("absent.jsonl")).unwrap_err()
    );
    assert!(err.contains("absent.jsonl"), "{err}");
}

#[test]
fn written_manifests_load_back_and_concatenate() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("a/images/x.png"));
    touch(&dir.path().join("b/y.png"));
    let caption = ManifestLine::caption("images/x.png", vec!["a star".into()], None);
    let vqa = ManifestLine::vqa(
        "images/x.png",
        "is there a star?",
        "yes",
        vec![],
        Some("exist".into()),
        Some("test".into()),
    );
    let a = dir.path().join("a/manifest.jsonl");
    write_manifest(&a, &[caption.clone(), vqa.clone()]).unwrap();
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(
        !text.contains("answers"),
        "empty answers are omitted: {text}"
    );
    assert!(!dir.path().join("a/manifest.jsonl.tmp").exists());
    let reparsed: ManifestLine = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(reparsed, caption);

    let b = dir.path().join("b/other.jsonl");
    write_manifest(
        &b,
        &[ManifestLine::caption("y.png", vec!["z".into()], None)],
    )
    .unwrap();
    let both = load_manifests(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(both.records.len(), 3);
    assert!(both.problems.is_empty());
    assert_eq!(both.records[2].image, dir.path().join("b/y.png"));
    assert!(load_manifests(&[]).is_err());
}

#[test]
fn image_paths_are_normalised_lexically_and_keep_a_leading_parent() {
    use fusecap::data::files::lexically_normal;
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("images/a.png"));
    let manifest = dir.path().join("subset/./m.jsonl");
    std::fs::create_dir_all(dir.path().join("subset")).unwrap();
    std::fs::write(
        &manifest,
        r#"{"image":"../images/./a.png","task":"caption","captions":["a red circle"]}"#,
    )
    .unwrap();
    let m = load_manifest(&manifest).unwrap();
    assert_eq!(m.records[0].image, dir.path().join("images/a.png"));

    let normal = |p: &str| lexically_normal(Path::new(p));
    assert_eq!(
        normal("data/x/../easy-vqa/./1.png"),
        Path::new("data/easy-vqa/1.png")
    );
    assert_eq!(normal("../../a/b/../c.png"), Path::new("../../a/c.png"));
    assert_eq!(normal("a/../../c.png"), Path::new("../c.png"));
    assert_eq!(normal("/../a.png"), Path::new("/a.png"));
}
