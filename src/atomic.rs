//! Files written whole or not at all.
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `file` by writing a temporary file beside it and renaming it into place,
/// so a crash never leaves a half-written file under the real name. The file
/// gets the mode the process umask gives a new file, even when `write` puts a
/// private (0600) temporary file in place, as the safetensors writer does.
pub fn write_atomically(file: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = file.with_extension(format!(
        "{}.tmp",
        file.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let permissions = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", tmp.display())));
    }
    std::fs::set_permissions(&tmp, permissions)
        .with_context(|| format!("setting the permissions of {}", tmp.display()))?;
    std::fs::rename(&tmp, file)
        .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))
}
