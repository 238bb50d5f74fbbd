//! The optional attribution of an op (issue #12): thread, uid, cgroup,
//! container, network namespace and socket cookie. A recording has them
//! only when `record --columns` asked for them, and any subset may be
//! there, so every field is an `Option`: `None` means "not recorded", never
//! "zero" or "host".
//!
//! [`Op`](super::Op) stays a small `Copy` value: the two text fields
//! (cgroup path, container id) are interned into a process-wide table and
//! carried as a 4-byte [`Sym`]. Why a global table rather than one per
//! [`Aggregate`](super::Aggregate): the per-file partials of `report` and
//! the frames of `top` merge and copy aggregates freely, and a global id
//! means a key never needs translating between them. The cost is that an
//! interned text lives until the process exits; there is one per distinct
//! cgroup or container seen, which is bounded by what the host ran (a few
//! thousand on a busy Kubernetes node), and each reader caches its own
//! lookups so the table's lock is taken once per distinct text per file.

use std::fmt;
use std::sync::{OnceLock, RwLock};

use crate::attribution::columns::Attribution;
use crate::attribution::container::container_id;
use crate::capture::event::NetEvent;
use crate::schema::columns::{Column, Columns};

use rustc_hash::FxHashMap;

/// An interned text. Equality and hashing are by id (the same text always
/// gets the same id); ordering is by the text, so that sorted output does
/// not depend on which thread interned first.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sym(u32);

#[derive(Default)]
struct Table {
    ids: FxHashMap<&'static str, u32>,
    texts: Vec<&'static str>,
}

fn table() -> &'static RwLock<Table> {
    static T: OnceLock<RwLock<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

impl Sym {
    pub fn intern(text: &str) -> Sym {
        if let Some(&id) = table()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .get(text)
        {
            return Sym(id);
        }
        let mut t = table().write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = t.ids.get(text) {
            return Sym(id);
        }
        let s: &'static str = Box::leak(text.to_owned().into_boxed_str());
        let id = u32::try_from(t.texts.len()).expect("fewer than 4G interned texts");
        t.texts.push(s);
        t.ids.insert(s, id);
        Sym(id)
    }

    pub fn as_str(self) -> &'static str {
        table().read().unwrap_or_else(|e| e.into_inner()).texts[self.0 as usize]
    }
}

impl Ord for Sym {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == other.0 {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl PartialOrd for Sym {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The optional columns, as an op carries them. Build one with
/// [`OpAttr::default`] (nothing recorded) and set what the source
/// knows; the live capture fills it from the event in
/// [`Op::from_event_with`](super::Op::from_event_with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpAttr {
    /// `TID`: the thread.
    pub tid: Option<u32>,
    /// `UID`: the thread's real uid.
    pub uid: Option<u32>,
    /// `Cgroup`: the cgroup v2 path relative to the root (no leading
    /// `/`: the column's `/` root is the empty text here), or `id:NNN`
    /// when it could not be resolved.
    pub cgroup: Option<Sym>,
    /// `Container ID`: `Some` of the empty text when the column was
    /// recorded and the op ran outside any container (the host), `Some`
    /// of the lowercase hex id inside one, `None` when not recorded.
    pub container: Option<Sym>,
    /// `Netns`: the network namespace's inode.
    pub netns: Option<u64>,
    /// `Socket Cookie`: one number per socket for its whole life.
    pub cookie: Option<u64>,
    /// `SRTT us`: the TCP socket's smoothed RTT at the operation, in µs.
    pub srtt_us: Option<u32>,
    /// `CWND`: the TCP socket's congestion window, in segments.
    pub cwnd: Option<u32>,
    /// `Retrans`: the TCP socket's retransmitted segments so far.
    pub retrans: Option<u32>,
    /// `TCP Seq`: the sequence number of the operation's first byte (a
    /// send of N bytes covers `[seq, seq+N)` mod 2^32; the peer's
    /// receive of the same bytes has the same numbers).
    pub seq: Option<u32>,
}

impl OpAttr {
    /// The container id, or `None` for the host; only meaningful when
    /// `container` is `Some`.
    pub fn container_id(&self) -> Option<&'static str> {
        self.container.map(Sym::as_str).filter(|s| !s.is_empty())
    }
}

/// Live `top`'s attribution: each event's optional columns as an op
/// carries them, the same values the CSV columns get, so a live view and a
/// report over the recording agree.
pub struct OpAttribution {
    attribution: Attribution,
    /// The last cgroup's interned path and container id, so that an event
    /// of the same cgroup takes no lock and no hashing.
    last_syms: Option<(u64, Sym, Sym)>,
}

impl OpAttribution {
    pub fn new(columns: Columns) -> Self {
        OpAttribution {
            attribution: Attribution::new(columns),
            last_syms: None,
        }
    }

    /// A cgroup's path (without the column's leading `/`, as OpAttr keeps
    /// it) and container id (empty for the host), interned; cached for the
    /// last cgroup.
    fn cgroup_syms(&mut self, id: u64) -> (Sym, Sym) {
        if let Some((last, cgroup, container)) = self.last_syms
            && last == id
        {
            return (cgroup, container);
        }
        let path = self.attribution.cgroup_path(id);
        let container = Sym::intern(container_id(path).unwrap_or_default());
        let cgroup = Sym::intern(path.strip_prefix('/').unwrap_or(path));
        self.last_syms = Some((id, cgroup, container));
        (cgroup, container)
    }

    /// The chosen columns of `ev` as an op carries them (live `top`): the
    /// same values the CSV columns get, so a live view and a report over
    /// the recording agree.
    pub fn op_attr(&mut self, ev: &NetEvent) -> OpAttr {
        let mut out = OpAttr::default();
        let Some(attr) = ev.attr else { return out };
        let cols = self.attribution.columns();
        if cols.contains(Column::Tid) {
            out.tid = Some(attr.tid);
        }
        if cols.contains(Column::Uid) {
            out.uid = Some(attr.uid);
        }
        if attr.cgroup_id != 0
            && (cols.contains(Column::Cgroup) || cols.contains(Column::Container))
        {
            let (cgroup, container) = self.cgroup_syms(attr.cgroup_id);
            out.container = cols.contains(Column::Container).then_some(container);
            out.cgroup = cols.contains(Column::Cgroup).then_some(cgroup);
        }
        if cols.contains(Column::Netns) && attr.netns != 0 {
            out.netns = Some(u64::from(attr.netns));
        }
        if cols.contains(Column::Cookie) {
            out.cookie = attr.cookie;
        }
        if let Some(tcp) = attr.tcp {
            out.srtt_us = cols.contains(Column::Srtt).then_some(tcp.srtt_us);
            out.cwnd = cols.contains(Column::Cwnd).then_some(tcp.cwnd);
            out.retrans = cols.contains(Column::Retrans).then_some(tcp.retrans);
            out.seq = tcp.seq.filter(|_| cols.contains(Column::Seq));
        }
        out
    }
}

/// Normalises a cgroup path the way the `Cgroup` column writes it:
/// relative to the root, without leading or trailing `/`. The root itself
/// is the empty text.
pub fn normalize_cgroup(path: &str) -> &str {
    path.trim_matches('/')
}

/// Does the op's cgroup `have` lie in `want` or below it? `want` is
/// normalised; the root (empty) holds every resolved path. An unresolved
/// `id:NNN` only matches itself.
pub fn cgroup_within(have: &str, want: &str) -> bool {
    let have = normalize_cgroup(have);
    if have.starts_with("id:") || want.starts_with("id:") {
        return have == want;
    }
    want.is_empty()
        || have == want
        || (have.len() > want.len()
            && have.starts_with(want)
            && have.as_bytes()[want.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::Attr;

    #[test]
    fn op_attr_follows_each_events_cgroup() {
        // No cgroup2 resolver here: ids stay id:NNN.
        let mut a = OpAttribution {
            attribution: Attribution::without_resolver(Columns::all()),
            last_syms: None,
        };
        let mut ev = crate::capture::event::tests::sample_event();
        let mut cgroup_of = |id: u64| {
            ev.attr = Some(Attr {
                cgroup_id: id,
                cookie: Some(5),
                ..Attr::default()
            });
            let o = a.op_attr(&ev);
            assert_eq!(o.cookie, Some(5));
            assert_eq!(o.container_id(), None, "no resolver: no container");
            o.cgroup.map(Sym::as_str)
        };
        // The cached symbols must never answer for another cgroup.
        assert_eq!(cgroup_of(11), Some("id:11"));
        assert_eq!(cgroup_of(11), Some("id:11"));
        assert_eq!(cgroup_of(12), Some("id:12"));
        assert_eq!(cgroup_of(11), Some("id:11"));
    }

    #[test]
    fn interning_gives_one_id_per_text_and_orders_by_text() {
        let b = Sym::intern("b-attr-test");
        let a = Sym::intern("a-attr-test");
        assert_eq!(Sym::intern("b-attr-test"), b);
        assert_ne!(a, b);
        assert_eq!(a.as_str(), "a-attr-test");
        // Interned after b, yet sorts first.
        assert!(a < b);
        assert_eq!(format!("{a}"), "a-attr-test");
    }

    #[test]
    fn cgroup_descendants() {
        let docker = "system.slice/docker-0123.scope";
        assert!(cgroup_within(docker, "system.slice"));
        assert!(cgroup_within(docker, docker));
        assert!(cgroup_within(&format!("/{docker}/"), docker));
        assert!(cgroup_within(docker, ""));
        // A sibling whose name merely starts the same is not below it.
        assert!(!cgroup_within("system.slice2/x", "system.slice"));
        assert!(!cgroup_within("system", "system.slice"));
        assert!(!cgroup_within("user.slice", "system.slice"));
        // Unresolved ids match only themselves, not the root.
        assert!(cgroup_within("id:42", "id:42"));
        assert!(!cgroup_within("id:42", ""));
        assert!(!cgroup_within("id:421", "id:42"));
    }
}
