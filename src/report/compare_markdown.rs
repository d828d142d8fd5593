//! A comparison as Markdown: the table, notes on its columns, the disagreements.
use std::fmt::Write as _;

use super::compare::{question_types, CompareReport};
use super::model_report::ModelReport;
use super::text::{quoted_list, thousands};

/// The comparison as Markdown: the table, notes on what its columns mean, and
/// the disagreements.
pub fn render_markdown(report: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Comparison on {} (split \"{}\"): {} record(s), {} question(s), {} caption(s)\n",
        report.manifest, report.split, report.records, report.questions, report.captions
    );
    render_table(&mut out, report);
    render_notes(&mut out, report);
    render_disagreements(&mut out, report);
    out
}

/// Which optional columns the table has.
struct Columns {
    /// Question types with their counts.
    types: Vec<(String, usize)>,
    vqa: bool,
    captions: bool,
    concat: bool,
    gates: bool,
}

impl Columns {
    fn of(models: &[ModelReport]) -> Self {
        Columns {
            types: question_types(models),
            vqa: models.iter().any(|m| m.metrics.vqa.is_some()),
            captions: models.iter().any(|m| m.metrics.caption.is_some()),
            concat: models.iter().any(|m| m.modality_share.is_some()),
            gates: models.iter().any(|m| m.gate_values.is_some()),
        }
    }

    fn header(&self, models: &[ModelReport]) -> Vec<String> {
        let mut header: Vec<String> = ["model", "fusion", "parameters", "cross-attn parameters"]
            .map(String::from)
            .to_vec();
        if self.vqa {
            let n = models
                .iter()
                .find_map(|m| m.metrics.vqa.as_ref())
                .map_or(0, |v| v.n);
            header.push(format!("VQA accuracy (n={n})"));
            header.extend(self.types.iter().map(|(k, n)| format!("{k} (n={n})")));
        }
        if self.captions {
            header
                .extend(["BLEU-4", "CIDEr-D", "ROUGE-L", "caption exact match"].map(String::from));
        }
        let batch = models.first().map_or(0, |m| m.batch_size);
        header.extend([
            "ms/image, batch 1".to_string(),
            format!("ms/image, batch {batch}"),
            "process peak memory".into(),
        ]);
        if self.concat {
            header.push("attention image / text / sink (concat)".into());
        }
        if self.gates {
            header.push("gates vision / text per layer".into());
        }
        header
    }

    fn row(&self, m: &ModelReport) -> Vec<String> {
        const NONE: &str = "–";
        let mut row = vec![
            m.name.clone(),
            m.fusion.to_string(),
            thousands(m.parameters),
            thousands(m.cross_attention_parameters),
        ];
        if self.vqa {
            row.push(
                m.metrics
                    .vqa
                    .as_ref()
                    .map_or(NONE.into(), |v| percent(v.accuracy)),
            );
            for (kind, _) in &self.types {
                let score = m.metrics.vqa_per_type.get(kind);
                row.push(score.map_or(NONE.into(), |s| percent(s.accuracy)));
            }
        }
        if self.captions {
            match &m.metrics.caption {
                Some(c) => row.extend([
                    format!("{:.3}", c.bleu[3]),
                    format!("{:.3}", c.cider_d),
                    format!("{:.3}", c.rouge_l),
                    percent(c.exact_match),
                ]),
                None => row.extend(vec![NONE.to_string(); 4]),
            }
        }
        row.push(format!("{:.2}", m.ms_per_image_batch1));
        row.push(format!("{:.2}", m.ms_per_image_batched));
        row.push(
            m.process_peak_memory_bytes
                .map_or("unknown".into(), mebibytes),
        );
        if self.concat {
            row.push(m.modality_share.as_ref().map_or(NONE.into(), |shares| {
                let parts: Vec<String> = shares
                    .iter()
                    .map(|(k, s)| {
                        format!(
                            "{k} {:.0}/{:.0}/{:.0}%",
                            100.0 * s.image,
                            100.0 * s.text,
                            100.0 * s.sink
                        )
                    })
                    .collect();
                parts.join("; ")
            }));
        }
        if self.gates {
            row.push(m.gate_values.as_ref().map_or(NONE.into(), |gates| {
                let parts: Vec<String> = gates
                    .iter()
                    .map(|g| format!("L{} {:.3} / {:.3}", g.layer, g.vision, g.text))
                    .collect();
                parts.join("; ")
            }));
        }
        row
    }
}

fn render_table(out: &mut String, report: &CompareReport) {
    let columns = Columns::of(&report.models);
    let header = columns.header(&report.models);
    write_row(out, &header);
    write_row(out, &vec!["---".to_string(); header.len()]);
    for m in &report.models {
        write_row(out, &columns.row(m));
    }
}

fn write_row(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| escape_cell(c)).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

/// Keeps a table cell on one line and its pipes literal.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render_notes(out: &mut String, report: &CompareReport) {
    let samples = report.models.first().map_or(0, |m| m.speed_samples);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- ms/image: greedy decoding with the encoders (image files already read), timed after the evaluation run on the same first {samples} record(s), one at a time and in batches."
    );
    let _ = writeln!(
        out,
        "- process peak memory: VmHWM of the whole fusecap process after that model ran; the models run one after another in one process, so it never decreases and is not a per-model figure."
    );
    if report.models.iter().any(|m| m.modality_share.is_some()) {
        let _ = writeln!(
            out,
            "- attention image / text / sink: mean share of the cross-attention mass on image keys, text keys and the attention sink (the learned key a query can fall back on when nothing matches), over heads, layers and decoding steps, per question type (\"caption\" = caption records)."
        );
    }
    if report.models.iter().any(|m| m.gate_values.is_some()) {
        let _ = writeln!(out, "- gates: tanh(alpha) of each decoder layer's vision and text cross-attention (0 = closed).");
    }
    if report.models.iter().any(|m| m.metrics.caption.is_some()) {
        let _ = writeln!(out, "- CIDEr-D is on pycocoevalcap's scale (×10).");
    }
    let failed: usize = report.models.iter().map(|m| m.failed).max().unwrap_or(0);
    if failed > 0 {
        let _ = writeln!(
            out,
            "- {failed} record(s) could not be read and count as empty outputs for every model."
        );
    }
}

fn render_disagreements(out: &mut String, report: &CompareReport) {
    if report.models.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Disagreements ({} of {} shown)\n",
        report.disagreements.len(),
        report.disagreement_count
    );
    if report.disagreement_count == 0 {
        let _ = writeln!(out, "The models' outputs agree on every record.");
    }
    for (i, d) in report.disagreements.iter().enumerate() {
        let question = d
            .question
            .as_deref()
            .map(|q| format!(" — {q}"))
            .unwrap_or_default();
        let show = if d.task == "vqa" { 3 } else { 1 };
        let _ = writeln!(
            out,
            "{}. `{}`{question} (expected {})",
            i + 1,
            d.image,
            quoted_list(&d.references, show)
        );
        for o in &d.outputs {
            let _ = writeln!(
                out,
                "   - {}: \"{}\" (score {:.2})",
                o.model, o.output, o.score
            );
        }
    }
}
