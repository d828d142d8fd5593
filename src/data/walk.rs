//! Expanding image inputs (files and folders) into the image files to process.
//!
//! Folders are walked recursively and symbolic links are followed, but every
//! real folder (device and inode) is entered once, so a link back to a parent
//! (`ln -s . loop`) neither hangs the walk nor repeats its images. A folder that
//! cannot be read is reported, never skipped silently.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::image::has_image_extension;

/// An input, or a folder found under one, that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct InputProblem {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The image files of the inputs, sorted and de-duplicated, and the problems met.
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub problems: Vec<InputProblem>,
}

/// Expands `inputs`: a file is kept as given (whatever its extension), a
/// folder contributes the files with a known image extension found under it.
pub fn collect_images(inputs: &[PathBuf]) -> Inputs {
    let mut out = Inputs::default();
    let mut seen = HashSet::new();
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(meta) if meta.is_dir() => walk(input, &mut seen, &mut out),
            Ok(_) => out.files.push(input.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.problems.push(InputProblem {
                path: input.clone(),
                message: "no such file or folder".into(),
            }),
            Err(e) => out.problems.push(InputProblem {
                path: input.clone(),
                message: format!("cannot read ({e})"),
            }),
        }
    }
    out.files.sort();
    out.files.dedup();
    out
}

/// Walks `root` depth-first without recursion, entering each real folder once.
fn walk(root: &Path, seen: &mut HashSet<DirKey>, out: &mut Inputs) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let problem = |message: String| InputProblem {
            path: dir.clone(),
            message,
        };
        let key = match std::fs::metadata(&dir).and_then(|meta| dir_key(&dir, &meta)) {
            Ok(key) => key,
            Err(e) => {
                out.problems
                    .push(problem(format!("cannot read the folder ({e})")));
                continue;
            }
        };
        if !seen.insert(key) {
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.problems.push(problem(format!(
                    "cannot read the folder ({e}); its images were not processed"
                )));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    out.problems
                        .push(problem(format!("cannot list the folder fully ({e})")));
                    break;
                }
            };
            let path = entry.path();
            // Follows links; a dangling link is not a folder, and an image
            // name behind it fails (and is reported) when it is read.
            if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                pending.push(path);
            } else if has_image_extension(&path) {
                out.files.push(path);
            }
        }
    }
}

#[cfg(unix)]
type DirKey = (u64, u64);

#[cfg(unix)]
fn dir_key(_: &Path, meta: &std::fs::Metadata) -> std::io::Result<DirKey> {
    use std::os::unix::fs::MetadataExt;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
type DirKey = PathBuf;

#[cfg(not(unix))]
fn dir_key(dir: &Path, _: &std::fs::Metadata) -> std::io::Result<DirKey> {
    std::fs::canonicalize(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::write(path, b"x").expect("write");
    }

    #[cfg(unix)]
    #[test]
    fn links_back_to_a_parent_are_entered_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("L");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        touch(&root.join("red.png"));
        touch(&root.join("sub/blue.jpg"));
        touch(&root.join("notes.txt"));
        for name in ["a", "b", "sub/up"] {
            std::os::unix::fs::symlink(&root, root.join(name)).expect("symlink");
        }
        let inputs = collect_images(std::slice::from_ref(&root));
        assert_eq!(
            inputs.files,
            vec![root.join("red.png"), root.join("sub/blue.jpg")]
        );
        assert!(inputs.problems.is_empty(), "{:?}", inputs.problems);
    }

    #[test]
    fn missing_inputs_are_problems_and_files_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("photo.dat");
        touch(&file);
        let missing = dir.path().join("nope");
        let inputs = collect_images(&[missing.clone(), file.clone(), file.clone()]);
        assert_eq!(inputs.files, vec![file]);
        assert_eq!(inputs.problems.len(), 1);
        assert_eq!(inputs.problems[0].path, missing);
    }
}
