//! Writing report files: each one whole or not at all.
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::model::dir::write_atomically;

/// Writes pretty JSON atomically, naming the file on failure.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot serialise the report")?;
    write_text(path, &(text + "\n"))
}

/// Writes a text file atomically, naming the file and the fix on failure.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, |tmp| Ok(std::fs::write(tmp, text)?)).with_context(|| {
        format!(
            "cannot write {}: check that its folder exists and is writable",
            path.display()
        )
    })
}
