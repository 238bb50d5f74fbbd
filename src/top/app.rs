//! The screen's state: key events and frames in, state out. No terminal,
//! no clock, no threads here, so that tests drive it directly.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::analysis::{ConvKey, Filter, ProcKey, filter_text, parse_filter};

use super::feed::Frame;
use super::view::{self, RowKey, SortCol, TableRow, Window};

/// How long the row order is held while figures change: rows re-rank at
/// most this often (in feed time), or at once on a new sort.
pub const RERANK_NS: i64 = 3_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    Processes,
    Conversations,
    Endpoints,
    Latency,
    Errors,
    Health,
    /// Only when the ops carry the Container ID column (key 7).
    Containers,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Processes,
        View::Conversations,
        View::Endpoints,
        View::Latency,
        View::Errors,
        View::Health,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Processes => "Processes",
            View::Conversations => "Conversations",
            View::Endpoints => "Endpoints",
            View::Latency => "Latency",
            View::Errors => "Errors+flags",
            View::Health => "Health",
            View::Containers => "Containers",
        }
    }
}

/// A step of the drill-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drill {
    /// A process's conversations.
    Process(ProcKey),
    /// A conversation's latency histogram and slowest recent ops.
    Conversation(ConvKey),
}

/// What the runner must do after a key.
#[derive(Clone, Debug)]
pub enum Action {
    None,
    Quit,
    /// Count afresh under this filter.
    SetFilter(Box<Filter>),
}

pub struct App {
    pub view: View,
    pub window: Window,
    pub sort: SortCol,
    pub desc: bool,
    /// The order is never re-ranked while frozen.
    pub frozen: bool,
    pub drill: Vec<Drill>,
    pub paused: bool,
    pub help: bool,
    /// The applied filter's text.
    pub filter_text: String,
    /// The filter box while it is open.
    pub editing: Option<String>,
    /// A message for the footer (a filter mistake).
    pub message: Option<String>,
    pub frame: Option<Frame>,
    /// The selectable table of the current view, in screen order.
    pub rows: Vec<TableRow>,
    pub selected: usize,
    selected_key: Option<RowKey>,
    /// Per table: the held order and when it was ranked.
    order: HashMap<TableId, (Vec<RowKey>, i64)>,
    /// Frames that arrived while paused (not shown).
    pub frames_while_paused: u64,
    /// Screen updates dropped because the screen was behind (from the
    /// mailbox; the runner sets it).
    pub ui_dropped: u64,
}

/// Which table a held order belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TableId {
    Processes,
    Conversations(Option<ProcKey>),
    Remotes,
    Errors,
    Containers,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    pub fn new() -> App {
        App {
            view: View::Processes,
            window: Window::One,
            sort: SortCol::Bytes,
            desc: true,
            frozen: false,
            drill: Vec::new(),
            paused: false,
            help: false,
            filter_text: String::new(),
            editing: None,
            message: None,
            frame: None,
            rows: Vec::new(),
            selected: 0,
            selected_key: None,
            order: HashMap::new(),
            frames_while_paused: 0,
            ui_dropped: 0,
        }
    }

    /// A new frame from the feed (ignored while paused).
    pub fn on_frame(&mut self, frame: Frame) {
        if self.paused {
            self.frames_while_paused += 1;
            return;
        }
        self.filter_text = filter_text(&frame.filter);
        self.frame = Some(frame);
        self.refresh(false);
    }

    /// The views on offer: the six, and Containers when the ops carry
    /// containers (a recording or capture with the Container ID column).
    pub fn views(&self) -> Vec<View> {
        let mut v = View::ALL.to_vec();
        if self.view == View::Containers
            || self.frame.as_ref().is_some_and(|f| {
                let c = &f.cur.agg.containers;
                !c.is_empty() || c.other().c.total_ops() > 0
            })
        {
            v.push(View::Containers);
        }
        v
    }

    pub fn selected_row(&self) -> Option<&TableRow> {
        self.rows.get(self.selected)
    }

    fn table_id(&self) -> Option<TableId> {
        match (self.view, self.drill.last()) {
            (_, Some(Drill::Process(p))) => Some(TableId::Conversations(Some(*p))),
            (_, Some(Drill::Conversation(_))) => None,
            (View::Processes, None) => Some(TableId::Processes),
            (View::Conversations, None) => Some(TableId::Conversations(None)),
            (View::Endpoints, None) => Some(TableId::Remotes),
            (View::Errors, None) => Some(TableId::Errors),
            (View::Containers, None) => Some(TableId::Containers),
            _ => None,
        }
    }

    /// Recomputes the selectable table; `rerank` sorts afresh.
    fn refresh(&mut self, rerank: bool) {
        let (Some(frame), Some(id)) = (&self.frame, self.table_id()) else {
            self.rows.clear();
            self.selected = 0;
            return;
        };
        let b = view::base(frame, self.window);
        let mut rows = match id {
            TableId::Processes => view::processes(frame, &b),
            TableId::Conversations(of) => view::conversations(frame, &b, of.as_ref()),
            TableId::Remotes => view::remotes(frame, &b),
            TableId::Errors => view::errors(frame, &b),
            TableId::Containers => view::containers(frame, &b),
        };
        view::sort_rows(&mut rows, self.sort, self.desc);
        let now = frame.at_ns;
        let held = self
            .order
            .get(&id)
            .filter(|(_, at)| !rerank && (self.frozen || (now - *at < RERANK_NS && now >= *at)));
        if let Some((order, _)) = held {
            // Known rows keep their place; new ones follow, ranked.
            let pos: HashMap<RowKey, usize> =
                order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            rows.sort_by_key(|r| pos.get(&r.key).copied().unwrap_or(usize::MAX));
            let at = self.order[&id].1;
            self.order
                .insert(id, (rows.iter().map(|r| r.key).collect(), at));
        } else {
            self.order
                .insert(id, (rows.iter().map(|r| r.key).collect(), now));
        }
        self.rows = rows;
        self.selected = match self.selected_key {
            Some(k) => self
                .rows
                .iter()
                .position(|r| r.key == k)
                .unwrap_or(self.selected.min(self.rows.len().saturating_sub(1))),
            None => 0,
        };
        self.selected_key = self.rows.get(self.selected).map(|r| r.key);
    }

    fn select(&mut self, i: usize) {
        self.selected = i.min(self.rows.len().saturating_sub(1));
        self.selected_key = self.rows.get(self.selected).map(|r| r.key);
    }

    fn set_view(&mut self, v: View) {
        if self.view != v || !self.drill.is_empty() {
            self.view = v;
            self.drill.clear();
            self.selected_key = None;
            self.selected = 0;
            self.refresh(false);
        }
    }

    fn set_sort(&mut self, col: SortCol) {
        if self.sort == col {
            self.desc = !self.desc;
        } else {
            self.sort = col;
            // Names read best A to Z; figures biggest first.
            self.desc = col != SortCol::Key;
        }
        self.refresh(true);
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Esc => self.editing = None,
                KeyCode::Enter => {
                    let text = text.trim().to_string();
                    match parse_filter(&text) {
                        Ok(f) => {
                            self.editing = None;
                            self.message = None;
                            self.filter_text = filter_text(&f);
                            self.drill.clear();
                            return Action::SetFilter(Box::new(f));
                        }
                        Err(e) => self.message = Some(e),
                    }
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => text.clear(),
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return Action::None;
        }
        if self.help {
            self.help = false;
            if key.code == KeyCode::Char('q') {
                return Action::Quit;
            }
            return Action::None;
        }
        self.message = None;
        let page = 10;
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.frames_while_paused = 0;
                }
            }
            KeyCode::Char('/') => self.editing = Some(self.filter_text.clone()),
            KeyCode::Tab | KeyCode::BackTab => {
                let views = self.views();
                let i = views.iter().position(|v| *v == self.view).unwrap_or(0);
                let n = views.len();
                let next = if key.code == KeyCode::Tab {
                    i + 1
                } else {
                    i + n - 1
                };
                self.set_view(views[next % n]);
            }
            KeyCode::Char(c @ '1'..='7') => {
                if let Some(v) = self.views().get(c as usize - '1' as usize) {
                    self.set_view(*v);
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1),
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::PageDown => self.select(self.selected + page),
            KeyCode::PageUp => self.select(self.selected.saturating_sub(page)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Enter | KeyCode::Right => self.drill_down(),
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left if self.drill.pop().is_some() => {
                self.selected_key = None;
                self.refresh(false);
            }
            KeyCode::Char('w') => {
                self.window = self.window.next();
                self.refresh(true);
            }
            KeyCode::Char('f') => {
                self.frozen = !self.frozen;
                self.refresh(!self.frozen);
            }
            KeyCode::Char('n') => self.set_sort(SortCol::Key),
            KeyCode::Char('o') => self.set_sort(SortCol::Ops),
            KeyCode::Char('s') => self.set_sort(SortCol::Sent),
            KeyCode::Char('r') => self.set_sort(SortCol::Recv),
            KeyCode::Char('t') => self.set_sort(SortCol::Bytes),
            KeyCode::Char('m') => self.set_sort(SortCol::P50),
            KeyCode::Char('l') => self.set_sort(SortCol::P99),
            KeyCode::Char('e') => self.set_sort(SortCol::Errors),
            KeyCode::Char('i') => {
                self.desc = !self.desc;
                self.refresh(true);
            }
            _ => {}
        }
        Action::None
    }

    fn drill_down(&mut self) {
        let Some(row) = self.selected_row() else {
            return;
        };
        let step = match row.key {
            RowKey::Proc(p) => Drill::Process(p),
            RowKey::Conv(c) => Drill::Conversation(c),
            _ => return,
        };
        self.drill.push(step);
        self.selected_key = None;
        self.selected = 0;
        self.refresh(false);
    }
}
