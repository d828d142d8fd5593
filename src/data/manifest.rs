//! JSONL manifests: one caption or VQA record per line.
//!
//! ```text
//! {"image":"images/00001.png","task":"caption","captions":["a red circle"],"split":"train"}
//! {"image":"images/00001.png","task":"vqa","question":"what color is the circle?","answer":"red","answers":["red"],"question_type":"color","split":"test"}
//! ```
//! Image paths are relative to the folder holding the manifest (absolute paths are kept),
//! and normalised lexically, so that one image has one path whichever manifest names it
//! (`data/subset/../easy-vqa/images/1.png` is `data/easy-vqa/images/1.png`).
//! A bad line becomes a [`ManifestProblem`]; the other lines still load.

use super::files::lexically_normal;
use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a record asks of the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Caption {
        captions: Vec<String>,
    },
    Vqa {
        question: String,
        answer: String,
        /// All annotators' answers (VQAv2 has 10); empty if the manifest gives none.
        answers: Vec<String>,
        question_type: Option<String>,
    },
}

/// One loaded, validated manifest line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The manifest's folder joined with the line's image path, normalised lexically.
    pub image: PathBuf,
    pub task: Task,
    pub split: Option<String>,
    /// Where the record came from, "FILE:LINE", for error messages.
    pub source: String,
}

impl Record {
    /// Records without a split count as "train".
    pub fn in_split(&self, split: &str) -> bool {
        self.split.as_deref().unwrap_or("train") == split
    }
}

/// A manifest line that could not be loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestProblem {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub records: Vec<Record>,
    pub problems: Vec<ManifestProblem>,
    /// Valid records whose image was not found, each with the index in
    /// `records` it would have had. Each is also one of `problems`.
    pub missing_images: Vec<(usize, Record)>,
}

impl Manifest {
    /// This manifest with the records whose image is missing put back in
    /// their places (and out of `problems`), for an evaluation that must
    /// count them as failures instead of scoring only the records it can run.
    pub fn with_missing_images(self) -> Manifest {
        let mut missing = self.missing_images.into_iter().peekable();
        let mut records = Vec::with_capacity(self.records.len() + missing.len());
        let mut sources = std::collections::HashSet::new();
        for (index, record) in self.records.into_iter().enumerate() {
            while let Some((_, r)) = missing.next_if(|(before, _)| *before <= index) {
                sources.insert(r.source.clone());
                records.push(r);
            }
            records.push(record);
        }
        for (_, r) in missing {
            sources.insert(r.source.clone());
            records.push(r);
        }
        let problems = self
            .problems
            .into_iter()
            .filter(|p| !sources.contains(&format!("{}:{}", p.file.display(), p.line)))
            .collect();
        Manifest {
            records,
            problems,
            missing_images: Vec::new(),
        }
    }
}

/// One manifest line as written to disk: mirrors the JSON, image path relative to the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub image: String,
    /// "caption" or "vqa".
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

impl ManifestLine {
    pub fn caption(image: impl Into<String>, captions: Vec<String>, split: Option<String>) -> Self {
        ManifestLine {
            image: image.into(),
            task: "caption".into(),
            captions: Some(captions),
            question: None,
            answer: None,
            answers: None,
            question_type: None,
            split,
        }
    }

    /// `answers` is omitted from the JSON when empty.
    pub fn vqa(
        image: impl Into<String>,
        question: impl Into<String>,
        answer: impl Into<String>,
        answers: Vec<String>,
        question_type: Option<String>,
        split: Option<String>,
    ) -> Self {
        ManifestLine {
            image: image.into(),
            task: "vqa".into(),
            captions: None,
            question: Some(question.into()),
            answer: Some(answer.into()),
            answers: (!answers.is_empty()).then_some(answers),
            question_type,
            split,
        }
    }
}

/// Loads one manifest. Errs if the file cannot be read or holds no usable record;
/// otherwise bad lines are returned in `problems`.
pub fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read manifest {}: check the path (manifests are JSONL files written by `fusecap data ...`)",
            path.display()
        )
    })?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let mut manifest = Manifest::default();
    // Many records share an image (VQA); check each file once.
    let mut exists: HashMap<PathBuf, bool> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let problem = |message| ManifestProblem {
            file: path.to_path_buf(),
            line: line_no,
            message,
        };
        match parse_line(line, dir) {
            Ok((image, task, split)) => {
                let record = Record {
                    image,
                    task,
                    split,
                    source: format!("{}:{}", path.display(), line_no),
                };
                let found = *exists
                    .entry(record.image.clone())
                    .or_insert_with(|| record.image.is_file());
                if found {
                    manifest.records.push(record);
                } else {
                    manifest.problems.push(problem(format!(
                        "image {} not found (paths are relative to the manifest's folder)",
                        record.image.display()
                    )));
                    manifest
                        .missing_images
                        .push((manifest.records.len(), record));
                }
            }
            Err(message) => manifest.problems.push(problem(message)),
        }
    }
    if manifest.records.is_empty() {
        if manifest.problems.is_empty() {
            bail!(
                "manifest {} has no records: it is empty; write one JSON record per line",
                path.display()
            );
        }
        let first: Vec<String> = manifest
            .problems
            .iter()
            .take(3)
            .map(|p| format!("  {p}"))
            .collect();
        bail!(
            "manifest {} has no usable records ({} bad lines); first problems:\n{}",
            path.display(),
            manifest.problems.len(),
            first.join("\n")
        );
    }
    Ok(manifest)
}

/// Loads several manifests and concatenates their records and problems.
pub fn load_manifests(paths: &[PathBuf]) -> anyhow::Result<Manifest> {
    if paths.is_empty() {
        bail!("no manifest given: pass at least one manifest.jsonl");
    }
    let mut all = Manifest::default();
    for path in paths {
        let m = load_manifest(path)?;
        let offset = all.records.len();
        all.missing_images.extend(
            m.missing_images
                .into_iter()
                .map(|(before, record)| (offset + before, record)),
        );
        all.records.extend(m.records);
        all.problems.extend(m.problems);
    }
    Ok(all)
}

/// Writes `records` as JSONL to `path` atomically (a temporary file renamed into place).
pub fn write_manifest(path: &Path, records: &[ManifestLine]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("manifest path {} has no file name", path.display()))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> anyhow::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        for record in records {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.context(format!(
            "cannot write manifest {}: check that its folder exists and is writable",
            path.display()
        ))
    })
}

/// The longest JSONL line read: far above any real record, low enough that
/// one runaway line cannot take the memory of the machine.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Parses one JSONL line, which must be a JSON object: serde would also read
/// a struct from an array (`["x.png", "caption"]`) by position.
pub fn parse_object<T: DeserializeOwned>(line: &str) -> Result<T, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!(
            "the line is {} bytes long, above the limit of {MAX_LINE_BYTES}",
            line.len()
        ));
    }
    if !line.trim_start().starts_with('{') {
        return Err("the line is not a JSON object ({\"field\": value, ...})".to_string());
    }
    serde_json::from_str(line).map_err(|e| e.to_string())
}

fn parse_line(line: &str, dir: &Path) -> Result<(PathBuf, Task, Option<String>), String> {
    let raw: ManifestLine =
        parse_object(line).map_err(|e| format!("not a valid manifest record: {e}"))?;
    if raw.image.trim().is_empty() {
        return Err("\"image\" is empty".into());
    }
    let task = match raw.task.as_str() {
        "caption" => {
            let captions = raw
                .captions
                .ok_or("caption record has no \"captions\" list")?;
            if captions.is_empty() {
                return Err("caption record has an empty \"captions\" list".into());
            }
            if captions.iter().any(|c| c.trim().is_empty()) {
                return Err("caption record has an empty caption".into());
            }
            Task::Caption { captions }
        }
        "vqa" => {
            let question = non_empty(raw.question, "question")?;
            let answer = non_empty(raw.answer, "answer")?;
            Task::Vqa {
                question,
                answer,
                answers: raw.answers.unwrap_or_default(),
                question_type: raw.question_type,
            }
        }
        other => {
            return Err(format!(
                "unknown task {other:?}: use \"caption\" or \"vqa\""
            ))
        }
    };
    Ok((lexically_normal(&dir.join(&raw.image)), task, raw.split))
}

fn non_empty(value: Option<String>, field: &str) -> Result<String, String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(format!("vqa record has an empty \"{field}\"")),
        None => Err(format!("vqa record has no \"{field}\"")),
    }
}
