//! What several commands share: exit codes, argument checks, and notes and
//! progress bars on stderr.
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::Fusion;
use crate::report::compare::CompareProgress;
use crate::report::prediction::Prediction;

/// Exit code when some inputs failed but the others were processed.
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit code for an error that stopped the whole run (bad model, bad arguments).
pub const EXIT_FATAL: u8 = 2;

/// A progress bar on stderr, hidden when stderr is not a terminal or with --quiet.
pub fn progress_bar(len: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() || len < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Exit code for a run where `failures` inputs failed.
pub fn exit_code(failures: usize) -> std::process::ExitCode {
    if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EXIT_SOME_FAILED)
    }
}

/// Refuses a flag under its earlier name, naming the one that replaced it.
pub fn refuse_renamed(old: &str, new: &str, given: bool) -> Result<()> {
    if given {
        bail!("{old} was renamed {new}: use {new} with the same value");
    }
    Ok(())
}

/// Errs naming the option when a count is 0.
pub fn check_counts(counts: &[(&str, usize)]) -> Result<()> {
    for (name, value) in counts {
        if *value == 0 {
            bail!("{name} must be at least 1 (got 0)");
        }
    }
    Ok(())
}

pub fn check_limit(limit: Option<usize>) -> Result<()> {
    if limit == Some(0) {
        bail!("--limit must be at least 1 (got 0); leave it out to evaluate every record");
    }
    Ok(())
}

/// Reports unreadable lines of a manifest or predictions file on stderr (the first three of them).
pub fn warn_problems(path: &Path, problems: &[impl std::fmt::Display]) {
    if problems.is_empty() {
        return;
    }
    eprintln!(
        "warning: skipped {} unreadable line(s) in {}:",
        problems.len(),
        path.display()
    );
    for p in problems.iter().take(3) {
        eprintln!("  {p}");
    }
}

/// Reports records whose image could not be read (the first three of them).
pub fn warn_failures(predictions: &[Prediction]) {
    let failed: Vec<&Prediction> = predictions.iter().filter(|p| p.error.is_some()).collect();
    if failed.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} record(s) could not be run and count as empty outputs:",
        failed.len()
    );
    for p in failed.iter().take(3) {
        eprintln!("  {}: {}", p.source, p.error.as_deref().unwrap_or_default());
    }
}

/// Notes on stderr while a comparison runs: which model, a progress bar, and
/// the records that could not be run; only the last with `quiet`.
pub struct Notes {
    pub quiet: bool,
}

impl CompareProgress for Notes {
    fn model_started(&self, name: &str, fusion: Fusion, records: usize) -> ProgressBar {
        if !self.quiet {
            eprintln!("evaluating {name} ({fusion} fusion) on {records} record(s)");
        }
        progress_bar(records, self.quiet)
    }

    fn model_evaluated(&self, predictions: &[Prediction]) {
        if !self.quiet {
            warn_failures(predictions);
        }
    }
}
