//! `levee top`: a live terminal view of per-country (and per-ASN) traffic, like `htop` for
//! countries, over the admin API's `GET /stats`. It only reads the admin API; it never talks
//! to workers or shards.
//!
//! - [`model`]: the `/stats` JSON as serde structs, and row ordering.
//! - [`view`]: [`draw`], a pure function of the model and the UI state.
//! - [`format`]: short numbers and sparklines for narrow columns.
//! - [`client`]: one bounded `GET /stats` (with an optional bearer token).
//!
//! A poller thread fetches `/stats` once a second and hands the result to the UI thread over
//! a channel, so a slow or dead admin API never delays a key press.

pub mod client;
pub mod format;
pub mod model;
pub mod view;

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use model::{Model, SortKey, Stats};
pub use view::{UiState, View, draw};

/// How often `/stats` is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long the UI waits for a key before looking for a new poll result.
const KEY_WAIT: Duration = Duration::from_millis(100);
/// Rows above and below the table (three header lines, the column titles, the footer).
const CHROME_ROWS: u16 = 5;

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Leave `levee top`.
    Quit,
    /// The UI state changed: draw again.
    Redraw,
    /// Nothing to do.
    Ignored,
}

/// Applies one key press to the UI state: `s` cycles the sort, `a` toggles the ASN view,
/// arrows / `j` `k` / PgUp PgDn / Home scroll, `q`, Esc or Ctrl-C quit.
pub fn handle_key(ui: &mut UiState, key: KeyEvent) -> KeyOutcome {
    if key.kind == KeyEventKind::Release {
        return KeyOutcome::Ignored;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => return KeyOutcome::Quit,
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => return KeyOutcome::Quit,
        KeyCode::Char('s' | 'S') => {
            ui.sort = ui.sort.next();
            ui.scroll = 0;
        }
        KeyCode::Char('a' | 'A') => {
            ui.view = match ui.view {
                View::Countries => View::Asns,
                View::Asns => View::Countries,
            };
            ui.scroll = 0;
        }
        KeyCode::Down | KeyCode::Char('j') => ui.scroll = ui.scroll.saturating_add(1),
        KeyCode::Up | KeyCode::Char('k') => ui.scroll = ui.scroll.saturating_sub(1),
        KeyCode::PageDown => ui.scroll = ui.scroll.saturating_add(10),
        KeyCode::PageUp => ui.scroll = ui.scroll.saturating_sub(10),
        KeyCode::Home | KeyCode::Char('g') => ui.scroll = 0,
        _ => return KeyOutcome::Ignored,
    }
    KeyOutcome::Redraw
}

/// Runs `levee top` against the admin API at `addr` until the user quits. Poll errors are
/// shown on screen (and retried); only terminal errors end it early.
pub fn run(addr: String, token: Option<String>) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    spawn_poller(addr.clone(), token, tx)?;
    let mut terminal = ratatui::try_init()?;
    let result = ui_loop(&mut terminal, addr, &rx);
    let restored = ratatui::try_restore();
    result.and(restored)
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    source: String,
    rx: &mpsc::Receiver<Result<Stats, String>>,
) -> io::Result<()> {
    let mut model = Model {
        source,
        ..Model::default()
    };
    let mut ui = UiState::default();
    let mut dirty = true;
    loop {
        while let Ok(result) = rx.try_recv() {
            match result {
                Ok(stats) => {
                    model.stats = Some(stats);
                    model.error = None;
                }
                Err(e) => model.error = Some(e),
            }
            dirty = true;
        }
        if dirty {
            clamp_scroll(&mut ui, &model, terminal.size()?.height);
            terminal.draw(|f| draw(f, &model, &ui))?;
            dirty = false;
        }
        if event::poll(KEY_WAIT)? {
            match event::read()? {
                Event::Key(key) => match handle_key(&mut ui, key) {
                    KeyOutcome::Quit => return Ok(()),
                    KeyOutcome::Redraw => dirty = true,
                    KeyOutcome::Ignored => {}
                },
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
}

/// Keeps the scroll position where the last row is still on screen, so scrolling back up
/// starts moving at once.
fn clamp_scroll(ui: &mut UiState, model: &Model, height: u16) {
    let rows = model.stats.as_ref().map_or(0, |s| match ui.view {
        View::Countries => s.countries.len(),
        View::Asns => s.asns.len(),
    });
    let visible = usize::from(height.saturating_sub(CHROME_ROWS));
    ui.scroll = ui.scroll.min(rows.saturating_sub(visible));
}

/// Starts the thread that polls `/stats` every [`POLL_INTERVAL`] and sends each outcome;
/// it ends when the receiver is gone.
fn spawn_poller(
    addr: String,
    token: Option<String>,
    tx: mpsc::Sender<Result<Stats, String>>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("levee-top-poll".into())
        .spawn(move || {
            loop {
                let started = Instant::now();
                let result = rt
                    .block_on(client::fetch_stats(&addr, token.as_deref()))
                    .map_err(|e| e.to_string());
                if tx.send(result).is_err() {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(ui: &mut UiState, code: KeyCode, modifiers: KeyModifiers) -> KeyOutcome {
        handle_key(ui, KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_sort_switch_scroll_and_quit() {
        let mut ui = UiState::default();
        let none = KeyModifiers::NONE;
        assert_eq!(press(&mut ui, KeyCode::Char('s'), none), KeyOutcome::Redraw);
        assert_eq!(ui.sort, SortKey::Ratio);
        press(&mut ui, KeyCode::Down, none);
        press(&mut ui, KeyCode::Down, none);
        assert_eq!(ui.scroll, 2);
        press(&mut ui, KeyCode::Char('a'), none);
        assert_eq!((ui.view, ui.scroll), (View::Asns, 0));
        press(&mut ui, KeyCode::Up, none);
        assert_eq!(ui.scroll, 0);
        press(&mut ui, KeyCode::Char('a'), none);
        assert_eq!(ui.view, View::Countries);
        assert_eq!(
            press(&mut ui, KeyCode::Char('x'), none),
            KeyOutcome::Ignored
        );
        for (code, m) in [
            (KeyCode::Char('q'), none),
            (KeyCode::Esc, none),
            (KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            assert_eq!(press(&mut ui, code, m), KeyOutcome::Quit);
        }
    }

    #[test]
    fn scroll_is_clamped_to_the_rows() {
        let model = Model {
            stats: Some(Stats {
                countries: vec![model::CountryStats::default(); 30],
                ..Stats::default()
            }),
            ..Model::default()
        };
        let mut ui = UiState {
            scroll: 100,
            ..UiState::default()
        };
        clamp_scroll(&mut ui, &model, 24);
        assert_eq!(ui.scroll, 30 - 19);
        ui.view = View::Asns;
        clamp_scroll(&mut ui, &model, 24);
        assert_eq!(ui.scroll, 0);
    }
}
