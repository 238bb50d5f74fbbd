//! Rendering: a pure function of the app state onto a ratatui frame.

use ratatui::Frame as TermFrame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState};

use crate::analysis::{ConvKey, LatClass, SparseHist};
use crate::schema::{
    Direction, Endpoint, Protocol, errno_text, format_timestamp_ns, msg_flags_text,
};

use super::app::{App, Drill, View};
use super::columns::{Kind, Shown, columns, figure};
use super::feed::{Frame, SourceInfo};
use super::view::{self, Base, RowKey, SortCol, TableRow, Window};
use crate::report::format::{bytes_f, count, latency, rate};

/// The smallest screen the layout is made for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this width, tables show more columns.
const WIDE: u16 = 120;

const HEAD: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const WARN: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

/// Draws the whole screen.
pub fn render(f: &mut TermFrame<'_>, app: &App, logs: &[String]) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area);
        return;
    }
    let [header, summary, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let Some(frame) = &app.frame else {
        f.render_widget(Paragraph::new(title_line(app, None)), header);
        f.render_widget(Paragraph::new("waiting for the first figures ..."), body);
        render_footer(f, app, footer);
        return;
    };
    let b = view::base(frame, app.window);
    f.render_widget(Paragraph::new(title_line(app, Some(frame))), header);
    f.render_widget(Paragraph::new(summary_line(app, frame, &b)), summary);
    f.render_widget(Paragraph::new(tab_line(app, tabs.width)), tabs);
    match app.drill.last() {
        Some(Drill::Conversation(c)) => render_conversation(f, app, frame, &b, c, body),
        Some(Drill::Process(p)) => {
            let [t, rest] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
            f.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(
                        format!(
                            "Conversations of {} (pid {})",
                            clean(&p.comm.as_str()),
                            p.pid
                        ),
                        HEAD,
                    ),
                    Span::styled("   Enter: latency and slowest ops   Esc: back", DIM),
                ])),
                t,
            );
            render_table(
                f,
                app,
                Kind::Conversations,
                &app.rows,
                Some(app.selected),
                rest,
            );
        }
        None => match app.view {
            View::Processes => {
                render_table(f, app, Kind::Processes, &app.rows, Some(app.selected), body)
            }
            View::Conversations => render_table(
                f,
                app,
                Kind::Conversations,
                &app.rows,
                Some(app.selected),
                body,
            ),
            View::Endpoints => render_endpoints(f, app, frame, &b, body),
            View::Latency => render_latency(f, frame, &b, body),
            View::Errors => render_errors(f, app, frame, &b, body),
            View::Health => render_health(f, app, frame, &b, logs, body),
            View::Containers => render_table(
                f,
                app,
                Kind::Containers,
                &app.rows,
                Some(app.selected),
                body,
            ),
        },
    }
    render_footer(f, app, footer);
    if app.help {
        render_help(f, area);
    }
}

fn too_small(f: &mut TermFrame<'_>, area: Rect) {
    let text = vec![
        Line::styled("nwtrace top needs a terminal of at least 80x24", WARN),
        Line::from(format!("this one is {}x{}", area.width, area.height)),
        Line::from("enlarge it, or use --json; q quits"),
    ];
    let h = (text.len() as u16).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    f.render_widget(
        Paragraph::new(text).centered(),
        Rect::new(area.x, y, area.width, h),
    );
}

/// Control characters in a comm (chosen by whoever runs the process)
/// would move the cursor: show them as `\xNN`.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn clock_time(ns: i64) -> String {
    // "YYYY-MM-DD HH:MM:SS" of the row format.
    format_timestamp_ns(ns)[..19].to_string()
}

fn title_line(app: &App, frame: Option<&Frame>) -> Line<'static> {
    let mut spans = vec![Span::styled("nwtrace top", HEAD)];
    if app.paused {
        spans.push(Span::styled("  PAUSED", WARN));
    }
    if app.frozen {
        spans.push(Span::styled("  FROZEN", WARN));
    }
    if let Some(frame) = frame {
        let src = match &frame.source {
            SourceInfo::Live { backend } => format!("live, backend {backend}"),
            SourceInfo::Replay { speed, done, .. } => format!(
                "replay ({}{})",
                if *speed == 0.0 {
                    "max speed".to_string()
                } else {
                    format!("{speed}x")
                },
                if *done { ", done" } else { "" }
            ),
        };
        spans.push(Span::raw(format!(
            "  {src}  window {}  {} UTC",
            app.window.label(),
            clock_time(frame.at_ns)
        )));
    }
    Line::from(spans)
}

fn rate_suffix(b: &Base<'_>) -> &'static str {
    if b.per_second { "/s" } else { "" }
}

fn summary_line(app: &App, frame: &Frame, b: &Base<'_>) -> Line<'static> {
    let t = view::totals(frame, b);
    let s = rate_suffix(b);
    let mut spans = vec![Span::raw(format!(
        "ops {}{s}  sent {}{s}  recv {}{s}  errors {}{s}  lost {}",
        figure(t.ops, b.per_second),
        bytes_f(t.sent),
        bytes_f(t.recv),
        figure(t.errors(), b.per_second),
        frame.health.events_lost,
    ))];
    if frame.health.events_lost > 0 {
        spans[0].style = WARN;
    }
    if !app.filter_text.is_empty() {
        spans.push(Span::styled(
            format!("  filter {}", app.filter_text),
            Style::new().fg(Color::Cyan),
        ));
    }
    Line::from(spans)
}

/// Short tab titles, for when the seventh tab would not fit.
fn short_title(v: View) -> &'static str {
    match v {
        View::Processes => "Procs",
        View::Conversations => "Convs",
        View::Endpoints => "Endpts",
        View::Errors => "Errors",
        other => other.title(),
    }
}

fn tab_line(app: &App, width: u16) -> Line<'static> {
    let views = app.views();
    let full: usize = views.iter().map(|v| v.title().chars().count() + 4).sum();
    let title = |v: View| {
        if full > usize::from(width) {
            short_title(v)
        } else {
            v.title()
        }
    };
    let mut spans = Vec::new();
    for (i, v) in views.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, title(*v));
        if *v == app.view {
            spans.push(Span::styled(label, SELECTED));
        } else {
            spans.push(Span::raw(label));
        }
    }
    Line::from(spans)
}

fn render_footer(f: &mut TermFrame<'_>, app: &App, area: Rect) {
    let line = if let Some(text) = &app.editing {
        let mut spans = vec![
            Span::styled("filter: ", HEAD),
            Span::raw(text.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
        ];
        match &app.message {
            Some(m) => spans.push(Span::styled(format!("  {m}"), WARN)),
            None => spans.push(Span::styled(
                "  e.g. pid:123 comm:nginx port:443 proto:tcp dir:send  Enter applies, Esc cancels",
                DIM,
            )),
        }
        Line::from(spans)
    } else if let Some(m) = &app.message {
        Line::styled(m.clone(), WARN)
    } else {
        let mut spans = vec![Span::styled(
            "q quit  ? help  / filter  w window  Enter drill  Space pause",
            DIM,
        )];
        if app.ui_dropped > 0 {
            spans.push(Span::raw(format!("  {} frames dropped", app.ui_dropped)));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}

pub(super) fn endpoint(e: Option<Endpoint>) -> String {
    e.map_or("(unknown peer)".into(), |e| e.to_string())
}

pub(super) fn dir_text(d: Direction) -> &'static str {
    match d {
        Direction::Send => "send",
        Direction::Receive => "recv",
    }
}

fn proto(p: Protocol) -> &'static str {
    p.as_str()
}

fn render_table(
    f: &mut TermFrame<'_>,
    app: &App,
    kind: Kind,
    rows: &[TableRow],
    selected: Option<usize>,
    area: Rect,
) {
    let wide = area.width >= WIDE;
    let per_s = app.window != Window::Cumulative;
    let cols = columns(kind, wide);
    let align = |text: String, right: bool| {
        if right {
            Line::from(text).right_aligned()
        } else {
            Line::from(text)
        }
    };
    let header = Row::new(cols.iter().map(|c| {
        let mark = match c.sort {
            Some(s) if s == app.sort || (app.sort == SortCol::Bytes && kind_bytes(s)) => {
                if app.desc { "▼" } else { "▲" }
            }
            _ => "",
        };
        align(format!("{}{mark}", c.header(per_s)), c.right())
    }))
    .style(HEAD);
    let body = rows.iter().map(|r| {
        let shown = Shown {
            row: r.clone(),
            per_second: per_s,
        };
        Row::new(
            cols.iter()
                .map(|c| align((c.column.cell)(&shown), c.right())),
        )
    });
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width)).collect();
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(SELECTED);
    if rows.is_empty() {
        let [h, msg] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        f.render_widget(table, h);
        f.render_widget(
            Paragraph::new(Span::styled("  nothing in this window", DIM)),
            msg,
        );
        return;
    }
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

/// Sent+received sorts by both byte columns: mark them both.
fn kind_bytes(s: SortCol) -> bool {
    matches!(s, SortCol::Sent | SortCol::Recv)
}

fn section(title: &str, hint: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled(title.to_string(), HEAD),
        Span::styled(hint.to_string(), DIM),
    ])
}

fn render_endpoints(f: &mut TermFrame<'_>, app: &App, frame: &Frame, b: &Base<'_>, area: Rect) {
    let half = area.height / 2;
    let [t1, remotes, t2, ports] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(half.saturating_sub(1)),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(section("Remote endpoints", "")), t1);
    render_table(
        f,
        app,
        Kind::Remotes,
        &app.rows,
        Some(app.selected),
        remotes,
    );
    let mut port_rows = view::ports(frame, b);
    view::sort_rows(&mut port_rows, app.sort, app.desc);
    f.render_widget(
        Paragraph::new(section(
            "Ports",
            "  (local: this side's port; remote: the peer's)",
        )),
        t2,
    );
    render_table(f, app, Kind::Ports, &port_rows, None, ports);
}

fn class_text(c: LatClass) -> &'static str {
    match c {
        LatClass::Send => "send",
        LatClass::ReceiveBlocking => "receive (may block)",
        LatClass::ReceiveNonblocking => "receive (non-blocking)",
    }
}

fn render_latency(f: &mut TermFrame<'_>, frame: &Frame, b: &Base<'_>, area: Rect) {
    let lines = view::latency(frame, b);
    let table_h = (lines.len() as u16 + 1).max(2);
    let [t, heat_title, heat] = Layout::vertical([
        Constraint::Length(table_h),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    let s = rate_suffix(b);
    let header = Row::new(
        [
            "DIRECTION".to_string(),
            "PROTO".into(),
            format!("OPS{s}"),
            "P50".into(),
            "P90".into(),
            "P99".into(),
            "P99.9".into(),
            "MAX".into(),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            if i >= 2 {
                Line::from(h).right_aligned()
            } else {
                Line::from(h)
            }
        }),
    )
    .style(HEAD);
    let rows = lines.iter().map(|l| {
        let s = &l.summary;
        Row::new(
            [
                class_text(l.class).to_string(),
                proto(l.protocol).into(),
                figure(l.rate, b.per_second),
                latency(s.p50),
                latency(s.p90),
                latency(s.p99),
                latency(s.p999),
                latency(s.max),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i >= 2 {
                    Line::from(c).right_aligned()
                } else {
                    Line::from(c)
                }
            }),
        )
    });
    let widths = [22, 5, 7, 7, 7, 7, 7, 7].map(Constraint::Length);
    f.render_widget(Table::new(rows, widths).header(header).column_spacing(1), t);
    if lines.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("  no latency in this window", DIM)),
            Rect::new(t.x, t.y + 1, t.width, 1),
        );
    }
    render_heat(f, frame, heat_title, heat);
}

/// Latency heat map rows: from 256 ns (bucket 8) to 8.6 s (bucket 33);
/// faster ops fall in the bottom row, slower in the top one.
const HEAT_LO: usize = 8;
const HEAT_HI: usize = 33;
const SHADES: [&str; 5] = [" ", "░", "▒", "▓", "█"];

fn render_heat(f: &mut TermFrame<'_>, frame: &Frame, title: Rect, area: Rect) {
    let label_w = 8u16;
    let width = area.width.saturating_sub(label_w) as usize;
    let (step_ns, cols) = view::heat_columns(frame, width.max(1));
    let step_s = step_ns / 1_000_000_000;
    f.render_widget(
        Paragraph::new(section(
            "Latency heat map",
            &format!("  all ops; 1 column = {step_s} s, newest right; darker = more"),
        )),
        title,
    );
    let span = HEAT_HI - HEAT_LO + 1;
    let rows = area.height.max(1) as usize;
    let group = span.div_ceil(rows).max(1);
    let nrows = span.div_ceil(group);
    // Counts per screen row, bottom row first.
    let cell = |col: &Vec<u64>, r: usize| -> u64 {
        if col.is_empty() {
            return 0;
        }
        let lo = HEAT_LO + r * group;
        let hi = (lo + group - 1).min(HEAT_HI);
        let lo = if r == 0 { 0 } else { lo };
        let hi = if r == nrows - 1 { col.len() - 1 } else { hi };
        col[lo..=hi].iter().sum()
    };
    let max = cols
        .iter()
        .flat_map(|c| (0..nrows).map(move |r| cell(c, r)))
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    for r in (0..nrows).rev() {
        let label = latency(1u64 << (HEAT_LO + r * group));
        let mut text = String::with_capacity(width * 3);
        for c in &cols {
            let n = cell(c, r);
            let level = if n == 0 || max == 0 {
                0
            } else {
                // Log scale: 1 op shows, and the busiest cell is darkest.
                let x = (n as f64).ln_1p() / (max as f64).ln_1p();
                1 + ((x * 3.0).round() as usize).min(3)
            };
            text.push_str(SHADES[level]);
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{label:>7} "), DIM),
            Span::styled(text, Style::new().fg(Color::LightRed)),
        ]));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn render_errors(f: &mut TermFrame<'_>, app: &App, frame: &Frame, b: &Base<'_>, area: Rect) {
    let half = area.height / 2;
    let [t1, errs, t2, flags, nf] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(half.saturating_sub(1)),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(section(
            "Errors",
            "  (retry: EAGAIN, EINTR, ERESTARTSYS ...; hard: ECONNRESET, EPIPE ...)",
        )),
        t1,
    );
    render_table(f, app, Kind::Errors, &app.rows, Some(app.selected), errs);
    let mut flag_rows = view::flags(frame, b);
    view::sort_rows(&mut flag_rows, app.sort, app.desc);
    f.render_widget(
        Paragraph::new(section("MSG flags", "  (as passed to send/recv calls)")),
        t2,
    );
    render_table(f, app, Kind::Flags, &flag_rows, None, flags);
    let [s, r] = view::no_flags(frame, b);
    let suffix = rate_suffix(b);
    f.render_widget(
        Paragraph::new(Span::styled(
            format!(
                "without flags (write/read/io_uring or 0): send {}{suffix}, recv {}{suffix}",
                figure(s, b.per_second),
                figure(r, b.per_second)
            ),
            DIM,
        )),
        nf,
    );
}

fn kv(k: &str, v: String) -> Line<'static> {
    Line::from(vec![Span::styled(format!("{k:<22}"), HEAD), Span::raw(v)])
}

fn render_health(
    f: &mut TermFrame<'_>,
    app: &App,
    frame: &Frame,
    b: &Base<'_>,
    logs: &[String],
    area: Rect,
) {
    let h = &frame.health;
    let s = rate_suffix(b);
    let (ev_rate, lost_rate) = view::health_rates(frame, b);
    let agg = &frame.cur.agg;
    let mut lines = Vec::new();
    match &frame.source {
        SourceInfo::Live { backend } => {
            lines.push(kv("source", format!("live capture, backend {backend}")));
            lines.push(kv("events", format!("{} ({}{s})", h.events, rate(ev_rate))));
        }
        SourceInfo::Replay {
            path,
            speed,
            done,
            files,
        } => {
            lines.push(kv(
                "source",
                format!(
                    "replay of {} ({files} file{}), {}{}",
                    clean(path),
                    if *files == 1 { "" } else { "s" },
                    if *speed == 0.0 {
                        "max speed".to_string()
                    } else {
                        format!("speed {speed}x")
                    },
                    if *done { ", done" } else { "" }
                ),
            ));
            lines.push(kv(
                "rows read",
                format!("{} ({}{s})", h.events, rate(ev_rate)),
            ));
        }
    }
    let lost_style = if h.events_lost > 0 {
        WARN
    } else {
        Style::new()
    };
    lines.push(Line::from(vec![
        Span::styled(format!("{:<22}", "events lost"), HEAD),
        Span::styled(
            format!("{} ({}{s})", h.events_lost, rate(lost_rate)),
            lost_style,
        ),
    ]));
    if h.ring_size > 0 {
        lines.push(kv(
            "ring fill",
            format!(
                "{:.1}% of {} after the last drain",
                100.0 * h.ring_used as f64 / h.ring_size as f64,
                bytes_f(h.ring_size as f64)
            ),
        ));
    }
    lines.push(kv("malformed records", h.malformed.to_string()));
    if h.sampled_out + h.rate_limited + h.filtered > 0 {
        lines.push(kv(
            "not written",
            format!(
                "{} sampled out, {} over the rate limit, {} filtered (counted in the kernel; the views count written ops only, a sample)",
                h.sampled_out, h.rate_limited, h.filtered
            ),
        ));
    }
    if h.view_skipped > 0 {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<22}", "ops the view skipped"), HEAD),
            Span::styled(
                format!("{} (it fell behind; the capture has them)", h.view_skipped),
                WARN,
            ),
        ]));
    }
    lines.push(kv(
        "ops counted",
        format!(
            "{} since {} UTC{}",
            agg.totals.ops,
            clock_time(frame.started_ns),
            if app.filter_text.is_empty() {
                String::new()
            } else {
                format!(" (filter {})", app.filter_text)
            }
        ),
    ));
    match (&h.record_dir, h.rows_recorded) {
        (Some(dir), Some(rows)) => {
            lines.push(kv("recording", clean(dir)));
            lines.push(kv("rows written", rows.to_string()));
        }
        _ => lines.push(kv(
            "recording",
            "no (--record DIR writes record's files)".into(),
        )),
    }
    lines.push(kv(
        "tables",
        format!(
            "{} processes, {} conversations, {} remotes; {} keys in other",
            agg.processes.len(),
            agg.conversations.len(),
            agg.remotes.len(),
            agg.conversations.other_keys()
        ),
    ));
    lines.push(kv(
        "screen",
        format!(
            "frame {}, {} updates dropped (screen behind){}",
            frame.seq,
            app.ui_dropped,
            if app.paused {
                format!(", {} while paused", app.frames_while_paused)
            } else {
                String::new()
            }
        ),
    ));
    lines.push(Line::from(""));
    lines.push(Line::styled("Log", HEAD));
    let room = (area.height as usize).saturating_sub(lines.len());
    if logs.is_empty() {
        lines.push(Line::styled("(no messages)", DIM));
    }
    for l in logs.iter().skip(logs.len().saturating_sub(room)) {
        lines.push(Line::from(clean(l)));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn render_conversation(
    f: &mut TermFrame<'_>,
    app: &App,
    frame: &Frame,
    b: &Base<'_>,
    c: &ConvKey,
    area: Rect,
) {
    let [head, figs, hists, slow_t, slow] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Percentage(50),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    let stats = frame.cur.agg.conversations.get(c);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!(
                    "{} {} (pid {})  {} <-> {}",
                    proto(c.protocol),
                    clean(&c.comm.as_str()),
                    c.pid,
                    c.local,
                    endpoint(c.remote)
                ),
                HEAD,
            ),
            Span::styled(
                if stats.is_some_and(|s| s.end_of_stream) {
                    "  peer closed"
                } else {
                    ""
                },
                DIM,
            ),
            Span::styled(
                match c.cookie {
                    Some(k) if stats.is_some_and(|s| s.shared) => {
                        format!("  socket {k}, shared")
                    }
                    Some(k) => format!("  socket {k}"),
                    None => String::new(),
                },
                DIM,
            ),
            Span::styled("   Esc: back", DIM),
        ])),
        head,
    );
    let row = view::conversations(frame, b, None)
        .into_iter()
        .find(|r| r.key == RowKey::Conv(*c));
    let s = rate_suffix(b);
    let text = match (&row, stats) {
        (Some(r), Some(st)) => format!(
            "ops {}{s}  sent {}{s}  recv {}{s}  errors {}{s}  (total {} ops)",
            figure(r.fig.ops, b.per_second),
            bytes_f(r.fig.sent),
            bytes_f(r.fig.recv),
            figure(r.fig.errors(), b.per_second),
            st.c.total_ops(),
        ),
        _ => "no longer tracked (moved to (other))".into(),
    };
    f.render_widget(Paragraph::new(text), figs);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(hists);
    let h = view::conversation_latency(frame, b, c);
    histogram(f, "send latency", h[0].as_ref(), left);
    histogram(f, "receive latency", h[1].as_ref(), right);
    f.render_widget(
        Paragraph::new(section(
            "Slowest recent ops",
            &format!("  (of the last {} ops counted)", frame.recent.len()),
        )),
        slow_t,
    );
    let ops = view::slowest_recent(frame, c, slow.height.saturating_sub(1) as usize);
    let header = Row::new(
        ["START (UTC)", "DIR", "SIZE", "LATENCY", "ERROR", "FLAGS"]
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                if (2..4).contains(&i) {
                    Line::from(h).right_aligned()
                } else {
                    Line::from(h)
                }
            }),
    )
    .style(HEAD);
    let rows = ops.iter().map(|op| {
        Row::new(vec![
            Line::from(format_timestamp_ns(op.ts_ns)[11..].to_string()),
            Line::from(dir_text(op.direction)),
            Line::from(op.size.to_string()).right_aligned(),
            Line::from(op.latency_ns.map_or("-".into(), latency)).right_aligned(),
            Line::from(op.errno.map(errno_text).unwrap_or_default()),
            Line::from(op.msg_flags.map(msg_flags_text).unwrap_or_default()),
        ])
    });
    let widths = [15, 4, 8, 9, 12, 24].map(Constraint::Length);
    let _ = app;
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        slow,
    );
}

/// A log2 histogram with bars, as bcc's tools print them.
fn histogram(f: &mut TermFrame<'_>, title: &str, h: Option<&SparseHist>, area: Rect) {
    let mut lines = Vec::new();
    match h {
        None => {
            lines.push(section(title, ""));
            lines.push(Line::styled("  none in this window", DIM));
        }
        Some(h) => {
            let s = h.summary();
            // The count on the title line: with units spaced, the
            // percentiles fill half an 80-column screen on their own.
            lines.push(section(title, &format!("  n={}", count(s.count))));
            lines.push(Line::styled(
                format!(
                    "p50 {} p99 {} max {}",
                    latency(s.p50),
                    latency(s.p99),
                    latency(s.max)
                ),
                DIM,
            ));
            let mut buckets = h.log2_buckets();
            let room = (area.height as usize).saturating_sub(2).max(1);
            if buckets.len() > room {
                // Keep the fullest buckets, in latency order.
                let mut by_count: Vec<usize> = (0..buckets.len()).collect();
                by_count.sort_by(|&a, &b| buckets[b].2.cmp(&buckets[a].2).then(a.cmp(&b)));
                let mut keep: Vec<usize> = by_count.into_iter().take(room).collect();
                keep.sort_unstable();
                buckets = keep.into_iter().map(|i| buckets[i]).collect();
            }
            let max = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1);
            let bar_w = (area.width as usize).saturating_sub(25).max(4);
            for (lo, _hi, n) in buckets {
                let len = ((n as f64 / max as f64) * bar_w as f64).ceil() as usize;
                lines.push(Line::from(vec![
                    Span::styled(format!("{:>9}+ ", latency(lo)), DIM),
                    Span::styled(
                        format!("{:<bar_w$}", "█".repeat(len)),
                        Style::new().fg(Color::Cyan),
                    ),
                    Span::raw(format!(" {n:>8}")),
                ]));
            }
        }
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn render_help(f: &mut TermFrame<'_>, area: Rect) {
    let text = [
        "Views      1-6 or Tab/Shift-Tab: Processes, Conversations, Endpoints,",
        "           Latency, Errors & flags, Health; 7 Containers if recorded",
        "Move       Up/Down or k/j, PgUp/PgDn, g/Home top, G/End bottom",
        "Drill      Enter: process -> its conversations -> latency and slowest ops",
        "           Esc/Backspace/Left: back",
        "Window     w: rates over 1 s, 10 s, or totals since the start (cumulative)",
        "Sort       t sent+received (default)  o ops  s sent  r received",
        "           m p50  l p99  e errors  n key; again or i flips the order",
        "Order      rows re-rank every 3 s at most; f freezes the order",
        "Filter     / then e.g.  pid:123 comm:nginx port:443 proto:tcp dir:send",
        "           ip-version:6 cgroup:/system.slice container:<12+ hex digits>",
        "           exclude-comm:sshd netns:<inode>  (as the flags of record)",
        "           same kind: any of them; different kinds: all; empty: none",
        "           counting starts afresh under a new filter",
        "Pause      Space freezes the screen (the capture goes on)",
        "Quit       q or Ctrl-C",
        "",
        "Latency p50/p99 of a process pools all its ops; the Latency view",
        "splits receives that may block (they include waiting for data).",
    ];
    let w = (text.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 4).min(area.width);
    let h = (text.len() as u16 + 2).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(
            text.iter()
                .map(|l| Line::from(format!(" {l}")))
                .collect::<Vec<_>>(),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" nwtrace top: keys (any key closes) "),
        ),
        r,
    );
}
