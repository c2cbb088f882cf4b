//! Rendering of `levee top`: a pure function of the model and the UI state ([`draw`]), so a
//! test can render it into ratatui's `TestBackend` and read the buffer.
//!
//! Layout, top to bottom: three header lines (source and config, totals, spikes), the table
//! (countries or ASNs), and a footer with the keys. Everything fits 80x24; wider terminals
//! get more columns and longer sparklines. The country table's `shed/s` is what admission
//! control refused per second over 10 s (`-` from a levee that does not report it).

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::format;
use super::model::{AsnStats, CountryStats, Model, SortKey, Stats, sorted_asns, sorted_countries};

/// Which table is shown; `a` toggles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// One row per country.
    #[default]
    Countries,
    /// One row per autonomous system (top ASNs, then "other").
    Asns,
}

/// What the keys change: sort order, table, scroll position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UiState {
    /// Row order.
    pub sort: SortKey,
    /// Countries or ASNs.
    pub view: View,
    /// Rows scrolled past at the top (clamped when drawn).
    pub scroll: usize,
}

/// Terminals at least this wide get the extra columns.
const WIDE: u16 = 110;
/// Style of a spiking row: visible in colour and, through bold and the `!` marker, without.
const SPIKING: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Red)
    .add_modifier(Modifier::BOLD);
const HEADER: Style = Style::new().add_modifier(Modifier::REVERSED);
const DIM: Style = Style::new().fg(Color::DarkGray);
const ALERT: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);

/// Draws the whole screen for `model` as `ui` says.
pub fn draw(frame: &mut Frame, model: &Model, ui: &UiState) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(model)), header);
    let shown = match &model.stats {
        None => {
            let text = match &model.error {
                Some(e) => format!("{e}\nretrying every second"),
                None => format!("connecting to {} ...", model.source),
            };
            frame.render_widget(Paragraph::new(text).alignment(Alignment::Center), table);
            None
        }
        Some(stats) => match ui.view {
            View::Countries => countries_table(frame, table, stats, ui),
            View::Asns => asns_table(frame, table, stats, ui),
        },
    };
    frame.render_widget(Paragraph::new(footer_line(model, ui, shown)), footer);
}

/// Source, generation and uptime; totals; spikes.
fn header_lines(model: &Model) -> Vec<Line<'static>> {
    let mut first = vec![Span::styled(
        "levee top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    first.push(Span::raw(format!("  {}", model.source)));
    let Some(s) = &model.stats else {
        return vec![Line::from(first)];
    };
    first.push(Span::raw(format!(
        "  gen {}  up {}  workers {}",
        s.config.generation,
        format::uptime(s.uptime_seconds),
        s.workers.len()
    )));
    let spiking = s.countries.iter().filter(|c| s.is_spiking(c)).count();
    let spiking = spiking.max(s.spikes.len());
    if spiking > 0 {
        first.push(Span::styled(format!("  {spiking} SPIKING"), ALERT));
    }
    for cap in &s.admission.auto.caps {
        let verb = if cap.dry_run { "WOULD CAP" } else { "CAPPED" };
        let text = format!(
            "  {verb} {} {}/s",
            cap.country,
            format::rate(cap.cap_per_sec)
        );
        first.push(Span::styled(text, ALERT));
    }
    if model.error.is_some() {
        first.push(Span::styled("  STALE", ALERT));
    }
    let t = &s.totals;
    let hs = t.tls_handshakes;
    let resumed = share(hs.resumed, hs.full + hs.resumed);
    // Most telling first: a narrow terminal cuts the end of the line. Shed only when the
    // levee reports it.
    let shed = t
        .shed_rate
        .map_or_else(String::new, |r| format!("  shed/s {}", format::rate(r)));
    let second = Line::from(format!(
        "conn/s {} (1s {}, 60s {}){shed}  req/s {}  active {}  5xx {}  resumed {}  conns {}",
        format::rate(t.conn_rate_10s),
        format::rate(t.conn_rate_1s),
        format::rate(t.conn_rate_60s),
        format::rate(t.req_rate_10s),
        format::count(t.connections_active),
        format::fine_percent(share(t.requests.c5xx, t.requests.total()).unwrap_or(0.0)),
        format::percent(resumed),
        format::count(t.connections),
    ));
    vec![Line::from(first), second, spikes_line(s)]
}

/// `part / whole`, `None` when `whole` is 0.
fn share(part: u64, whole: u64) -> Option<f64> {
    // Display precision only.
    #[allow(clippy::cast_precision_loss)]
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// One summary per spiking country, most intense first.
fn spikes_line(s: &Stats) -> Line<'static> {
    if s.spikes.is_empty() {
        return Line::styled("no spikes", DIM);
    }
    let mut spikes: Vec<_> = s.spikes.iter().collect();
    spikes.sort_by(|a, b| b.ratio.total_cmp(&a.ratio));
    let mut spans = Vec::new();
    for (i, sp) in spikes.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" | "));
        }
        spans.push(Span::styled(format!("SPIKE {}", sp.country), ALERT));
        let mut text = format!(
            " {}/s {} (base {}) res {} p99 {}ms",
            format::rate(sp.rate),
            format::ratio(sp.ratio),
            format::rate(sp.baseline),
            format::percent(sp.resumed_share),
            format::millis(sp.handshake_p99_ms),
        );
        if let Some(a) = sp.top_asns.first() {
            text.push_str(&format!(" AS{} {}", a.asn, a.org));
        }
        spans.push(Span::raw(text));
    }
    Line::from(spans)
}

/// Keys, sort order, and either the poll error or the rows shown.
fn footer_line(model: &Model, ui: &UiState, shown: Option<(usize, usize, usize)>) -> Line<'static> {
    let other = match ui.view {
        View::Countries => "ASNs",
        View::Asns => "countries",
    };
    let mut spans = vec![Span::raw(format!(
        " s sort:{}  a {other}  ↑↓ scroll  q quit ",
        ui.sort.label()
    ))];
    if let Some(e) = &model.error {
        spans.push(Span::styled(format!(" {e}"), ALERT));
    } else if let Some((first, last, total)) = shown
        && (last < total || first > 1)
    {
        spans.push(Span::styled(
            format!(" rows {first}-{last} of {total}"),
            DIM,
        ));
    }
    Line::from(spans)
}

/// A column: title, width (0 = takes what is left), right-aligned or not.
type Column = (&'static str, u16, bool);

/// Widths for `columns` in `width` cells with one space between columns; the flexible
/// columns (width 0) share what is left, at least 4 cells each.
fn widths(columns: &[Column], width: u16) -> Vec<u16> {
    let gaps = u16::try_from(columns.len().saturating_sub(1)).unwrap_or(u16::MAX);
    let fixed: u16 = columns.iter().map(|c| c.1).sum();
    let flexible = u16::try_from(columns.iter().filter(|c| c.1 == 0).count()).unwrap_or(1);
    let left = width.saturating_sub(fixed.saturating_add(gaps));
    let each = (left / flexible.max(1)).max(4);
    columns
        .iter()
        .map(|c| if c.1 == 0 { each } else { c.1 })
        .collect()
}

/// A row's cells, aligned as their columns say.
fn cells(values: Vec<String>, columns: &[Column]) -> Vec<Cell<'static>> {
    values
        .into_iter()
        .zip(columns)
        .map(|(v, c)| {
            let line = Line::from(v);
            Cell::from(if c.2 { line.right_aligned() } else { line })
        })
        .collect()
}

/// Renders the header row and the visible rows; returns (first, last, total) rows shown.
fn render_table(
    frame: &mut Frame,
    area: Rect,
    columns: &[Column],
    rows: Vec<Row<'static>>,
    scroll: usize,
) -> (usize, usize, usize) {
    let total = rows.len();
    let visible = usize::from(area.height.saturating_sub(1));
    let start = scroll.min(total.saturating_sub(visible));
    let end = (start + visible).min(total);
    let header = Row::new(
        columns
            .iter()
            .map(|c| {
                let line = Line::from(c.0);
                Cell::from(if c.2 { line.right_aligned() } else { line })
            })
            .collect::<Vec<_>>(),
    )
    .style(HEADER);
    let widths = widths(columns, area.width);
    let shown: Vec<Row<'static>> = rows.into_iter().skip(start).take(visible).collect();
    let table = Table::new(shown, widths.iter().map(|w| Constraint::Length(*w)))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
    (start + 1, end, total)
}

/// The cells of the sparkline column, given the column widths.
fn spark_width(columns: &[Column], area: Rect) -> usize {
    let w = widths(columns, area.width);
    columns
        .iter()
        .zip(w)
        .find(|(c, _)| c.1 == 0 && c.0.starts_with("last"))
        .map_or(0, |(_, w)| usize::from(w))
}

const COUNTRY_COLUMNS: [Column; 11] = [
    ("CC", 3, false),
    ("conn/s", 6, true),
    ("shed/s", 6, true),
    ("last 60s", 0, false),
    ("base", 5, true),
    ("ratio", 5, true),
    ("res", 4, true),
    ("p50ms", 5, true),
    ("p99ms", 5, true),
    ("5xx", 5, true),
    ("act", 5, true),
];

const COUNTRY_COLUMNS_WIDE: [Column; 15] = [
    ("CC", 3, false),
    ("conn/s", 6, true),
    ("1s", 6, true),
    ("60s", 6, true),
    ("shed/s", 6, true),
    ("last 60s", 0, false),
    ("base", 6, true),
    ("ratio", 5, true),
    ("req/s", 6, true),
    ("res", 4, true),
    ("res.b", 5, true),
    ("p50ms", 5, true),
    ("p99ms", 5, true),
    ("5xx", 5, true),
    ("active", 6, true),
];

fn countries_table(
    frame: &mut Frame,
    area: Rect,
    s: &Stats,
    ui: &UiState,
) -> Option<(usize, usize, usize)> {
    let sorted = sorted_countries(s, ui.sort);
    if sorted.is_empty() {
        let text = "no per-country traffic yet";
        frame.render_widget(Paragraph::new(text).alignment(Alignment::Center), area);
        return None;
    }
    let wide = area.width >= WIDE;
    let columns: &[Column] = if wide {
        &COUNTRY_COLUMNS_WIDE
    } else {
        &COUNTRY_COLUMNS
    };
    let spark = spark_width(columns, area);
    let rows = sorted
        .into_iter()
        .map(|c| {
            let spiking = s.is_spiking(c);
            let row = Row::new(cells(country_values(c, spiking, spark, wide), columns));
            if spiking { row.style(SPIKING) } else { row }
        })
        .collect();
    Some(render_table(frame, area, columns, rows, ui.scroll))
}

/// The cells of one country row, in the order of the column list in use.
fn country_values(c: &CountryStats, spiking: bool, spark: usize, wide: bool) -> Vec<String> {
    let code = if spiking {
        format!("{}!", c.country)
    } else {
        c.country.clone()
    };
    // Scaled to twice the baseline: a steady country fills half the height, a surge the top.
    let line = format::sparkline(&c.history, spark, 2.0 * c.baseline);
    let mut v = vec![code, format::rate(c.conn_rate_10s)];
    if wide {
        v.push(format::rate(c.conn_rate_1s));
        v.push(format::rate(c.conn_rate_60s));
    }
    v.push(format::rate_or_dash(c.shed_rate));
    v.extend([line, format::rate(c.baseline), format::ratio(c.spike_ratio)]);
    if wide {
        v.push(format::rate(c.req_rate_10s));
    }
    v.push(format::percent(c.resumed_share));
    if wide {
        v.push(format::percent(c.resumed_share_baseline));
    }
    v.extend([
        format::millis(c.handshake_p50_ms),
        format::millis(c.handshake_p99_ms),
        format::fine_percent(c.share_5xx),
        format::count(c.connections_active),
    ]);
    v
}

const ASN_COLUMNS: [Column; 8] = [
    ("ASN", 8, false),
    ("org", 16, false),
    ("CC", 2, false),
    ("conn/s", 6, true),
    ("last 60s", 0, false),
    ("share", 5, true),
    ("conns", 6, true),
    ("reqs", 6, true),
];

const ASN_COLUMNS_WIDE: [Column; 8] = [
    ("ASN", 11, false),
    ("org", 30, false),
    ("CC", 2, false),
    ("conn/s", 6, true),
    ("last 60s", 0, false),
    ("share", 5, true),
    ("conns", 7, true),
    ("reqs", 7, true),
];

fn asns_table(
    frame: &mut Frame,
    area: Rect,
    s: &Stats,
    ui: &UiState,
) -> Option<(usize, usize, usize)> {
    let sorted = sorted_asns(s, ui.sort);
    // Without an ASN database every connection lands in the "other" row (ASN 0).
    if sorted.iter().all(|a| a.asn == 0) {
        let text = "no ASN data: set [geo] asn_db (a GeoLite2-ASN database) to see networks";
        let p = Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(p, area);
        return None;
    }
    let columns: &[Column] = if area.width >= WIDE {
        &ASN_COLUMNS_WIDE
    } else {
        &ASN_COLUMNS
    };
    let spark = spark_width(columns, area);
    let all: f64 = s.asns.iter().map(|a| a.conn_rate_10s.max(0.0)).sum();
    let spiking: Vec<&str> = s
        .countries
        .iter()
        .filter(|c| s.is_spiking(c))
        .map(|c| c.country.as_str())
        .collect();
    let top = sorted.iter().map(|a| a.conn_rate_10s).fold(0.0, f64::max);
    let rows = sorted
        .into_iter()
        .map(|a| {
            let row = Row::new(cells(asn_values(a, spark, all, top), columns));
            // An ASN of a spiking country is highlighted only when it carries the spike's
            // traffic (a tenth or more of all), not every network of that country.
            let hot = spiking.contains(&a.country.as_str()) && a.conn_rate_10s * 10.0 >= all;
            if hot && a.asn != 0 {
                row.style(SPIKING)
            } else {
                row
            }
        })
        .collect();
    Some(render_table(frame, area, columns, rows, ui.scroll))
}

/// The cells of one ASN row.
fn asn_values(a: &AsnStats, spark: usize, all: f64, top: f64) -> Vec<String> {
    let (asn, org, country) = if a.asn == 0 {
        ("other".to_string(), String::new(), String::new())
    } else {
        (format!("AS{}", a.asn), a.org.clone(), a.country.clone())
    };
    vec![
        asn,
        org,
        country,
        format::rate(a.conn_rate_10s),
        // One scale for every ASN row: the busiest network's rate.
        format::sparkline(&a.history, spark, top),
        format::percent((all > 0.0).then(|| a.conn_rate_10s.max(0.0) / all)),
        format::count(a.connections),
        format::count(a.requests),
    ]
}
