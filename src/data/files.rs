//! File helpers shared by the importers: output folders, relative paths, image lookup.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Reads and parses a JSON file; `what` names the expected content in the error.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid {what}", path.display()))
}

/// The path of `target` as seen from folder `base`, with `/` separators, for manifests.
/// Both are made absolute first; falls back to the absolute path when they share no root.
pub fn manifest_path(base: &Path, target: &Path) -> anyhow::Result<String> {
    let base =
        std::path::absolute(base).with_context(|| format!("cannot resolve {}", base.display()))?;
    let target = std::path::absolute(target)
        .with_context(|| format!("cannot resolve {}", target.display()))?;
    let rel = relative_path(&base, &target).unwrap_or(target.clone());
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    match parts {
        Some(parts) if rel.is_relative() => Ok(parts.join("/")),
        Some(_) => Ok(rel.to_string_lossy().into_owned()),
        None => bail!("path {} is not valid UTF-8: rename it", target.display()),
    }
}

/// `target` relative to `base`, both absolute and without `..`; `None` without a shared root.
fn relative_path(base: &Path, target: &Path) -> Option<PathBuf> {
    let base: Vec<Component> = normal(base);
    let target: Vec<Component> = normal(target);
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return None;
    }
    let mut rel = PathBuf::new();
    for _ in common..base.len() {
        rel.push("..");
    }
    for c in &target[common..] {
        rel.push(c.as_os_str());
    }
    Some(rel)
}

/// `path` with `.` removed and `..` applied lexically, so that
/// `data/subset/../easy-vqa/images/1.png` and `data/easy-vqa/images/1.png` are one path.
pub fn lexically_normal(path: &Path) -> PathBuf {
    normal(path).iter().collect()
}

/// Components with `.` removed and `..` applied lexically. A `..` above the
/// root is dropped; a leading `..` of a relative path is kept.
fn normal(path: &Path) -> Vec<Component<'_>> {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                None | Some(Component::ParentDir) => out.push(c),
                Some(_) => {}
            },
            other => out.push(other),
        }
    }
    out
}

/// COCO-style image files of a folder, found by the zero-padded id that ends their name
/// (`COCO_val2014_000000000042.jpg`, `000000000042.jpg`).
pub struct ImageIndex {
    dir: PathBuf,
    by_id: BTreeMap<u64, PathBuf>,
}

const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tiff"];

impl ImageIndex {
    pub fn build(dir: &Path) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!("cannot read image folder {}: check the path", dir.display())
        })?;
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            names.push(entry.path());
        }
        names.sort();
        let mut by_id = BTreeMap::new();
        for path in names {
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if !is_image || !path.is_file() {
                continue;
            }
            if let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(padded_id)
            {
                by_id.entry(id).or_insert(path);
            }
        }
        Ok(ImageIndex {
            dir: dir.to_path_buf(),
            by_id,
        })
    }

    /// `preferred` (a file name inside the folder) if it exists, else any file ending with
    /// the zero-padded `id`.
    pub fn find(&self, preferred: Option<&str>, id: u64) -> Option<PathBuf> {
        if let Some(name) = preferred {
            let path = self.dir.join(name);
            if path.is_file() {
                return Some(path);
            }
        }
        self.by_id.get(&id).cloned()
    }
}

/// The id in a name ending with at least 12 digits: "COCO_val2014_000000000042" → 42.
fn padded_id(stem: &str) -> Option<u64> {
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 12 {
        return None;
    }
    stem[stem.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_climbs_out_of_the_base() {
        let rel = relative_path(Path::new("/a/b/out"), Path::new("/a/c/img.jpg"));
        assert_eq!(rel, Some(PathBuf::from("../../c/img.jpg")));
        let rel = relative_path(Path::new("/a/b"), Path::new("/a/b/images/x.png"));
        assert_eq!(rel, Some(PathBuf::from("images/x.png")));
    }

    #[test]
    fn padded_ids_need_twelve_digits() {
        assert_eq!(padded_id("COCO_val2014_000000000042"), Some(42));
        assert_eq!(padded_id("000000123456"), Some(123456));
        assert_eq!(padded_id("photo2"), None);
    }
}
