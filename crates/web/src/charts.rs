//! Charts of archiving traffic, drawn as SVG on the server: no chart library, no script. Each
//! series is a line over the time buckets; every bucket with a value gets a point (a circle with
//! a tooltip), so an empty period shows a flat line and no points.

use std::fmt::Write;

use crate::render::escape;

pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

const COLORS: &[&str] = &["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563"];
const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

pub fn line_chart(id: &str, labels: &[String], series: &[Series], unit: &str) -> String {
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0f64, f64::max).max(2.0);
    let n = labels.len().max(2);
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {W} {H}" role="img" aria-label="{id}" xmlns="http://www.w3.org/2000/svg">"#
    );
    for step in 0..=2 {
        let v = max * step as f64 / 2.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&format_value(v, unit)),
            y = y(v)
        );
    }
    let every = (labels.len() / 8).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            H - 8.0,
            escape(label)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> =
            s.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ =
            write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "));
        for (i, v) in s.values.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let _ = write!(
                svg,
                r#"<circle class="point" data-series="{name}" data-value="{v}" cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{name} · {label}: {value}</title></circle>"#,
                x(i),
                y(*v),
                name = escape(&s.name),
                label = escape(labels.get(i).map(String::as_str).unwrap_or("")),
                value = escape(&format_value(*v, unit)),
            );
        }
    }
    svg.push_str("</svg>");
    let mut legend = String::from(r#"<ul class="legend">"#);
    for (k, s) in series.iter().enumerate() {
        let _ = write!(
            legend,
            r#"<li><svg class="swatch" viewBox="0 0 10 10"><rect width="10" height="10" fill="{}"/></svg>{}</li>"#,
            COLORS[k % COLORS.len()],
            escape(&s.name)
        );
    }
    legend.push_str("</ul>");
    svg + &legend
}

fn format_value(v: f64, unit: &str) -> String {
    if unit == "bytes" { crate::render::human_bytes(v as i64) } else { format!("{}", v.round() as i64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_drawn_only_where_there_is_traffic_and_names_are_escaped() {
        let labels: Vec<String> = (0..4).map(|h| format!("{h:02}:00")).collect();
        let svg = line_chart(
            "messages",
            &labels,
            &[Series { name: "<smtp>".into(), values: vec![0.0, 3.0, 0.0, 5.0] }],
            "messages",
        );
        assert_eq!(svg.matches(r#"class="point""#).count(), 2);
        assert!(svg.contains("&lt;smtp&gt;") && !svg.contains("<smtp>"));
    }
}
