//! The screen from a fixed data set (the replay fixture) at a fixed feed
//! time, through ratatui's TestBackend, as insta snapshots; and key
//! events fed to the app state.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{Action, App, View};
use super::feed::{Control, Feed, Frame, SourceInfo, top_config};
use super::ui;
use super::view::RowKey;
use crate::analysis::Filter;
use crate::input::{Compression, read_file};
use crate::schema::parse_timestamp_ns;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/top/fixturehost/20261126T120000Z/nw/nw_0001.csv"
);

fn at(text: &str) -> i64 {
    parse_timestamp_ns(text.as_bytes()).expect("a row timestamp")
}

/// The fixture read into a feed under `filter`, frames published as the
/// replay does (every 250 ms of recorded time), and the frame at
/// 12:00:10, the end of the recording.
fn frame_with(filter: Filter) -> Frame {
    let control = Arc::new(Control::default());
    control.set_filter(filter);
    let mut feed = Feed::new(
        top_config(),
        control,
        SourceInfo::Replay {
            path: "tests/fixtures/top".into(),
            speed: 0.0,
            done: true,
            files: 1,
        },
    );
    let mut last: Option<i64> = None;
    let stats = read_file(FIXTURE.as_ref(), Compression::None, |row, _| {
        let op = row.to_op().expect("fixture rows have a local end");
        feed.start_at(at("2026-11-26 12:00:00.000000"));
        if let Some(l) = last {
            let _ = feed.tick(l, false);
        }
        feed.health.events += 1;
        feed.add(&op);
        last = Some(op.ts_ns);
    });
    assert_eq!(stats.rows, 1640, "{:?}", stats.problems);
    feed.frame(at("2026-11-26 12:00:10.000000"))
}

fn frame() -> Frame {
    frame_with(Filter::default())
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render(f, app, &["nwtrace: a log line".to_string()]))
        .unwrap();
    t.backend().to_string()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn app_on(view: char) -> App {
    let mut app = App::new();
    app.on_frame(frame());
    app.handle_key(key(view));
    app
}

#[test]
fn every_view_at_80x24_and_120x40() {
    for (c, name) in [
        ('1', "processes"),
        ('2', "conversations"),
        ('3', "endpoints"),
        ('4', "latency"),
        ('5', "errors"),
        ('6', "health"),
    ] {
        let app = app_on(c);
        for (w, h) in [(80, 24), (120, 40)] {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(&app, w, h));
        }
    }
}

#[test]
fn cumulative_window_shows_totals() {
    let mut app = app_on('1');
    app.handle_key(key('w'));
    app.handle_key(key('w'));
    insta::assert_snapshot!("processes_cumulative_120x40", screen(&app, 120, 40));
}

#[test]
fn help_and_a_small_terminal() {
    let mut app = app_on('1');
    app.handle_key(key('?'));
    insta::assert_snapshot!("help_80x24", screen(&app, 80, 24));
    app.handle_key(key('x'));
    assert!(!app.help, "any key closes the help");
    insta::assert_snapshot!("too_small_60x20", screen(&app, 60, 20));
}

#[test]
fn sort_keys_and_flip() {
    let mut app = app_on('1');
    app.handle_key(key('l'));
    let order: Vec<u32> = app
        .rows
        .iter()
        .filter_map(|r| match r.key {
            RowKey::Proc(p) => Some(p.pid),
            _ => None,
        })
        .collect();
    // p99 over the last second: curl's blocking reads, then ntpd (1 ms),
    // postgres (900 µs), dnsmasq, nginx.
    assert_eq!(order, [2300, 900, 3100, 800, 1200]);
    insta::assert_snapshot!("sorted_by_p99_80x24", screen(&app, 80, 24));
    app.handle_key(key('i'));
    assert_eq!(
        app.rows.first().map(|r| r.key),
        app.rows
            .iter()
            .map(|r| r.key)
            .find(|k| matches!(k, RowKey::Proc(p) if p.pid == 1200))
    );
    app.handle_key(key('n'));
    insta::assert_snapshot!("sorted_by_pid_80x24", screen(&app, 80, 24));
}

#[test]
fn filter_box_counts_afresh_under_the_filter() {
    let mut app = app_on('2');
    app.handle_key(key('/'));
    for c in "comm:postgres por".chars() {
        app.handle_key(key(c));
    }
    insta::assert_snapshot!("filter_typing_80x24", screen(&app, 80, 24));
    // A mistake keeps the box open and says why.
    app.handle_key(code(KeyCode::Enter));
    assert!(app.editing.is_some());
    assert!(app.message.as_deref().unwrap_or("").contains("kind:value"));
    for c in "t:5432".chars() {
        app.handle_key(key(c));
    }
    let Action::SetFilter(f) = app.handle_key(code(KeyCode::Enter)) else {
        panic!("Enter applies a valid filter");
    };
    assert_eq!(f.comms, ["postgres"]);
    assert_eq!(f.ports, [5432]);
    // The runner hands it to the feed, which counts afresh.
    app.on_frame(frame_with(f));
    assert!(
        app.rows
            .iter()
            .all(|r| matches!(r.key, RowKey::Conv(c) if c.pid == 3100))
    );
    insta::assert_snapshot!("filtered_conversations_80x24", screen(&app, 80, 24));
}

#[test]
fn drill_down_process_conversation_and_back() {
    let mut app = app_on('1');
    // nginx is first by sent+received; move to curl and back up.
    app.handle_key(key('j'));
    app.handle_key(key('k'));
    assert!(matches!(app.selected_row().unwrap().key, RowKey::Proc(p) if p.pid == 1200));
    app.handle_key(code(KeyCode::Enter));
    assert_eq!(app.rows.len(), 4, "nginx's four client sockets");
    insta::assert_snapshot!("drill_process_80x24", screen(&app, 80, 24));
    app.handle_key(key('G'));
    app.handle_key(code(KeyCode::Enter));
    insta::assert_snapshot!("drill_conversation_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("drill_conversation_120x40", screen(&app, 120, 40));
    app.handle_key(code(KeyCode::Esc));
    app.handle_key(code(KeyCode::Esc));
    assert!(app.drill.is_empty());
    assert_eq!(app.view, View::Processes);
}

#[test]
fn rows_hold_their_order_while_figures_change() {
    let mut app = app_on('1');
    let first: Vec<RowKey> = app.rows.iter().map(|r| r.key).collect();
    // The same data seen 1 s later: the 1 s window is empty for every
    // process, so a fresh ranking would order them by pid.
    let mut later = frame();
    later.at_ns += 1_000_000_000;
    later.history.push(later.cur.clone());
    later.cur.at_ns = later.at_ns;
    app.on_frame(later.clone());
    let held: Vec<RowKey> = app.rows.iter().map(|r| r.key).collect();
    assert_eq!(held, first, "within 3 s the order is held");
    later.at_ns += 3_000_000_000;
    later.cur.at_ns = later.at_ns;
    app.on_frame(later);
    let reranked: Vec<RowKey> = app.rows.iter().map(|r| r.key).collect();
    assert_ne!(reranked, first, "after 3 s the rows re-rank");
}

#[test]
fn pause_keeps_the_screen_and_quit_quits() {
    let mut app = app_on('1');
    app.handle_key(key(' '));
    let before = screen(&app, 80, 24);
    let mut other = frame();
    other.seq += 100;
    app.on_frame(other);
    assert_eq!(app.frames_while_paused, 1);
    assert_eq!(screen(&app, 80, 24), before);
    assert!(before.contains("PAUSED"));
    assert!(matches!(app.handle_key(key('q')), Action::Quit));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(matches!(app.handle_key(ctrl_c), Action::Quit));
}

#[test]
fn formats() {
    assert_eq!(ui::num(0.0), "0");
    assert_eq!(ui::num(7.5), "7.50");
    assert_eq!(ui::num(456.0), "456");
    assert_eq!(ui::num(1234.0), "1.23k");
    assert_eq!(ui::bytes(41.3), "41B");
    assert_eq!(ui::bytes(1536.0), "1.50K");
    assert_eq!(ui::lat(850), "850ns");
    assert_eq!(ui::lat(12_345), "12.3µs");
    assert_eq!(ui::lat(2_500_000_000), "2.50s");
    assert_eq!(ui::clean("a\x1b[2Jb"), "a\\x1b[2Jb");
}
