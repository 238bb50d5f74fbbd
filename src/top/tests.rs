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
    app.on_frame(frame_with(*f));
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
fn cleans_control_characters() {
    assert_eq!(ui::clean("a\x1b[2Jb"), "a\\x1b[2Jb");
}

// The optional columns (issue #12), on the hand-written recording of
// tests/fixtures/attr (see tests/report.rs for its rows). Its first run:
// nw_0001.csv with all six columns (rows 1-8, 12:00:00 to 12:00:05) and
// nw_0002.csv with Container ID and Socket Cookie (row 11, 12:00:06).

const ATTR_RUN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/attr/m1/20261126T120000Z/nw"
);
const C1: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn attr_frame(filter: Filter) -> Frame {
    let control = Arc::new(Control::default());
    control.set_filter(filter);
    let mut feed = Feed::new(
        top_config(),
        control,
        SourceInfo::Replay {
            path: "tests/fixtures/attr".into(),
            speed: 0.0,
            done: true,
            files: 2,
        },
    );
    let mut ops = Vec::new();
    for f in ["nw_0001.csv", "nw_0002.csv"] {
        let path = std::path::Path::new(ATTR_RUN).join(f);
        let stats = read_file(&path, Compression::None, |row, _| {
            ops.push(row.to_op().unwrap())
        });
        assert_eq!(stats.malformed, 0, "{:?}", stats.problems);
    }
    assert_eq!(ops.len(), 9);
    ops.sort_by_key(|o| o.ts_ns);
    feed.start_at(at("2026-11-26 12:00:00.000000"));
    for op in &ops {
        let _ = feed.tick(op.ts_ns, false);
        feed.health.events += 1;
        feed.add(op);
    }
    feed.frame(at("2026-11-26 12:00:06.500000"))
}

/// The Containers view (key 7, cumulative window) of the attr run.
fn attr_app() -> App {
    let mut app = App::new();
    app.on_frame(attr_frame(Filter::default()));
    app.handle_key(key('w'));
    app.handle_key(key('w'));
    app
}

#[test]
fn containers_view_only_when_recorded() {
    // The fixture without the columns: six views, and 7 does nothing.
    let mut app = app_on('6');
    assert_eq!(app.views(), View::ALL);
    app.handle_key(key('7'));
    assert_eq!(app.view, View::Health);
    assert!(!screen(&app, 120, 40).contains("Containers"));

    let mut app = attr_app();
    assert_eq!(app.views().last(), Some(&View::Containers));
    app.handle_key(key('7'));
    assert_eq!(app.view, View::Containers);
    // Totals counted by hand: the host 3 ops 220 B, C1 (rows 1, 2, 11)
    // 3 ops 180 B, C2 (rows 3-5) 3 ops 150 B, in that order by bytes.
    let got: Vec<(String, u64, u64)> = app
        .rows
        .iter()
        .map(|r| match r.key {
            RowKey::Container(k) => (
                k.value.as_str().to_string(),
                r.fig.total_ops,
                r.fig.total_bytes,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (String::new(), 3, 220),
            (C1.to_string(), 3, 180),
            (
                "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789".to_string(),
                3,
                150
            )
        ]
    );
    insta::assert_snapshot!("containers_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("containers_120x40", screen(&app, 120, 40));
    // Tab goes round all seven.
    app.handle_key(code(KeyCode::Tab));
    assert_eq!(app.view, View::Processes);
    app.handle_key(code(KeyCode::BackTab));
    assert_eq!(app.view, View::Containers);
}

#[test]
fn conversations_by_socket_cookie_in_top() {
    let mut app = attr_app();
    app.handle_key(key('2'));
    // Cookies 11, 22, 33, 34, and dnsmasq's row without a cookie.
    let mut got: Vec<(Option<u64>, u32, u64)> = app
        .rows
        .iter()
        .map(|r| match r.key {
            RowKey::Conv(c) => (c.cookie, c.pid, r.fig.total_ops),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (None, 400, 1),
            (Some(11), 100, 3),
            (Some(22), 200, 3),
            (Some(33), 300, 1),
            (Some(34), 300, 1)
        ]
    );
    // Socket 22 holds the forked child's op too: the drill-down's
    // slowest ops include pid 201's.
    let i = app
        .rows
        .iter()
        .position(|r| matches!(r.key, RowKey::Conv(c) if c.cookie == Some(22)))
        .unwrap();
    app.handle_key(key('g'));
    for _ in 0..i {
        app.handle_key(key('j'));
    }
    app.handle_key(code(KeyCode::Enter));
    let Some(super::app::Drill::Conversation(c)) = app.drill.last().copied() else {
        panic!("drilled into a conversation");
    };
    let frame = app.frame.as_ref().unwrap();
    let mut pids: Vec<u32> = super::view::slowest_recent(frame, &c, 10)
        .iter()
        .map(|o| o.pid)
        .collect();
    pids.sort();
    assert_eq!(pids, [200, 200, 201]);
    let s = screen(&app, 120, 40);
    assert!(
        s.lines().nth(3).unwrap().contains("socket 22, shared"),
        "{s}"
    );
    insta::assert_snapshot!("drill_cookie_conversation_120x40", s);
}

#[test]
fn container_and_cgroup_words_in_the_filter_box() {
    let mut app = attr_app();
    app.handle_key(key('/'));
    for c in format!("container:{} exclude-comm:x", &C1[..12]).chars() {
        app.handle_key(key(c));
    }
    let Action::SetFilter(f) = app.handle_key(code(KeyCode::Enter)) else {
        panic!("a valid filter");
    };
    let frame = attr_frame(*f);
    // Rows 1, 2 and 11.
    assert_eq!(frame.cur.agg.totals.ops, 3);
    app.on_frame(frame);
    assert_eq!(
        app.filter_text,
        format!("exclude-comm:x container:{}", &C1[..12])
    );
    let f = crate::analysis::parse_filter("cgroup:/system.slice ip-version:4").unwrap();
    // Rows 1-5 (row 11's file has no Cgroup column).
    assert_eq!(attr_frame(f).cur.agg.totals.ops, 5);
    let f = crate::analysis::parse_filter("netns:4026531840").unwrap();
    assert_eq!(attr_frame(f).cur.agg.totals.ops, 3);
}
