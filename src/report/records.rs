//! Which manifest records a report covers, and how they are grouped.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use crate::data::manifest::{Manifest, Record, Task};

/// The question-type key of caption records in per-type tables.
pub const CAPTION_TYPE: &str = "caption";
/// The question-type key of VQA records that name no type.
pub const UNTYPED_VQA: &str = "vqa";

/// The share of training images `fusecap train` validates on, by default.
pub const DEFAULT_VAL_PERCENT: u64 = 5;

/// The records of `split`, at most `limit` of them, in manifest order.
/// Errs, naming the splits the manifest does have, when the split is empty.
/// A manifest without "val" records still has a validation split: the
/// training images that `fusecap train` holds out by default.
pub fn select_records<'a>(
    manifest: &'a Manifest,
    path: &Path,
    split: &str,
    limit: Option<usize>,
) -> Result<Vec<&'a Record>> {
    let labelled_val = manifest.records.iter().any(|r| r.in_split("val"));
    let mut records: Vec<&Record> = if split == "val" && !labelled_val {
        // What `fusecap train` holds out for validation by default.
        crate::data::split::split_records(&manifest.records, DEFAULT_VAL_PERCENT).val
    } else {
        manifest
            .records
            .iter()
            .filter(|r| r.in_split(split))
            .collect()
    };
    if records.is_empty() {
        bail!(
            "{}: no records in split \"{split}\" (the manifest has {}); choose one of those",
            path.display(),
            split_counts(manifest)
        );
    }
    if let Some(limit) = limit {
        records.truncate(limit);
    }
    Ok(records)
}

/// "train: 80, test: 20": the manifest's splits and their sizes.
pub fn split_counts(manifest: &Manifest) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &manifest.records {
        *counts
            .entry(r.split.as_deref().unwrap_or("train"))
            .or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    parts.join(", ")
}

/// The per-type key of a record: its question type, "vqa" for an untyped
/// question, "caption" for a caption.
pub fn type_key(record: &Record) -> String {
    match &record.task {
        Task::Caption { .. } => CAPTION_TYPE.to_string(),
        Task::Vqa { question_type, .. } => question_type
            .clone()
            .unwrap_or_else(|| UNTYPED_VQA.to_string()),
    }
}
