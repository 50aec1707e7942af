//! PNG plots of a run (plotters, bitmap backend, text drawn with ab_glyph from the DejaVu Sans
//! font of Debian's fonts-dejavu-core, so no fontconfig is needed): horizontal bars of bytes,
//! time and peak RSS per tool (the median, with a whisker from min to max), and the
//! distribution of edit-to-visible latencies.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{bytes, mib, secs, sum};
use super::results::{LatencyRow, RssRow, ToolRow};
use super::stats::summarize;

/// Where Debian and other distributions keep DejaVu Sans.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The font file the plots use, if present.
pub fn font_path() -> Option<&'static str> {
    FONTS.iter().copied().find(|p| Path::new(p).is_file())
}

/// Registers the font as "sans-serif" for plotters.
pub fn init_fonts() -> Result<(), String> {
    let path = font_path().ok_or(
        "no DejaVuSans.ttf found: install fonts-dejavu-core (apt-get install -y fonts-dejavu-core)",
    )?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
        .map_err(|_| format!("{path} is not a usable font"))
}

/// The colour of a tool, the same in every plot.
fn color(tool: &str) -> RGBColor {
    match tool {
        "chorus" => RGBColor(31, 119, 180),
        t if t.starts_with("rsync -z") => RGBColor(140, 86, 75),
        t if t.starts_with("rsync") => RGBColor(255, 127, 14),
        "Syncthing" => RGBColor(44, 160, 44),
        "Unison" => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

/// One bar: label, median, min, max.
pub struct Bar {
    pub label: String,
    pub tool: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn bar(label: &str, tool: &str, values: &[f64]) -> Option<Bar> {
    let s = summarize(values)?;
    Some(Bar {
        label: label.into(),
        tool: tool.into(),
        median: s.median,
        min: s.min,
        max: s.max,
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn e(err: impl std::fmt::Display) -> String {
    format!("plotting failed: {err}")
}

/// Horizontal bars on `area`; a log scale when `log` says so, or (None) when the values span
/// more than 20×.
fn draw_bars(
    area: &Area,
    title: &str,
    bars: &[Bar],
    fmt: fn(f64) -> String,
    log: Option<bool>,
) -> Result<(), String> {
    if bars.is_empty() {
        return Ok(());
    }
    let hi = bars.iter().map(|b| b.max).fold(0.0, f64::max).max(1e-9);
    let lo_pos = bars
        .iter()
        .map(|b| b.min)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let log = lo_pos.is_finite() && log.unwrap_or(hi / lo_pos > 20.0);
    let n = bars.len();
    // The first bar on top: segment n-1-i holds bar i (a range 0..k has k+1 segments).
    let labels: Vec<String> = bars.iter().rev().map(|b| b.label.clone()).collect();
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(title, ("sans-serif", 26))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(250);
    let ylab = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    macro_rules! body {
        ($chart:expr, $base:expr) => {{
            let mut c = $chart;
            c.configure_mesh()
                .disable_y_mesh()
                .y_label_formatter(&ylab)
                .x_label_formatter(&|v| fmt(*v))
                .y_labels(n)
                .x_labels(5)
                .label_style(("sans-serif", 17))
                .draw()
                .map_err(e)?;
            for (k, b) in bars.iter().enumerate() {
                let i = n - 1 - k;
                let mut r = Rectangle::new(
                    [
                        ($base, SegmentValue::Exact(i)),
                        (b.median.max($base), SegmentValue::Exact(i + 1)),
                    ],
                    color(&b.tool).filled(),
                );
                r.set_margin(8, 8, 0, 0);
                c.draw_series(std::iter::once(r)).map_err(e)?;
                if b.max > b.min {
                    c.draw_series(std::iter::once(PathElement::new(
                        vec![
                            (b.min.max($base), SegmentValue::CenterOf(i)),
                            (b.max.max($base), SegmentValue::CenterOf(i)),
                        ],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(e)?;
                }
                c.draw_series(std::iter::once(Text::new(
                    format!(" {}", fmt(b.median)),
                    (b.max.max(b.median).max($base), SegmentValue::CenterOf(i)),
                    ("sans-serif", 17).into_font(),
                )))
                .map_err(e)?;
            }
        }};
    }
    if log {
        let base = lo_pos / 2.0;
        let c = chart
            .build_cartesian_2d((base..hi * 8.0).log_scale(), (0..n - 1).into_segmented())
            .map_err(e)?;
        body!(c, base);
    } else {
        let c = chart
            .build_cartesian_2d(0.0..hi * 1.3, (0..n - 1).into_segmented())
            .map_err(e)?;
        body!(c, 0.0);
    }
    Ok(())
}

/// A phase: bytes on the left, time on the right. Returns the file name written.
pub fn phase(dir: &Path, key: &str, title: &str, rows: &[ToolRow]) -> Result<String, String> {
    let byte_bars: Vec<Bar> = rows
        .iter()
        .filter_map(|r| bar(&r.tool, &r.tool, &sum(r)))
        .collect();
    let time_bars: Vec<Bar> = rows
        .iter()
        .filter_map(|r| bar(&r.tool, &r.tool, &r.secs))
        .collect();
    let file = format!("{key}.png");
    let h = 110 + 52 * byte_bars.len().max(time_bars.len()).max(1) as u32;
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (1600, h + 50)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (top, rest) = root.split_vertically(50);
    top.draw(&Text::new(
        title.to_owned(),
        (12, 12),
        ("sans-serif", 28).into_font(),
    ))
    .map_err(e)?;
    let panels = rest.split_evenly((1, 2));
    draw_bars(
        &panels[0],
        "bytes on the wire, both ways (log scale)",
        &byte_bars,
        bytes,
        Some(true),
    )?;
    draw_bars(
        &panels[1],
        "time until the other side holds it",
        &time_bars,
        secs,
        Some(false),
    )?;
    root.present().map_err(e)?;
    Ok(file)
}

/// Peak RSS of every tool in every scenario.
pub fn rss(dir: &Path, rows: &[RssRow]) -> Result<String, String> {
    let bars: Vec<Bar> = rows
        .iter()
        .filter_map(|r| bar(&format!("{}: {}", r.scenario, r.tool), &r.tool, &r.values))
        .collect();
    let file = "rss.png".to_owned();
    let path = dir.join(&file);
    let root =
        BitMapBackend::new(&path, (1400, 110 + 40 * bars.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    draw_bars(
        &root,
        "peak RSS, largest process of each tool (median; whisker min–max)",
        &bars,
        mib,
        Some(false),
    )?;
    root.present().map_err(e)?;
    Ok(file)
}

/// The cumulative distribution of edit-to-visible latency per daemon, log time axis.
pub fn latency(dir: &Path, rows: &[LatencyRow]) -> Result<String, String> {
    let file = "latency.png".to_owned();
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (1400, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.samples_ms.iter().copied())
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 1.5;
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "edit-to-visible latency, 3 nodes: share of edits seen within a time",
            ("sans-serif", 26),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds (log scale)")
        .y_desc("share of edits")
        .label_style(("sans-serif", 17))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .draw()
        .map_err(e)?;
    for r in rows.iter().filter(|r| !r.samples_ms.is_empty()) {
        let mut v = r.samples_ms.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(i, x)| (*x, (i + 1) as f64 / n))
            .collect();
        let c = color(&r.tool);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(3)))
            .map_err(e)?
            .label(r.tool.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    for (ms, label) in [(150.0, "150 ms goal (p50)"), (500.0, "500 ms goal (p99)")] {
        if ms > lo && ms < hi {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(ms, 0.0), (ms, 1.0)],
                    BLACK.mix(0.4).stroke_width(1),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (ms, 0.04),
                    ("sans-serif", 15).into_font(),
                )))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(file)
}
