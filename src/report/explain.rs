//! Where the decoder's cross-attention looked for each generated token, over
//! the image patches and over the question's tokens: pictures, attention.json
//! and a summary.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use image::RgbImage;
use serde::Serialize;

use super::attention::{decoding_steps, step_attention, Layers, StepAttention};
use super::facts::{gates, Gate};
use super::write::write_json;
use crate::generate::{greedy, GenerateOptions};
use crate::model::Fusion;
use crate::pipeline::{
    decode_text, encode_queries, preprocess, text_ids, token_label, ModelDir, Preprocess, Query,
};
use crate::plot::{attention_overlay, bar_image, image_grid, label_image, save_png};

/// Side of each heat-map picture, in pixels.
pub const OVERLAY_SIZE: u32 = 256;
/// Width and height of each question-attention bar chart, in pixels.
pub const BARS_SIZE: (u32, u32) = (480, 280);
/// Height of the bar chart under each heat map in the grid.
pub const GRID_BARS_HEIGHT: u32 = 160;
/// Cells per row of the grid.
pub const GRID_COLUMNS: usize = 6;
pub const GRID_FILE: &str = "grid.png";
pub const JSON_FILE: &str = "attention.json";

/// One decoding step in attention.json.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based.
    pub step: usize,
    /// The generated token, or "[EOS]" for the step that ended the output.
    pub token: String,
    pub image_file: String,
    pub text_file: String,
    /// concat only: the attention mass on image and on text tokens (with
    /// `sink`, they sum to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_share: Option<f64>,
    /// Over the image patches, row-major `grid × grid`.
    pub vision: Vec<f32>,
    /// Over `text_tokens` (a padded key has weight 0).
    pub text: Vec<f32>,
    /// The weight on the attention sinks: one under concat, vision's then
    /// text's under separate/gated, none for a model without sinks.
    pub sink: Vec<f32>,
}

/// What attention.json holds.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    pub model: String,
    pub fusion: Fusion,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    pub output: String,
    /// The layer drawn, or null for the mean over all layers.
    pub layer: Option<usize>,
    pub decoder_layers: usize,
    /// Patches per side: the maps are `grid × grid`.
    pub grid: usize,
    /// The text-encoder keys: the question's tokens (or the caption prompt's).
    pub text_tokens: Vec<String>,
    pub steps: Vec<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_values: Option<Vec<Gate>>,
}

impl ExplainReport {
    /// What stdout shows: the output, then one line per step.
    pub fn render(&self) -> String {
        render(self)
    }
}

/// What to explain: an image, already decoded, and a question (or none, to caption it).
pub struct ExplainInput<'a> {
    pub path: &'a Path,
    pub image: &'a RgbImage,
    pub question: Option<&'a str>,
}

/// Decodes `input` greedily and writes into `out` (created if missing) each
/// step's heat map and bar chart, the grid of them, and attention.json.
pub fn explain(
    md: &ModelDir,
    input: &ExplainInput,
    layers: Layers,
    max_new_tokens: usize,
    out: &Path,
    device: &Device,
) -> Result<ExplainReport> {
    let cfg = &md.model.cfg;
    let preprocess = preprocess(md);
    let text = input
        .question
        .map_or_else(|| cfg.caption_prompt.clone(), str::to_string);
    let query = Query {
        pixels: preprocess.pixels(input.image),
        text: text.clone(),
    };
    let opts = GenerateOptions {
        max_new_tokens,
        ..GenerateOptions::default()
    };
    let (tokens, attention) = decode_with_attention(md, query, &opts, layers, device)?;

    let mut report = ExplainReport {
        model: md.name.clone(),
        fusion: cfg.fusion,
        image: input.path.display().to_string(),
        question: input.question.map(str::to_string),
        output: decode_text(md, &tokens)?,
        layer: layers.layer(),
        decoder_layers: cfg.decoder_layers,
        grid: cfg.image_size / cfg.patch_size,
        text_tokens: text_labels(md, &text, attention.first().map_or(0, |s| s.text.len()))?,
        steps: Vec::new(),
        gate_values: gates(&md.model)?,
    };
    std::fs::create_dir_all(out).with_context(|| {
        format!(
            "cannot create {}: check the path and permissions",
            out.display()
        )
    })?;
    let display = Preprocess {
        size: OVERLAY_SIZE as usize,
        ..preprocess
    }
    .resized(input.image);
    let labels = step_labels(md, &tokens, attention.len());
    let mut cells = Vec::with_capacity(attention.len());
    for (i, (step, label)) in attention.iter().zip(&labels).enumerate() {
        let (step_report, cell) = draw_step(out, &report, &display, i, label, step)?;
        report.steps.push(step_report);
        cells.push(cell);
    }
    let header = format!(
        "{text} → \"{}\"  ({}, {})",
        report.output,
        cfg.fusion,
        layer_name(layers.layer())
    );
    save_png(
        &image_grid(&cells, GRID_COLUMNS, &header)?,
        &out.join(GRID_FILE),
    )?;
    write_json(&out.join(JSON_FILE), &report)?;
    Ok(report)
}

/// Decodes one query greedily and returns its tokens and the cross-attention of each step.
fn decode_with_attention(
    md: &ModelDir,
    query: Query,
    opts: &GenerateOptions,
    layers: Layers,
    device: &Device,
) -> Result<(Vec<u32>, Vec<StepAttention>)> {
    let memory = encode_queries(md, &[query], device)?;
    let generated = greedy(&md.model, &memory, opts)?;
    let tokens = generated
        .into_iter()
        .next()
        .context("greedy decoding returned no output")?
        .tokens;
    let steps = decoding_steps(tokens.len(), &md.model.cfg, opts);
    let attention = step_attention(
        &md.model,
        &memory,
        std::slice::from_ref(&tokens),
        &[steps],
        layers,
    )?;
    Ok((tokens, attention.into_iter().next().unwrap_or_default()))
}

fn layer_name(layer: Option<usize>) -> String {
    layer.map_or("mean of the layers".to_string(), |l| format!("layer {l}"))
}

/// The text-encoder keys' labels: the input's tokens, then "[PAD]" for padding.
fn text_labels(md: &ModelDir, text: &str, keys: usize) -> Result<Vec<String>> {
    let ids = text_ids(md, text)?;
    Ok((0..keys)
        .map(|k| match ids.get(k) {
            Some(&id) => token_label(md, id),
            None => "[PAD]".to_string(),
        })
        .collect())
}

/// One label per decoding step: the generated words, then "[EOS]" for the step that ended.
fn step_labels(md: &ModelDir, tokens: &[u32], steps: usize) -> Vec<String> {
    (0..steps)
        .map(|i| match tokens.get(i) {
            Some(&id) => token_label(md, id),
            None => "[EOS]".to_string(),
        })
        .collect()
}

/// "01-red", safe as a file name.
fn file_stem(index: usize, label: &str) -> String {
    let word: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect::<String>()
        .to_lowercase();
    if word.is_empty() {
        format!("{:02}", index + 1)
    } else {
        format!("{:02}-{word}", index + 1)
    }
}

/// Writes one step's heat map and bar chart, and returns its JSON entry and grid cell.
fn draw_step(
    out: &Path,
    report: &ExplainReport,
    display: &RgbImage,
    index: usize,
    label: &str,
    step: &StepAttention,
) -> Result<(StepReport, RgbImage)> {
    let concat = report.fusion.joint_memory();
    let (image_share, text_share) = (step.vision_mass(), step.text_mass());
    let share = if concat {
        format!(" · image {:.0}%", 100.0 * image_share)
    } else {
        String::new()
    };
    let mut overlay = attention_overlay(display, &step.vision, report.grid)?;
    label_image(&mut overlay, &format!("{} \"{label}\"{share}", index + 1))?;
    let stem = file_stem(index, label);
    let image_file = format!("{stem}.png");
    save_png(&overlay, &out.join(&image_file))?;

    let title = if concat {
        format!(
            "\"{label}\": attention on the text ({:.0}% of it)",
            100.0 * text_share
        )
    } else {
        format!("\"{label}\": attention over the text tokens")
    };
    let bars = bar_image(
        BARS_SIZE.0,
        BARS_SIZE.1,
        &title,
        &report.text_tokens,
        &step.text,
    )?;
    let text_file = format!("{stem}-text.png");
    save_png(&bars, &out.join(&text_file))?;

    let small_bars = bar_image(
        OVERLAY_SIZE,
        GRID_BARS_HEIGHT,
        "text",
        &report.text_tokens,
        &step.text,
    )?;
    let mut cell = RgbImage::from_pixel(
        OVERLAY_SIZE,
        OVERLAY_SIZE + GRID_BARS_HEIGHT,
        image::Rgb([255, 255, 255]),
    );
    image::imageops::overlay(&mut cell, &overlay, 0, 0);
    image::imageops::overlay(&mut cell, &small_bars, 0, OVERLAY_SIZE as i64);
    let step_report = StepReport {
        step: index + 1,
        token: label.to_string(),
        image_file,
        text_file,
        image_share: concat.then_some(image_share),
        text_share: concat.then_some(text_share),
        vision: step.vision.clone(),
        text: step.text.clone(),
        sink: step.sink.clone(),
    };
    Ok((step_report, cell))
}

fn render(report: &ExplainReport) -> String {
    let mut out = String::new();
    let input = report
        .question
        .as_deref()
        .map_or("(caption)".to_string(), |q| format!("\"{q}\""));
    let _ = writeln!(out, "{} {input} -> \"{}\"", report.image, report.output);
    let _ = writeln!(
        out,
        "{} fusion, {}",
        report.fusion,
        layer_name(report.layer)
    );
    let width = report
        .steps
        .iter()
        .map(|s| s.token.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    if report.fusion.joint_memory() {
        let _ = writeln!(out, "step  {:<width$}  image   text", "token");
    } else {
        let _ = writeln!(
            out,
            "step  {:<width$}  peak patch (row, col)  top text token",
            "token"
        );
    }
    for s in &report.steps {
        let _ = writeln!(
            out,
            "{:>4}  {:<width$}  {}",
            s.step,
            s.token,
            step_detail(report, s)
        );
    }
    if let Some(gates) = &report.gate_values {
        let _ = writeln!(out, "gates tanh(alpha):");
        for g in gates {
            let _ = writeln!(
                out,
                "  layer {}: vision {:.4}, text {:.4}",
                g.layer, g.vision, g.text
            );
        }
    }
    out
}

fn step_detail(report: &ExplainReport, s: &StepReport) -> String {
    if let (Some(image), Some(text)) = (s.image_share, s.text_share) {
        return format!("{:>4.0}%  {:>4.0}%", 100.0 * image, 100.0 * text);
    }
    let peak = argmax(&s.vision).map_or("-".to_string(), |(i, w)| {
        format!(
            "({}, {}) {:.3}",
            i / report.grid.max(1),
            i % report.grid.max(1),
            w
        )
    });
    let top = argmax(&s.text).filter(|(_, w)| *w > 0.0).map_or(
        "- (no text keys)".to_string(),
        |(i, w)| {
            format!(
                "{} {w:.3}",
                report.text_tokens.get(i).map_or("?", String::as_str)
            )
        },
    );
    format!("{peak:<21}  {top}")
}

fn argmax(values: &[f32]) -> Option<(usize, f32)> {
    values
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn file_stems_are_safe_names() {
        assert_eq!(file_stem(0, "red"), "01-red");
        assert_eq!(file_stem(9, "[EOS]"), "10-eos");
        assert_eq!(file_stem(2, "?"), "03");
        assert_eq!(file_stem(3, "../x"), "04-x");
    }
}
