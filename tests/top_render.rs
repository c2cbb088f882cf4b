//! `levee top` renders a populated frame from a recorded `/stats` (issue 5, item 7): drawn
//! into ratatui's `TestBackend` at 80x24 (a terminal over SSH) and 120x40, and read back.
//! `stats_shed.json` is the same levee shedding BR's surge (and a little of IN): its
//! `shed/s` column and header total; the older `stats.json` has none, shown as `-`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use levee::top::{Model, SortKey, Stats, UiState, View, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

const FIXTURE: &str = include_str!("fixtures/stats.json");

fn model(stats: Option<Stats>, error: Option<&str>) -> Model {
    Model {
        source: "127.0.0.1:9901".into(),
        stats,
        error: error.map(str::to_string),
    }
}

fn recorded() -> Model {
    model(Some(Stats::from_json(FIXTURE).unwrap()), None)
}

fn render(width: u16, height: u16, model: &Model, ui: &UiState) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, model, ui)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The screen line whose table row starts with `key` (a country code or `AS…`).
fn row_of(lines: &[String], key: &str) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}! ")))
        .unwrap_or_else(|| panic!("no row for {key}:\n{}", lines.join("\n")))
}

fn print(lines: &[String]) {
    println!("{}", lines.join("\n"));
}

#[test]
fn countries_render_in_rate_order_at_80x24_and_120x40() {
    let m = recorded();
    for (w, h) in [(80, 24), (120, 40)] {
        let buf = render(w, h, &m, &UiState::default());
        let l = lines(&buf);
        print(&l);
        let rows: Vec<usize> = ["BR", "US", "IN", "DE", "JP"]
            .iter()
            .map(|c| row_of(&l, c))
            .collect();
        assert!(rows.windows(2).all(|p| p[0] < p[1]), "{w}x{h}: {rows:?}");
        assert!(
            l[0].contains("gen 3") && l[0].contains("1 SPIKING"),
            "{}",
            l[0]
        );
        assert!(l[1].starts_with("conn/s 37 "), "{}", l[1]);
        assert!(
            l[2].starts_with("SPIKE BR 28/s 18x (base 1.6) res 6%"),
            "{}",
            l[2]
        );
        let footer = &l[usize::from(h) - 1];
        assert!(
            footer.contains("s sort:rate") && footer.contains("q quit"),
            "{footer}"
        );
        // The surge is visible in BR's sparkline: full bars at its end.
        let br = &l[rows[0]];
        assert!(br.contains('█'), "{br}");
        // JP has no handshake percentiles yet: shown as `-`.
        assert!(l[rows[4]].contains(" - "), "{}", l[rows[4]]);
    }
}

#[test]
fn the_80x24_layout_keeps_every_column() {
    let l = lines(&render(80, 24, &recorded(), &UiState::default()));
    let header = &l[3];
    for title in [
        "CC", "conn/s", "shed/s", "last 60s", "base", "ratio", "res", "p50ms", "p99ms", "5xx",
        "act",
    ] {
        assert!(header.contains(title), "{title} missing: {header}");
    }
    let br = &l[row_of(&l, "BR")];
    for cell in ["28", "1.6", "18x", "6%", "1.9", "14", "2.1%", "61"] {
        assert!(br.contains(cell), "{cell} missing: {br}");
    }
    // No line is wider than the terminal, and nothing wrapped into the footer.
    assert!(l.iter().all(|line| line.chars().count() == 80));
    assert!(l[23].contains("q quit"));
}

#[test]
fn the_wide_layout_adds_columns() {
    let l = lines(&render(120, 40, &recorded(), &UiState::default()));
    let header = &l[3];
    for title in ["1s", "60s", "shed/s", "req/s", "res.b", "active"] {
        assert!(header.contains(title), "{title} missing: {header}");
    }
    let us = &l[row_of(&l, "US")];
    assert!(us.contains("70%") && us.contains("69%"), "{us}");
}

#[test]
fn spiking_row_is_highlighted() {
    for (w, h) in [(80, 24), (120, 40)] {
        let buf = render(w, h, &recorded(), &UiState::default());
        let l = lines(&buf);
        let br = u16::try_from(row_of(&l, "BR")).unwrap();
        let us = u16::try_from(row_of(&l, "US")).unwrap();
        assert!(l[usize::from(br)].starts_with("BR!"));
        // Every cell of the row, the gaps included, carries the highlight.
        for x in [0, 10, w / 2, w - 1] {
            assert_eq!(buf[(x, br)].bg, Color::Red, "x={x}");
            assert_ne!(buf[(x, us)].bg, Color::Red, "x={x}");
        }
        assert_ne!(buf[(0, br)].style(), buf[(0, us)].style());
    }
}

#[test]
fn asn_view_shows_asns() {
    let ui = UiState {
        view: View::Asns,
        ..UiState::default()
    };
    for (w, h) in [(80, 24), (120, 40)] {
        let buf = render(w, h, &recorded(), &ui);
        let l = lines(&buf);
        print(&l);
        let order: Vec<usize> = ["AS28573", "AS7922", "AS55836", "AS3320", "AS17676", "other"]
            .iter()
            .map(|a| row_of(&l, a))
            .collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]), "{order:?}");
        let claro = u16::try_from(order[0]).unwrap();
        assert!(l[usize::from(claro)].contains("Claro"));
        assert!(l[usize::from(claro)].contains("BR"));
        // The network carrying the spike is highlighted; a calm one is not.
        assert_eq!(buf[(0, claro)].bg, Color::Red);
        assert_ne!(buf[(0, u16::try_from(order[1]).unwrap())].bg, Color::Red);
        assert!(l[usize::from(h) - 1].contains("a countries"));
    }
}

#[test]
fn sorting_by_ratio_reorders_rows() {
    let ui = UiState {
        sort: SortKey::Ratio,
        ..UiState::default()
    };
    let l = lines(&render(80, 24, &recorded(), &ui));
    let rows: Vec<usize> = ["BR", "IN", "US", "DE", "JP"]
        .iter()
        .map(|c| row_of(&l, c))
        .collect();
    assert!(rows.windows(2).all(|p| p[0] < p[1]), "{rows:?}");
    assert!(l[23].contains("s sort:ratio"));
}

#[test]
fn small_and_empty_screens_do_not_panic() {
    let m = recorded();
    for (w, h) in [(20, 5), (40, 8), (1, 1), (80, 6)] {
        render(w, h, &m, &UiState::default());
        render(
            w,
            h,
            &m,
            &UiState {
                view: View::Asns,
                ..UiState::default()
            },
        );
    }
    // Scrolled far past the end: the last rows stay on screen.
    let l = lines(&render(
        80,
        8,
        &m,
        &UiState {
            scroll: 99,
            ..UiState::default()
        },
    ));
    assert!(
        l.iter().any(|line| line.starts_with("JP ")),
        "{}",
        l.join("\n")
    );
    assert!(l[7].contains("rows 3-5 of 5"), "{}", l[7]);
}

#[test]
fn errors_and_missing_data_are_shown() {
    let err = "cannot connect to the admin API at 127.0.0.1:9901: Connection refused";
    let l = lines(&render(
        80,
        24,
        &model(None, Some(err)),
        &UiState::default(),
    ));
    assert!(l.iter().any(|line| line.contains("Connection refused")));
    assert!(l.iter().any(|line| line.contains("retrying every second")));

    // A poll failed after a good one: the last stats stay, marked stale.
    let mut stale = recorded();
    stale.error = Some(err.into());
    let l = lines(&render(80, 24, &stale, &UiState::default()));
    assert!(l[0].contains("STALE"), "{}", l[0]);
    row_of(&l, "BR");

    // A levee whose /stats has no per-country data yet, and no ASN database.
    let today =
        Stats::from_json(r#"{"config":{"generation":1},"workers":[{"worker":0}]}"#).unwrap();
    let m = model(Some(today), None);
    let l = lines(&render(80, 24, &m, &UiState::default()));
    assert!(
        l.iter()
            .any(|line| line.contains("no per-country traffic yet"))
    );
    assert!(l[2].contains("no spikes"));
    let ui = UiState {
        view: View::Asns,
        ..UiState::default()
    };
    let l = lines(&render(80, 24, &m, &ui));
    assert!(
        l.iter().any(|line| line.contains("asn_db")),
        "{}",
        l.join("\n")
    );

    // Without an ASN database, /stats has only the "other" row: the same hint.
    let mut only_other = recorded();
    if let Some(s) = only_other.stats.as_mut() {
        s.asns.retain(|a| a.asn == 0);
    }
    let l = lines(&render(80, 24, &only_other, &ui));
    assert!(
        l.iter().any(|line| line.contains("asn_db")),
        "{}",
        l.join("\n")
    );
}

const SHED_FIXTURE: &str = include_str!("fixtures/stats_shed.json");

/// The cell under the column titled `title` in screen line `line` (titles are right-aligned
/// over their column, like the values).
fn cell_under(lines: &[String], title: &str, line: usize) -> String {
    let header: Vec<char> = lines[3].chars().collect();
    let t: Vec<char> = title.chars().collect();
    let at = header
        .windows(t.len())
        .position(|w| w == t.as_slice())
        .unwrap_or_else(|| panic!("no {title} column: {}", lines[3]));
    let row: Vec<char> = lines[line].chars().collect();
    row[at..at + t.len()]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}

#[test]
fn shed_column_shows_the_rate_at_80x24_and_120x40() {
    let m = model(Some(Stats::from_json(SHED_FIXTURE).unwrap()), None);
    for (w, h) in [(80, 24), (120, 40)] {
        let l = lines(&render(w, h, &m, &UiState::default()));
        print(&l);
        for (code, shed) in [("BR", "41"), ("US", "0"), ("IN", "0.4"), ("JP", "0")] {
            let row = row_of(&l, code);
            assert_eq!(cell_under(&l, "shed/s", row), shed, "{w}x{h} {code}");
        }
        // The other columns are still there, and nothing is wider than the terminal.
        assert_eq!(cell_under(&l, "conn/s", row_of(&l, "BR")), "28");
        assert!(
            l[3].contains("p99ms") && l[3].contains("last 60s"),
            "{}",
            l[3]
        );
        assert!(l.iter().all(|line| line.chars().count() == usize::from(w)));
        // The total in the header line, right after the connection rates.
        assert!(
            l[1].starts_with("conn/s 37 (1s 39, 60s 18)  shed/s 42  req/s 64"),
            "{}",
            l[1]
        );
        assert!(l[2].starts_with("SPIKE BR 70/s 44x"), "{}", l[2]);
        if w >= 120 {
            assert!(
                l[0].contains("CAPPED BR 3.6/s"),
                "the automatic cap: {}",
                l[0]
            );
        }
    }
}

#[test]
fn shed_column_is_a_dash_without_shed_data() {
    for (w, h) in [(80, 24), (120, 40)] {
        let l = lines(&render(w, h, &recorded(), &UiState::default()));
        for code in ["BR", "US", "IN", "DE", "JP"] {
            assert_eq!(cell_under(&l, "shed/s", row_of(&l, code)), "-", "{code}");
        }
        assert!(!l[1].contains("shed/s"), "{}", l[1]);
    }
}
