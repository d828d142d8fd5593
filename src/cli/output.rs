//! The records `caption` and `ask` print, as text, JSONL or CSV.
use std::io::Write;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::pipeline::ModelDir;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    Csv,
}

#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One output line: a result, or the error for one input.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutputRecord {
    pub image: String,
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    pub fusion: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OutputRecord {
    /// What every record of a `task` run with `md` shares.
    pub fn of_model(task: &'static str, md: &ModelDir) -> Self {
        OutputRecord {
            task,
            fusion: md.model.cfg.fusion.to_string(),
            model: md.name.clone(),
            ..Default::default()
        }
    }
}

/// Writes records to stdout in the chosen format, and errors to stderr.
pub struct Printer {
    format: Format,
    wrote_header: bool,
    pub failures: usize,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer {
            format,
            wrote_header: false,
            failures: 0,
        }
    }

    pub fn print(&mut self, record: &OutputRecord, progress: &ProgressBar) -> Result<()> {
        if let Some(error) = &record.error {
            self.failures += 1;
            progress.suspend(|| eprintln!("error: {error}"));
        }
        let line = match self.format {
            Format::Jsonl => Some(serde_json::to_string(record)?),
            Format::Csv => {
                let mut line = String::new();
                if !self.wrote_header {
                    line.push_str("image,task,question,output,logprob,fusion,model,ms,error\n");
                    self.wrote_header = true;
                }
                let fields = [
                    record.image.clone(),
                    record.task.to_string(),
                    record.question.clone().unwrap_or_default(),
                    record.output.clone().unwrap_or_default(),
                    record
                        .logprob
                        .map(|l| format!("{l:.4}"))
                        .unwrap_or_default(),
                    record.fusion.clone(),
                    record.model.clone(),
                    record.ms.map(|m| format!("{m:.2}")).unwrap_or_default(),
                    record.error.clone().unwrap_or_default(),
                ];
                line.push_str(
                    &fields
                        .iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                Some(line)
            }
            Format::Text => match (&record.output, &record.question) {
                (Some(out), Some(q)) => Some(format!("{}\t{q}\t{out}", record.image)),
                (Some(out), None) => Some(format!("{}\t{out}", record.image)),
                (None, _) => None,
            },
        };
        if let Some(line) = line {
            progress.suspend(|| -> Result<()> {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")?;
                Ok(stdout.flush()?)
            })?;
        }
        Ok(())
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}
