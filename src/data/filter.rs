//! A subset of manifests as a new manifest: the records of one split, task,
//! question type or answer, or the questions with or without certain words.
//! Curricula are built from such subsets (the shipped models' yes/no stages,
//! README).

use crate::data::files::manifest_path;
use crate::data::manifest::{
    load_manifests, write_manifest, ManifestLine, ManifestProblem, Record, Task,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Which records to keep; an empty or absent criterion keeps everything.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Records without a split count as "train".
    pub split: Option<String>,
    /// "caption" or "vqa".
    pub task: Option<String>,
    /// Keep questions of these types (captions have none, so they go).
    pub question_types: Vec<String>,
    /// Keep questions with one of these answers (captions have none, so they go).
    pub answers: Vec<String>,
    /// Keep questions holding at least one of these words (whole words, any case).
    pub with_words: Vec<String>,
    /// Drop questions holding any of these words (whole words, any case).
    pub without_words: Vec<String>,
}

impl RecordFilter {
    pub fn keeps(&self, record: &Record) -> bool {
        if self.split.as_deref().is_some_and(|s| !record.in_split(s)) {
            return false;
        }
        let (task, question, answer, question_type) = match &record.task {
            Task::Caption { .. } => ("caption", None, None, None),
            Task::Vqa {
                question,
                answer,
                question_type,
                ..
            } => (
                "vqa",
                Some(question.as_str()),
                Some(answer.as_str()),
                question_type.as_deref(),
            ),
        };
        if self.task.as_deref().is_some_and(|t| t != task) {
            return false;
        }
        if !self.question_types.is_empty()
            && !question_type.is_some_and(|t| self.question_types.iter().any(|q| q == t))
        {
            return false;
        }
        if !self.answers.is_empty() && !answer.is_some_and(|a| self.answers.iter().any(|x| x == a))
        {
            return false;
        }
        if !self.with_words.is_empty() && !question.is_some_and(|q| holds_any(q, &self.with_words))
        {
            return false;
        }
        !question.is_some_and(|q| holds_any(q, &self.without_words))
    }
}

fn holds_any(question: &str, words: &[String]) -> bool {
    question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|word| words.iter().any(|w| w.eq_ignore_ascii_case(word)))
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterSummary {
    pub read: usize,
    pub kept: usize,
    /// Bad input lines, as "FILE:LINE: message".
    pub problems: Vec<String>,
}

/// Writes the records of `inputs` that `filter` keeps to `out_dir/manifest.jsonl`,
/// their image paths rewritten relative to `out_dir`. Bad input lines are
/// skipped and listed; keeping nothing is an error.
pub fn filter_manifests(
    inputs: &[PathBuf],
    filter: &RecordFilter,
    out_dir: &Path,
) -> anyhow::Result<FilterSummary> {
    let manifest = load_manifests(inputs)?;
    let kept: Vec<&Record> = manifest
        .records
        .iter()
        .filter(|r| filter.keeps(r))
        .collect();
    if kept.is_empty() {
        anyhow::bail!(
            "no record of {} passes the filter: check its split, task, question types, answers and words",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let lines = kept
        .iter()
        .map(|r| Ok(manifest_line(r, manifest_path(out_dir, &r.image)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_manifest(&out_dir.join("manifest.jsonl"), &lines)?;
    Ok(FilterSummary {
        read: manifest.records.len(),
        kept: lines.len(),
        problems: manifest
            .problems
            .iter()
            .map(ManifestProblem::to_string)
            .collect(),
    })
}

fn manifest_line(record: &Record, image: String) -> ManifestLine {
    match &record.task {
        Task::Caption { captions } => {
            ManifestLine::caption(image, captions.clone(), record.split.clone())
        }
        Task::Vqa {
            question,
            answer,
            answers,
            question_type,
        } => ManifestLine::vqa(
            image,
            question,
            answer,
            answers.clone(),
            question_type.clone(),
            record.split.clone(),
        ),
    }
}
