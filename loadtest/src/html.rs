//! The `--html` report: one self-contained page (inline CSS and SVG, no external assets)
//! with the summary, round-trip percentiles over time, connections over time and the
//! round-trip histogram.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::Report;
use crate::stats::Snapshot;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 260.0;
const MARGIN: f64 = 48.0;

/// One line of a chart: (x, y) points; a `None` y breaks the line.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, Option<f64>)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart with axes and a legend, as an inline `<svg>`.
fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1));
    let x_max = xs.fold(1.0_f64, f64::max);
    let y_max = ys.fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| MARGIN + x / x_max * (WIDTH - 2.0 * MARGIN);
    let sy = |y: f64| HEIGHT - MARGIN - y / y_max * (HEIGHT - 2.0 * MARGIN);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    axes(&mut svg, x_label, y_label, x_max, y_max);
    for (i, s) in series.iter().enumerate() {
        let mut path = String::new();
        let mut pen_down = false;
        for &(x, y) in &s.points {
            match y {
                Some(y) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        sx(x),
                        sy(y)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
            s.colour
        );
        let ly = MARGIN / 2.0 + 14.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            WIDTH - 150.0,
            ly - 9.0,
            s.colour,
            WIDTH - 135.0,
            ly,
            escape(s.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn axes(svg: &mut String, x_label: &str, y_label: &str, x_max: f64, y_max: f64) {
    let (left, right, top, bottom) = (MARGIN, WIDTH - MARGIN, MARGIN, HEIGHT - MARGIN);
    let _ = write!(
        svg,
        r##"<path d="M{left},{top} L{left},{bottom} L{right},{bottom}" stroke="#444" fill="none"/>"##
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = bottom - f * (bottom - top);
        let x = left + f * (right - left);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text><text x="{x:.1}" y="{:.0}" text-anchor="middle">{}</text>"##,
            left - 4.0,
            y + 4.0,
            short(f * y_max),
            bottom + 16.0,
            short(f * x_max)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">{}</text><text x="12" y="{:.0}" transform="rotate(-90 12 {:.0})" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        HEIGHT / 2.0,
        HEIGHT / 2.0,
        escape(y_label)
    );
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Bars of the share of round trips (or deliveries: `what`) per latency band (bands double
/// in width).
fn histogram_chart(h: &Histogram<u64>, what: &str) -> String {
    if h.is_empty() {
        return format!("<p>No {what} was measured.</p>");
    }
    let bands: Vec<(u64, u64)> = h
        .iter_log(100, 2.0)
        .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
        .collect();
    let total = h.len() as f64;
    let width = (WIDTH - 2.0 * MARGIN) / bands.len() as f64;
    let mut svg = format!(
        r#"<figure><figcaption>{what} histogram (share per latency band)</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{what} histogram">"#
    );
    let max_share = bands
        .iter()
        .map(|b| b.1 as f64 / total)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    for (i, &(upper, count)) in bands.iter().enumerate() {
        let share = count as f64 / total;
        let height = share / max_share * (HEIGHT - 2.0 * MARGIN);
        let x = MARGIN + i as f64 * width;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" fill="#3b6ea5"><title>up to {} ms: {:.2}%</title></rect><text x="{:.1}" y="{:.0}" text-anchor="middle" font-size="9">{}</text>"##,
            HEIGHT - MARGIN - height,
            (width - 2.0).max(1.0),
            upper as f64 / 1000.0,
            share * 100.0,
            x + width / 2.0,
            HEIGHT - MARGIN + 14.0,
            short(upper as f64 / 1000.0)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">{what}, ms (upper bound of band)</text></svg></figure>"#,
        WIDTH / 2.0,
        HEIGHT - 8.0
    );
    svg
}

/// The whole page: round trips, or for a channel run deliveries (`totals` holds the
/// histograms of the whole run).
pub fn render(report: &Report, totals: &Snapshot) -> String {
    let x = |second: u32| f64::from(second);
    let channel_run = report.channels.is_some();
    let latency = [
        ("p50", "#2a9d8f", 0usize),
        ("p95", "#e9c46a", 1),
        ("p99", "#e76f51", 2),
    ]
    .map(|(name, colour, which)| Series {
        name,
        colour,
        points: report
            .timeline
            .iter()
            .map(|p| {
                let values = if channel_run {
                    [p.delivery_p50_ms, None, p.delivery_p99_ms]
                } else {
                    [
                        p.round_trip_p50_ms,
                        p.round_trip_p95_ms,
                        p.round_trip_p99_ms,
                    ]
                };
                (x(p.second), values[which])
            })
            .collect(),
    });
    let (what, histogram) = if channel_run {
        ("delivery", &totals.delivery)
    } else {
        ("round trip", &totals.round_trip)
    };
    let deliveries = [Series {
        name: "deliveries per second",
        colour: "#8a5a9e",
        points: report
            .timeline
            .iter()
            .map(|p| (x(p.second), Some(p.deliveries as f64)))
            .collect(),
    }];
    let deliveries = if channel_run {
        line_chart(
            "Deliveries per second",
            "seconds",
            "deliveries/s",
            &deliveries,
        )
    } else {
        String::new()
    };
    let connections = [Series {
        name: "open connections",
        colour: "#264653",
        points: report
            .timeline
            .iter()
            .map(|p| (x(p.second), Some(p.active as f64)))
            .collect(),
    }];
    let json = serde_json::to_string_pretty(report).expect("reports serialize");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadtest {scenario}: {verdict}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}}
pre{{background:#f4f4f4;padding:1em;overflow:auto}}figure{{margin:1.5em 0}}figcaption{{font-weight:600}}
svg{{width:100%;height:auto;font-size:11px}}.pass{{color:#2a7d2a}}.fail{{color:#b00020}}
details pre{{max-height:30em}}</style></head><body>
<h1>loadtest {scenario} <span class="{class}">{verdict}</span></h1>
<pre>{table}</pre>
{latency}
{deliveries}
{connections}
{histogram}
<details><summary>Full JSON report</summary><pre>{json}</pre></details>
</body></html>
"#,
        scenario = escape(&report.settings.scenario),
        verdict = if report.passed { "PASSED" } else { "FAILED" },
        class = if report.passed { "pass" } else { "fail" },
        table = escape(&report.table()),
        latency = line_chart(
            &format!(
                "{} percentiles per second",
                if channel_run {
                    "Delivery"
                } else {
                    "Round-trip"
                }
            ),
            "seconds",
            "ms",
            &latency
        ),
        connections = line_chart("Open connections", "seconds", "connections", &connections),
        histogram = histogram_chart(histogram, what),
        json = escape(&json),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Point, Settings};
    use crate::stats::Snapshot;
    use crate::thresholds::Thresholds;

    #[test]
    fn page_is_self_contained_and_has_the_three_charts() {
        let mut totals = Snapshot::empty(0);
        for v in [150, 900, 2_500, 40_000] {
            totals.round_trip.record(v).unwrap();
        }
        let timeline = (1..=3u32)
            .map(|s| {
                Point::of(&Snapshot {
                    second: s,
                    active: u64::from(s) * 10,
                    ..totals.clone()
                })
            })
            .collect();
        let settings = Settings {
            scenario: "smoke<&>".into(),
            url: "ws://127.0.0.1:1".into(),
            publish_url: None,
            peak_users: 30,
            planned_seconds: 3.0,
            rate_per_user: 1.0,
            closed_loop_window: None,
            payload_bytes: 8,
            timeout_ms: 1000,
            churn: false,
            workers: 1,
            source_addresses: 0,
            channels: None,
        };
        let report = Report::build(settings, &Thresholds::default(), &totals, timeline, 30, 3.0);
        let page = render(&report, &totals);
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("smoke&lt;&amp;&gt;"));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external assets"
        );
        assert!(page.contains("<path d=\"M"));
    }
}
