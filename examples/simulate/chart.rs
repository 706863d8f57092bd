//! The latency chart: every algorithm's latency distribution on one plot, as SVG and PNG.
//!
//! The y axis is the share of requests slower than x (1 − CDF), on a log scale, so the tail —
//! p99 at 10⁻², p99.9 at 10⁻³ — is as readable as the median. Text is drawn with `ab_glyph`
//! from a TrueType file (DejaVu Sans by default), so no system font library is involved.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::run::Outcome;

/// The font used when `--font` is not given (Debian's `fonts-dejavu-core`).
pub(crate) const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers `font` as plotters' `sans-serif`.
pub(crate) fn load_font(font: &Path) -> Result<(), String> {
    let bytes = std::fs::read(font).map_err(|e| {
        format!(
            "font {}: {e} (install Debian's fonts-dejavu-core, or give another .ttf with --font)",
            font.display()
        )
    })?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| format!("font {}: not a TrueType font", font.display()))
}

/// Draws `outcomes` to `{prefix}.svg` and `{prefix}.png`; returns the two paths.
pub(crate) fn draw(
    title: &str,
    outcomes: &[Outcome],
    prefix: &Path,
) -> Result<[PathBuf; 2], String> {
    let svg = prefix.with_extension("svg");
    let png = prefix.with_extension("png");
    let size = (960, 600);
    plot(
        title,
        outcomes,
        SVGBackend::new(&svg, size).into_drawing_area(),
    )
    .map_err(|e| format!("{}: {e}", svg.display()))?;
    plot(
        title,
        outcomes,
        BitMapBackend::new(&png, size).into_drawing_area(),
    )
    .map_err(|e| format!("{}: {e}", png.display()))?;
    Ok([svg, png])
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

fn plot<DB: DrawingBackend>(
    title: &str,
    outcomes: &[Outcome],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let fastest = outcomes
        .iter()
        .filter_map(|o| o.latencies_ms.first())
        .fold(f64::INFINITY, |a, &b| a.min(f64::from(b)));
    let slowest = outcomes
        .iter()
        .filter_map(|o| o.latencies_ms.last())
        .fold(0.0f64, |a, &b| a.max(f64::from(b)));
    // Times are whole milliseconds (see `run.rs`): 0 ms is drawn at the left edge.
    let (lo, hi) = ((fastest * 0.8).max(0.5), (slowest * 1.25).max(1.0));
    let n = outcomes
        .iter()
        .map(|o| o.latencies_ms.len())
        .max()
        .unwrap_or(1) as f64;
    let floor = (1.0 / n).max(1e-6);
    let mut chart: Chart<'_, DB> = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((lo..hi).log_scale(), (floor..1.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("share of requests slower (1 − CDF)")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, outcome) in outcomes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba().stroke_width(2);
        chart
            .draw_series(LineSeries::new(tail(outcome, floor, lo), color))?
            .label(format!(
                "{} (p99 {:.1} ms)",
                outcome.algo,
                outcome.quantile(0.99)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// About 400 points of the 1 − CDF curve, spaced evenly on the log scale.
fn tail(outcome: &Outcome, floor: f64, lo: f64) -> Vec<(f64, f64)> {
    let n = outcome.latencies_ms.len();
    let steps = 400;
    let mut points = Vec::with_capacity(steps + 1);
    for s in 0..=steps {
        // From 1 − CDF = 1 down to the floor.
        let slower = floor.powf(s as f64 / steps as f64);
        let q = (1.0 - slower).clamp(0.0, 1.0);
        let i = ((q * n as f64) as usize).min(n - 1);
        points.push((
            f64::from(outcome.latencies_ms[i]).max(lo),
            slower.max(floor),
        ));
    }
    points
}
