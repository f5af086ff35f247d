//! The report's charts, drawn as inline SVG with plotters: lines over time, stacked
//! layers, latency distributions on a percentile axis, bars; every legend beside its
//! plot, in the room each chart keeps at its right.

use crate::report::{RunReport, Second};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(crate) const WIDTH: u32 = 900;
pub(crate) const HEIGHT: u32 = 300;
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One named line of a chart.
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

pub(crate) fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
    Line {
        name: name.into(),
        points,
    }
}

pub(crate) fn over_time(series: &[Second], f: impl Fn(&Second) -> f64) -> Vec<(f64, f64)> {
    series.iter().map(|s| (s.t_s, f(s))).collect()
}

pub(crate) fn x_range(lines: &[Line]) -> (f64, f64) {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi.max(lo + 1.0))
    }
}

pub(crate) fn y_max(lines: &[Line]) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1
}

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(crate) fn svg(draw: impl FnOnce(&Area) -> Result<(), String>) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()));
        if let Err(e) = drawn {
            return format!(
                "<p class=\"warn\">plot failed: {}</p>",
                html_escape::encode_text(&e)
            );
        }
    }
    out
}

/// Every chart's frame: its caption, margins and room for the axis labels.
pub(crate) fn frame<'a, 'b>(
    root: &'a Area<'b>,
    title: &'a str,
) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 16))
        .margin(10)
        .margin_right(LEGEND_WIDTH + 10)
        .x_label_area_size(36)
        .y_label_area_size(60);
    b
}

/// Room at each chart's right for its legend, beside the plot rather than on the data.
pub(crate) const LEGEND_WIDTH: u32 = 170;

/// Draws the legend in the room [`frame`] leaves at the right of the plot: one entry
/// per name, in palette order, a line (or, `filled`, a swatch) of its colour.
pub(crate) fn legend_beside(root: &Area, names: &[&str], filled: bool) -> Result<(), String> {
    let x = (WIDTH - LEGEND_WIDTH) as i32;
    for (i, name) in names.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = 44 + 18 * i as i32;
        if filled {
            root.draw(&Rectangle::new(
                [(x, y - 5), (x + 14, y + 5)],
                color.mix(0.6).filled(),
            ))
        } else {
            root.draw(&PathElement::new(
                vec![(x, y), (x + 16, y)],
                color.stroke_width(2),
            ))
        }
        .map_err(|e| e.to_string())?;
        root.draw(&Text::new(
            name.to_string(),
            (x + 22, y - 6),
            ("sans-serif", 12),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws `lines`, each in its palette colour, 2 px.
pub(crate) fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: &[Line],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, l) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Lines over a linear x axis (seconds) and a linear y axis.
pub(crate) fn line_chart(title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> String {
    let (x0, x1) = x_range(lines);
    let top = y_max(lines);
    svg(|root| {
        let mut chart = frame(root, title)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_label_formatter(&|v| tick(*v, top))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut chart, lines)?;
        let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        legend_beside(root, &names, false)
    })
}

/// Layers stacked on each other over time (e.g. clients per tier).
pub(crate) fn stacked_chart(title: &str, y_desc: &str, layers: &[Line]) -> String {
    let (x0, x1) = x_range(layers);
    // Cumulative tops, drawn from the highest down so each band shows.
    let mut tops: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let below = if i == 0 { None } else { tops.get(i - 1) };
        let pts = l
            .points
            .iter()
            .enumerate()
            .map(|(j, (x, y))| (*x, y + below.map_or(0.0, |b| b[j].1)))
            .collect();
        tops.push(pts);
    }
    let top = tops
        .last()
        .map(|t| t.iter().map(|p| p.1).fold(0.0f64, f64::max))
        .unwrap_or(0.0)
        .max(1.0)
        * 1.1;
    svg(|root| {
        let mut chart = frame(root, title)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc(y_desc)
            .y_label_formatter(&|v| tick(*v, top))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        for i in (0..layers.len()).rev() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(
                    AreaSeries::new(tops[i].iter().copied(), 0.0, color.mix(0.6))
                        .border_style(color),
                )
                .map_err(|e| e.to_string())?;
        }
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        legend_beside(root, &names, true)
    })
}

/// Where a percentile sits on the distribution's x axis: its number of nines, so
/// 90 % is 1, 99 % is 2, 99.9 % is 3; the maximum is drawn at 5.5.
pub(crate) fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        5.5
    } else {
        -(1.0 - percentile / 100.0).log10()
    }
}

pub(crate) fn nines_label(x: &f64) -> String {
    match (*x * 2.0).round() as i64 {
        0 => "0%".into(),
        2 => "90%".into(),
        4 => "99%".into(),
        6 => "99.9%".into(),
        8 => "99.99%".into(),
        10 => "99.999%".into(),
        11 => "max".into(),
        _ => String::new(),
    }
}

/// Latency by percentile for every operation, on log scales.
pub(crate) fn distribution_chart(report: &RunReport) -> String {
    let lines: Vec<Line> = report
        .latency_distribution
        .iter()
        .map(|(op, pts)| {
            line(
                *op,
                pts.iter()
                    .map(|(p, ms)| (nines(*p), ms.max(0.001)))
                    .collect(),
            )
        })
        .collect();
    let lo = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .min(1.0)
        / 2.0;
    let hi = y_max(&lines).max(lo * 10.0) * 2.0;
    svg(|root| {
        let mut chart = frame(root, "Latency distribution by operation")
            .build_cartesian_2d(0.0..5.6, (lo..hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency, ms (log)")
            .x_labels(12)
            .x_label_formatter(&nines_label)
            .y_label_formatter(&|v| format!("{v}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut chart, &lines)?;
        let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        legend_beside(root, &names, false)
    })
}

/// One bar per outcome.
pub(crate) fn bar_chart(title: &str, bars: &[(String, u64)]) -> String {
    let n = bars.len().max(1);
    let top = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64 * 1.15;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    svg(|root| {
        let mut chart = frame(root, title)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)
            .map_err(|e| e.to_string())?;
        let label = |x: &f64| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&label)
            .y_desc("replies")
            .y_label_formatter(&|v| tick(*v, top))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let color = PALETTE[i % PALETTE.len()];
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v as f64)],
                    color.mix(0.8).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    v.to_string(),
                    (i as f64 + 0.4, *v as f64 + top * 0.02),
                    ("sans-serif", 13),
                )
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// An axis tick without spurious decimals: whole numbers once the axis spans tens.
pub(crate) fn tick(v: f64, top: f64) -> String {
    // Enough decimals that ten ticks up to `top` read apart.
    if top >= 20.0 {
        format!("{v:.0}")
    } else if top >= 2.0 {
        format!("{v:.1}")
    } else if top >= 0.2 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_place_percentiles_on_the_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(&3.0), "99.9%");
        assert_eq!(nines(100.0), 5.5);
    }

    #[test]
    fn charts_are_svg_with_their_labels() {
        let out = line_chart(
            "Throughput",
            "seconds",
            "per second",
            &[line("shakes <decided>", vec![(0.0, 1.0), (1.0, 3.0)])],
        );
        assert!(
            out.starts_with("<svg") && out.contains("Throughput"),
            "{out}"
        );
        assert!(out.contains("shakes &lt;decided&gt;"), "labels are escaped");
        let bars = bar_chart(
            "Outcomes",
            &[("envelope".into(), 5), ("greeting".into(), 9)],
        );
        assert!(
            bars.contains("\nenvelope\n") && bars.contains("\n9\n"),
            "{bars}"
        );
    }
}
