//! Scoring predictions from any system against a manifest.
//!
//! Predictions are JSONL, one `{"image", "output", "question"?}` object per line
//! (what `fusecap caption/ask --format jsonl` writes; other fields are ignored).
//! A line with an `"error"` and no `"output"` is scored as an empty prediction.
//! A prediction matches a manifest record by image path (both sides made
//! absolute and canonical) and, for VQA, by question text (case and spacing
//! ignored).
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::metrics::{metrics_of, Metrics};
use crate::data::manifest::{parse_object, Record, Task};
use crate::metrics::VqaItem;

/// Everything `score` found, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub predictions: String,
    pub manifest: String,
    pub split: Option<String>,
    /// Manifest records that got a prediction.
    pub matched: usize,
    /// Prediction lines that match no manifest record (or could not be read).
    pub unmatched_predictions: usize,
    /// Manifest records (in the split) without a prediction.
    pub missing_predictions: usize,
    /// Matched predictions that were errors, scored as empty.
    pub error_predictions: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One line of the predictions file, as far as scoring cares.
#[derive(Deserialize)]
struct PredictionLine {
    image: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One usable line of a predictions file.
pub struct FilePrediction {
    pub key: Key,
    /// The image path as the line gives it.
    pub image: String,
    pub output: String,
    /// The line holds an error instead of an output; scored as empty.
    pub is_error: bool,
    /// 1-based line number.
    pub line: usize,
}

/// A predictions file: its usable lines, and why the others are not.
pub struct Predictions {
    pub lines: Vec<FilePrediction>,
    pub problems: Vec<String>,
}

/// Reads the predictions file; lines that cannot be used become problems.
pub fn read_predictions(path: &Path) -> Result<Predictions> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read predictions {}: check the path (`fusecap caption` and `fusecap ask` write predictions as JSONL)",
            path.display()
        )
    })?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut out = Predictions {
        lines: Vec::new(),
        problems: Vec::new(),
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_prediction(line, index + 1, &cwd) {
            Ok(p) => out.lines.push(p),
            Err(message) => {
                out.problems
                    .push(format!("{}:{}: {message}", path.display(), index + 1))
            }
        }
    }
    if out.lines.is_empty() {
        let first = out
            .problems
            .first()
            .map(String::as_str)
            .unwrap_or("the file is empty");
        bail!(
            "predictions {} hold no usable line ({first}); each line must be a JSON object with \"image\" and \"output\"",
            path.display()
        );
    }
    Ok(out)
}

fn parse_prediction(line: &str, line_no: usize, cwd: &Path) -> Result<FilePrediction, String> {
    let parsed: PredictionLine = parse_object(line).map_err(|e| {
        format!("not a prediction record ({e}); expected {{\"image\": ..., \"output\": ...}}")
    })?;
    let is_error = parsed.output.is_none() && parsed.error.is_some();
    if parsed.output.is_none() && !is_error {
        return Err("has neither \"output\" nor \"error\"".to_string());
    }
    Ok(FilePrediction {
        key: Key::new(
            &canonical(Path::new(&parsed.image), cwd),
            parsed.question.as_deref(),
        ),
        image: parsed.image,
        output: parsed.output.unwrap_or_default(),
        is_error,
        line: line_no,
    })
}

/// What identifies a prediction: the image and, for VQA, the question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub image: PathBuf,
    /// Lowercase, single-spaced.
    pub question: Option<String>,
}

impl Key {
    fn new(image: &Path, question: Option<&str>) -> Self {
        let question = question.map(|q| {
            q.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        });
        Key {
            image: image.to_path_buf(),
            question,
        }
    }

    fn of_record(record: &Record, cwd: &Path) -> Self {
        let question = match &record.task {
            Task::Caption { .. } => None,
            Task::Vqa { question, .. } => Some(question.as_str()),
        };
        Key::new(&canonical(&record.image, cwd), question)
    }
}

/// The file's canonical path if it exists, else `path` made absolute against
/// `cwd` with `.` and `..` resolved lexically.
fn canonical(path: &Path, cwd: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let mut out = PathBuf::new();
    for component in cwd.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Which predictions belong to which records.
pub struct Matching {
    /// (record index, prediction index)
    pub pairs: Vec<(usize, usize)>,
    /// Record indices without a prediction.
    pub missing: Vec<usize>,
    /// Prediction indices that no record used.
    pub unused: Vec<usize>,
    /// Prediction indices that repeat an earlier prediction's key.
    pub duplicates: Vec<usize>,
}

pub fn match_records(records: &[&Record], predictions: &[FilePrediction]) -> Matching {
    let mut by_key: HashMap<&Key, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (i, p) in predictions.iter().enumerate() {
        if by_key.contains_key(&p.key) {
            duplicates.push(i);
        } else {
            by_key.insert(&p.key, i);
        }
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut used = vec![false; predictions.len()];
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (r, record) in records.iter().enumerate() {
        match by_key.get(&Key::of_record(record, &cwd)) {
            Some(&p) => {
                used[p] = true;
                pairs.push((r, p));
            }
            None => missing.push(r),
        }
    }
    duplicates.iter().for_each(|&i| used[i] = true);
    let unused = (0..predictions.len()).filter(|&i| !used[i]).collect();
    Matching {
        pairs,
        missing,
        unused,
        duplicates,
    }
}

/// Scores the matched predictions against their records.
pub fn score_report(
    predictions_path: &Path,
    manifest_path: &Path,
    split: Option<&str>,
    records: &[&Record],
    predictions: &Predictions,
    matching: &Matching,
) -> ScoreReport {
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    let mut items = Vec::new();
    let mut error_predictions = 0;
    for &(r, p) in &matching.pairs {
        let prediction = &predictions.lines[p];
        error_predictions += usize::from(prediction.is_error);
        match &records[r].task {
            Task::Caption { captions } => {
                hyps.push(prediction.output.clone());
                refs.push(captions.clone());
            }
            Task::Vqa {
                answer,
                answers,
                question_type,
                ..
            } => items.push(VqaItem {
                prediction: prediction.output.clone(),
                answer: answer.clone(),
                answers: answers.clone(),
                question_type: question_type.clone(),
            }),
        }
    }
    ScoreReport {
        predictions: predictions_path.display().to_string(),
        manifest: manifest_path.display().to_string(),
        split: split.map(str::to_string),
        matched: matching.pairs.len(),
        unmatched_predictions: matching.unused.len()
            + matching.duplicates.len()
            + predictions.problems.len(),
        missing_predictions: matching.missing.len(),
        error_predictions,
        metrics: metrics_of(&hyps, &refs, &items),
    }
}

#[cfg(test)]
mod tests {
    use super::{canonical, Key};
    use std::path::Path;

    #[test]
    fn canonical_resolves_dots_for_missing_files() {
        let cwd = Path::new("/no/such/dir");
        assert_eq!(
            canonical(Path::new("./a/../b/c.png"), cwd),
            Path::new("/no/such/dir/b/c.png")
        );
        assert_eq!(
            canonical(Path::new("/x/./y.png"), cwd),
            Path::new("/x/y.png")
        );
    }

    #[test]
    fn question_keys_ignore_case_and_spacing() {
        let a = Key::new(Path::new("/i.png"), Some("What  color is it?"));
        let b = Key::new(Path::new("/i.png"), Some(" what color is it? "));
        assert_eq!(a, b);
        assert_ne!(a, Key::new(Path::new("/i.png"), None));
    }
}
