//! Importer for COCO captions (`captions_train2014.json` and friends): one caption
//! record per image holding all of its captions. Images stay where they are; the
//! manifest refers to them by a path relative to the output folder.

use super::files::{manifest_path, read_json, ImageIndex};
use super::manifest::{write_manifest, ManifestLine};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct CocoCaptions {
    images: Vec<CocoImage>,
    annotations: Vec<CocoCaption>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoCaption {
    image_id: u64,
    caption: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoOptions {
    /// Split written into every record; `None` infers it from the captions file name.
    pub split: Option<String>,
    /// Keep captions as written instead of lower-casing them and dropping the final period.
    pub keep_case: bool,
}

/// How many images went in, and which did not.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    pub records: usize,
    pub images: usize,
    pub split: Option<String>,
    /// Images (or questions' images) not found in the image folder: skipped.
    pub missing_images: usize,
    /// Up to five missing file names, for the message.
    pub missing_examples: Vec<String>,
    /// Records dropped because their image is missing.
    pub records_without_image: usize,
    /// Entries skipped for another reason (described in `skipped_reason`).
    pub skipped: usize,
    pub skipped_reason: String,
}

impl ImportSummary {
    pub(crate) fn note_missing(&mut self, name: String) {
        self.missing_images += 1;
        if self.missing_examples.len() < 5 {
            self.missing_examples.push(name);
        }
    }
}

/// Converts a COCO captions file into `out/manifest.jsonl`.
pub fn convert_coco(
    captions: &Path,
    images: &Path,
    out: &Path,
    opts: &CocoOptions,
) -> anyhow::Result<ImportSummary> {
    let coco: CocoCaptions = read_json(
        captions,
        "COCO captions file (expected \"images\" and \"annotations\")",
    )?;
    let index = ImageIndex::build(images)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create folder {}", out.display()))?;
    let split = opts.split.clone().or_else(|| split_from_name(captions));

    let mut by_image: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut summary = ImportSummary {
        split: split.clone(),
        skipped_reason: "captions of images not listed in \"images\", or empty".into(),
        ..Default::default()
    };
    let known: BTreeMap<u64, &str> = coco
        .images
        .iter()
        .map(|im| (im.id, im.file_name.as_str()))
        .collect();
    for annotation in &coco.annotations {
        let caption = normalize_caption(&annotation.caption, opts.keep_case);
        if !known.contains_key(&annotation.image_id) || caption.is_empty() {
            summary.skipped += 1;
            continue;
        }
        by_image
            .entry(annotation.image_id)
            .or_default()
            .push(caption);
    }

    let mut lines = Vec::new();
    for (id, captions) in by_image {
        let file_name = known.get(&id).copied().unwrap_or_default();
        let Some(path) = index.find(Some(file_name), id) else {
            summary.note_missing(file_name.to_string());
            summary.records_without_image += 1;
            continue;
        };
        lines.push(ManifestLine::caption(
            manifest_path(out, &path)?,
            captions,
            split.clone(),
        ));
        summary.images += 1;
    }
    if lines.is_empty() {
        anyhow::bail!(
            "nothing imported from {}: none of its {} captioned images is in {} (e.g. {}); check the image folder",
            captions.display(),
            summary.missing_images,
            images.display(),
            summary.missing_examples.join(", ")
        );
    }
    summary.records = lines.len();
    write_manifest(&out.join("manifest.jsonl"), &lines)?;
    Ok(summary)
}

/// Whitespace collapsed; unless `keep_case`, lower case without a final period.
pub fn normalize_caption(caption: &str, keep_case: bool) -> String {
    let joined = caption.split_whitespace().collect::<Vec<_>>().join(" ");
    if keep_case {
        return joined;
    }
    joined
        .to_lowercase()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string()
}

/// "train" / "val" / "test" from a name like `captions_val2014.json`.
pub(crate) fn split_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    ["train", "val", "test"]
        .into_iter()
        .find(|s| name.contains(s))
        .map(str::to_string)
}
