//! Charts written with plotters: line charts, grouped bars, attention pictures.
use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Result};
use image::RgbImage;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor;

static FONT: Once = Once::new();

/// plotters draws text with a font we ship, so charts look the same everywhere.
fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
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

/// Titles of a chart and its axes.
pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// A line chart of several series, as PNG (or SVG when `out` ends in .svg).
/// With `y_range` the axis is fixed (e.g. 0–1 for accuracies) and each point is marked;
/// without it the axis fits the data.
pub fn line_chart(
    out: &Path,
    labels: &Labels,
    series: &[Series],
    y_range: Option<Range<f64>>,
) -> Result<()> {
    register_font();
    if out.extension().is_some_and(|e| e == "svg") {
        draw_lines(
            SVGBackend::new(out, (800, 500)).into_drawing_area(),
            out,
            labels,
            series,
            y_range,
        )
    } else {
        draw_lines(
            BitMapBackend::new(out, (800, 500)).into_drawing_area(),
            out,
            labels,
            series,
            y_range,
        )
    }
}

fn fitted_range(series: &[Series]) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, y) in series.iter().flat_map(|s| s.points.iter()) {
        lo = lo.min(y);
        hi = hi.max(y);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad)..(hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    out: &Path,
    labels: &Labels,
    series: &[Series],
    y_range: Option<Range<f64>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_err(out);
    root.fill(&WHITE).map_err(&err)?;
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let marked = y_range.is_some();
    let y_range = y_range.unwrap_or_else(|| fitted_range(series));
    let mut chart = ChartBuilder::on(&root)
        .caption(labels.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, y_range)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(&err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(&err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if marked {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(&err)?;
        }
    }
    finish(chart, &root, out)
}

/// Draws the legend (upper right) and writes the chart to its file.
fn finish<'a, DB: DrawingBackend + 'a>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    out: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_err(out);
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

// ---------------------------------------------------------------- grouped bars, attention pictures

/// One named set of bars, one value per group (`None` draws no bar).
pub struct BarSeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A grouped bar chart: one group per label, one bar per series within it, y
/// from 0 to `y_max`. PNG, or SVG when `out` ends in .svg.
pub fn grouped_bars(
    out: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[BarSeries],
    y_max: f64,
) -> Result<()> {
    register_font();
    let width = (160 + 90 * groups.len() * series.len().max(1)).clamp(640, 1600) as u32;
    if out.extension().is_some_and(|e| e == "svg") {
        draw_grouped(
            SVGBackend::new(out, (width, 500)).into_drawing_area(),
            out,
            title,
            y_label,
            groups,
            series,
            y_max,
        )
    } else {
        draw_grouped(
            BitMapBackend::new(out, (width, 500)).into_drawing_area(),
            out,
            title,
            y_label,
            groups,
            series,
            y_max,
        )
    }
}

fn draw_grouped<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    out: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[BarSeries],
    y_max: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_err(out);
    root.fill(&WHITE).map_err(&err)?;
    let n = groups.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max.max(1e-9) * 1.05)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(2)
        .x_labels(0)
        .y_desc(y_label)
        .draw()
        .map_err(&err)?;
    // Group names under the axis, centred on their groups.
    let font = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ));
    for (g, name) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (x, y + 8), font.clone()))
            .map_err(&err)?;
    }
    let width = 0.8 / series.len().max(1) as f64;
    for (s, bars) in series.iter().enumerate() {
        let color = Palette99::pick(s).to_rgba();
        let rects = bars.values.iter().enumerate().filter_map(|(g, v)| {
            let x0 = g as f64 + 0.1 + s as f64 * width;
            v.map(|v| Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled()))
        });
        chart
            .draw_series(rects)
            .map_err(&err)?
            .label(bars.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        // The value above each bar, so that a bar of height 0 still shows.
        let value_font = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(text_anchor::Pos::new(
                text_anchor::HPos::Center,
                text_anchor::VPos::Bottom,
            ));
        let values = bars.values.iter().enumerate().filter_map(|(g, v)| {
            let x = g as f64 + 0.1 + (s as f64 + 0.46) * width;
            v.map(|v| Text::new(format!("{v:.2}"), (x, v), value_font.clone()))
        });
        chart.draw_series(values).map_err(&err)?;
    }
    finish(chart, &root, out)
}

/// A colour for `v` in [0, 1]: dark blue, cyan, yellow, red.
fn heat_color(v: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 4] = [
        [20.0, 30.0, 140.0],
        [0.0, 200.0, 220.0],
        [250.0, 230.0, 30.0],
        [220.0, 20.0, 20.0],
    ];
    let x = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [
        a[0] + (b[0] - a[0]) * f,
        a[1] + (b[1] - a[1]) * f,
        a[2] + (b[2] - a[2]) * f,
    ]
}

/// Bilinear sample of a row-major `grid × grid` map at patch-centre coordinates.
fn sample_grid(map: &[f32], grid: usize, gx: f32, gy: f32) -> f32 {
    let clampi = |v: f32| (v.max(0.0) as usize).min(grid - 1);
    let (x0, y0) = (clampi(gx.floor()), clampi(gy.floor()));
    let (x1, y1) = ((x0 + 1).min(grid - 1), (y0 + 1).min(grid - 1));
    let (fx, fy) = (
        (gx - x0 as f32).clamp(0.0, 1.0),
        (gy - y0 as f32).clamp(0.0, 1.0),
    );
    let at = |x: usize, y: usize| map[y * grid + x];
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Blends a heat map of `weights` (row-major over a `grid × grid` patch
/// grid) over `image`, upsampled bilinearly between patch centres. Colours are
/// scaled to the map's maximum, so the hottest patch is red.
pub fn attention_overlay(image: &RgbImage, weights: &[f32], grid: usize) -> Result<RgbImage> {
    if grid == 0 || weights.len() != grid * grid {
        bail!(
            "attention map has {} weights, expected {grid}×{grid}",
            weights.len()
        );
    }
    let max = weights.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    let (w, h) = image.dimensions();
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let gx = (x as f32 + 0.5) / w as f32 * grid as f32 - 0.5;
        let gy = (y as f32 + 0.5) / h as f32 * grid as f32 - 0.5;
        let heat = heat_color(sample_grid(weights, grid, gx, gy) * scale);
        let p = image.get_pixel(x, y);
        image::Rgb(std::array::from_fn(|c| {
            (0.45 * p[c] as f32 + 0.55 * heat[c])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    }))
}

/// Draws with plotters straight into an RGB image.
fn draw_on(
    image: &mut RgbImage,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let size = image.dimensions();
    let root = BitMapBackend::with_buffer(image, size).into_drawing_area();
    draw(&root)?;
    root.present()
        .map_err(|e| anyhow!("cannot draw into the image ({e})"))
}

/// Writes `text` on a white strip along the top edge of `image`.
pub fn label_image(image: &mut RgbImage, text: &str) -> Result<()> {
    let width = image.width() as i32;
    draw_on(image, |root| {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("cannot label the image ({e})");
        root.draw(&Rectangle::new(
            [(0, 0), (width, 22)],
            WHITE.mix(0.85).filled(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            text.to_string(),
            (5, 3),
            ("sans-serif", 16).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        Ok(())
    })
}

/// A bar chart of `values` over `labels`, drawn into a `width × height` image.
pub fn bar_image(
    width: u32,
    height: u32,
    title: &str,
    labels: &[String],
    values: &[f32],
) -> Result<RgbImage> {
    let mut image = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let n = values.len().max(1);
    let top = values.iter().copied().fold(0.0f32, f32::max).max(1e-3) * 1.1;
    draw_on(&mut image, |root| {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("cannot draw the bar chart ({e})");
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f32..top)
            .map_err(err)?;
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&name)
            .y_labels(5)
            .draw()
            .map_err(err)?;
        let bars = Histogram::vertical(&chart)
            .style(RGBColor(40, 90, 200).filled())
            .margin(3)
            .data(values.iter().enumerate().map(|(i, &v)| (i, v)));
        chart.draw_series(bars).map_err(err)?;
        Ok(())
    })?;
    Ok(image)
}

/// Height of the text line above the cells of [`image_grid`], in pixels.
pub const GRID_HEADER: u32 = 32;

/// Lays `cells` out in rows of `columns`, under a header line of text. Cells
/// may differ in size; each slot is as large as the largest cell.
pub fn image_grid(cells: &[RgbImage], columns: usize, header: &str) -> Result<RgbImage> {
    let columns = columns.clamp(1, cells.len().max(1));
    let rows = cells.len().div_ceil(columns).max(1);
    let cell_w = cells.iter().map(RgbImage::width).max().unwrap_or(1);
    let cell_h = cells.iter().map(RgbImage::height).max().unwrap_or(1);
    let mut grid = RgbImage::from_pixel(
        cell_w * columns as u32,
        GRID_HEADER + cell_h * rows as u32,
        image::Rgb([255, 255, 255]),
    );
    for (i, cell) in cells.iter().enumerate() {
        let (col, row) = ((i % columns) as u32, (i / columns) as u32);
        image::imageops::overlay(
            &mut grid,
            cell,
            (col * cell_w) as i64,
            (GRID_HEADER + row * cell_h) as i64,
        );
    }
    draw_on(&mut grid, |root| {
        root.draw(&Text::new(
            header.to_string(),
            (8, 7),
            ("sans-serif", 18).into_font().color(&BLACK),
        ))
        .map_err(|e| anyhow!("cannot write the grid's header ({e})"))
    })?;
    Ok(grid)
}

/// Saves an image as PNG, naming the file on failure.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| {
            anyhow!(
                "{}: cannot write the PNG ({e}); check that the folder exists and is writable",
                path.display()
            )
        })
}
