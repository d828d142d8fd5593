//! Charts written with plotters: loss curves, learning curves, grouped bars.
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::train::LogRecord;

static FONT: Once = Once::new();

/// plotters draws text with a font we ship, so charts look the same everywhere.
fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: cannot draw the chart ({e})", path.display())
}

/// One named line of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of several series, as PNG (or SVG when `out` ends in .svg).
pub fn line_chart(out: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    register_font();
    let svg = out.extension().is_some_and(|e| e == "svg");
    if svg {
        draw_lines(SVGBackend::new(out, (800, 500)).into_drawing_area(), out, title, x_label, y_label, series)
    } else {
        draw_lines(BitMapBackend::new(out, (800, 500)).into_drawing_area(), out, title, x_label, y_label, series)
    }
}

fn draw_lines<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, out: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_err(out);
    root.fill(&WHITE).map_err(&err)?;
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
        .map_err(&err)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(&err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(&err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// Reads a training.jsonl log; lines that do not parse are skipped.
pub fn read_log(log: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(log).map_err(|e| anyhow!("{}: {e}", log.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The training loss (and validation loss where logged) against the step.
pub fn loss_curve(log: &Path, out: &Path) -> Result<()> {
    let records = read_log(log)?;
    let train = Series { name: "train loss".into(), points: records.iter().map(|r| (r.step as f64, r.loss)).collect() };
    let val = Series {
        name: "validation loss".into(),
        points: records.iter().filter_map(|r| r.val_loss.map(|v| (r.step as f64, v))).collect(),
    };
    line_chart(out, "training loss", "step", "loss", &[train, val])
}
