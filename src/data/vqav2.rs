//! Importer for VQAv2: a questions file (`v2_OpenEnded_mscoco_train2014_questions.json`)
//! joined with its annotations (`v2_mscoco_train2014_annotations.json`) by question id.
//! Each record keeps the consensus answer and all ten annotators' answers. Images are
//! COCO's (`COCO_train2014_000000000042.jpg`); any file ending with the zero-padded
//! image id is accepted too.

use super::coco::{split_from_name, ImportSummary};
use super::files::{manifest_path, read_json, ImageIndex};
use super::manifest::{write_manifest, ManifestLine};
use anyhow::Context;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct Questions {
    questions: Vec<Question>,
    /// "train2014", "val2014", ...; names the image files.
    #[serde(default)]
    data_subtype: Option<String>,
}

#[derive(Deserialize)]
struct Question {
    image_id: u64,
    question: String,
    question_id: u64,
}

#[derive(Deserialize)]
struct Annotations {
    annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
struct Annotation {
    question_id: u64,
    multiple_choice_answer: String,
    #[serde(default)]
    answers: Vec<Answer>,
    #[serde(default)]
    question_type: Option<String>,
    #[serde(default)]
    answer_type: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    answer: String,
}

/// Which VQAv2 field becomes the manifest's `question_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TypeField {
    /// "yes/no", "number" or "other": the usual breakdown of VQA accuracy.
    #[default]
    AnswerType,
    /// One of ~65 question prefixes ("what color is the", "how many").
    QuestionType,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vqav2Options {
    /// Split written into every record; `None` infers it from the questions file.
    pub split: Option<String>,
    pub type_field: TypeField,
}

/// Converts VQAv2 questions + annotations into `out/manifest.jsonl`.
pub fn convert_vqav2(
    questions: &Path,
    annotations: &Path,
    images: &Path,
    out: &Path,
    opts: &Vqav2Options,
) -> anyhow::Result<ImportSummary> {
    let qs: Questions = read_json(questions, "VQAv2 questions file (expected \"questions\")")?;
    let anns: Annotations = read_json(
        annotations,
        "VQAv2 annotations file (expected \"annotations\")",
    )?;
    let index = ImageIndex::build(images)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create folder {}", out.display()))?;
    let subtype = qs
        .data_subtype
        .clone()
        .or_else(|| subtype_from_name(questions));
    let split = opts.split.clone().or_else(|| {
        subtype
            .as_deref()
            .map(|s| s.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| split_from_name(questions))
    });
    let by_question: HashMap<u64, &Annotation> = anns
        .annotations
        .iter()
        .map(|a| (a.question_id, a))
        .collect();

    let mut summary = ImportSummary {
        split: split.clone(),
        skipped_reason: "questions without an annotation".into(),
        ..Default::default()
    };
    // Resolved manifest path of each image, or None when missing.
    let mut image_paths: HashMap<u64, Option<String>> = HashMap::new();
    let mut lines = Vec::new();
    for q in &qs.questions {
        let Some(annotation) = by_question.get(&q.question_id) else {
            summary.skipped += 1;
            continue;
        };
        let expected = subtype
            .as_deref()
            .map(|s| format!("COCO_{s}_{:012}.jpg", q.image_id));
        let path = match image_paths.get(&q.image_id) {
            Some(found) => found.clone(),
            None => {
                let found = match index.find(expected.as_deref(), q.image_id) {
                    Some(p) => Some(manifest_path(out, &p)?),
                    None => {
                        summary.note_missing(
                            expected.unwrap_or_else(|| format!("*{:012}.jpg", q.image_id)),
                        );
                        None
                    }
                };
                image_paths.insert(q.image_id, found.clone());
                found
            }
        };
        let Some(path) = path else {
            summary.records_without_image += 1;
            continue;
        };
        let question_type = match opts.type_field {
            TypeField::AnswerType => annotation.answer_type.clone(),
            TypeField::QuestionType => annotation.question_type.clone(),
        };
        lines.push(ManifestLine::vqa(
            path,
            q.question.trim(),
            annotation.multiple_choice_answer.clone(),
            annotation
                .answers
                .iter()
                .map(|a| a.answer.clone())
                .collect(),
            question_type,
            split.clone(),
        ));
    }
    summary.images = image_paths.values().filter(|p| p.is_some()).count();
    if lines.is_empty() {
        anyhow::bail!(
            "nothing imported from {}: {} questions lack an annotation in {} and {} images are not in {} (e.g. {}); check the files and the image folder",
            questions.display(),
            summary.skipped,
            annotations.display(),
            summary.missing_images,
            images.display(),
            summary.missing_examples.join(", ")
        );
    }
    summary.records = lines.len();
    write_manifest(&out.join("manifest.jsonl"), &lines)?;
    Ok(summary)
}

/// "val2014" from `v2_OpenEnded_mscoco_val2014_questions.json`.
fn subtype_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|part| {
            ["train", "val", "test"].iter().any(|s| {
                part.strip_prefix(s)
                    .is_some_and(|y| y.len() == 4 && y.chars().all(|c| c.is_ascii_digit()))
            })
        })
        .map(str::to_string)
}
