//! The optional columns' text from an event's raw attribution: the cgroup
//! id as a path, the path as a container id. Which columns exist and in
//! what order is the schema's ([`Column`]).

use crate::analysis::attr::Sym;
use crate::attribution::cgroup::{CgroupResolver, cgroup2_root};
use crate::attribution::container::container_id;
use crate::capture::event::{Attr, NetEvent};
pub use crate::schema::columns::{Column, Columns};

/// Turns an event's raw attribution into the columns' text: the cgroup id
/// into its path (cached; see [`CgroupResolver`]) and the path into a
/// container id.
pub struct Attribution {
    columns: Columns,
    resolver: Option<CgroupResolver>,
    /// The last cgroup resolved, since consecutive rows mostly share it.
    last: Option<(u64, String)>,
    /// The last cgroup's interned path and container id (live `top`), so
    /// that an event of the same cgroup takes no lock and no hashing.
    last_syms: Option<(u64, Sym, Sym)>,
}

impl Attribution {
    pub fn new(columns: Columns) -> Self {
        let needs_paths = columns.contains(Column::Cgroup) || columns.contains(Column::Container);
        Attribution {
            columns,
            resolver: needs_paths
                .then(cgroup2_root)
                .flatten()
                .map(CgroupResolver::new),
            last: None,
            last_syms: None,
        }
    }

    pub fn columns(&self) -> Columns {
        self.columns
    }

    /// The cgroup path as /proc/PID/cgroup writes it (`/` is the root), or
    /// `id:NNN` when no cgroup has (or, with no cgroup2 mount, can be
    /// found with) that id.
    fn cgroup_path(&mut self, id: u64) -> &str {
        if self.last.as_ref().is_none_or(|(last, _)| *last != id) {
            let path = match self.resolver.as_mut() {
                Some(r) => {
                    let p = r.resolve(id);
                    if p.starts_with("id:") {
                        p
                    } else {
                        format!("/{p}")
                    }
                }
                None => format!("id:{id}"),
            };
            self.last = Some((id, path));
        }
        &self.last.as_ref().expect("set above").1
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
        let path = self.cgroup_path(id);
        let container = Sym::intern(container_id(path).unwrap_or_default());
        let cgroup = Sym::intern(path.strip_prefix('/').unwrap_or(path));
        self.last_syms = Some((id, cgroup, container));
        (cgroup, container)
    }

    /// The chosen columns of `ev` as an op carries them (live `top`): the
    /// same values the CSV columns get, so a live view and a report over
    /// the recording agree.
    pub fn op_attr(&mut self, ev: &NetEvent) -> crate::analysis::OpAttr {
        let mut out = crate::analysis::OpAttr::default();
        let Some(attr) = ev.attr else { return out };
        let cols = self.columns;
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
        out
    }

    /// Each chosen column's text for `ev`, in file order; empty where the
    /// value is unknown.
    pub fn values(&mut self, ev: &NetEvent) -> Vec<(Column, String)> {
        let attr = ev.attr.unwrap_or_default();
        let has = ev.attr.is_some();
        let mut out = Vec::with_capacity(6);
        for col in self.columns.iter() {
            let text = if !has {
                String::new()
            } else {
                self.text(col, &attr)
            };
            out.push((col, text));
        }
        out
    }

    fn text(&mut self, col: Column, attr: &Attr) -> String {
        match col {
            Column::Tid => attr.tid.to_string(),
            Column::Uid => attr.uid.to_string(),
            Column::Cgroup if attr.cgroup_id == 0 => String::new(),
            Column::Cgroup => self.cgroup_path(attr.cgroup_id).to_string(),
            Column::Container if attr.cgroup_id == 0 => String::new(),
            Column::Container => container_id(self.cgroup_path(attr.cgroup_id))
                .unwrap_or_default()
                .to_string(),
            Column::Netns if attr.netns == 0 => String::new(),
            Column::Netns => attr.netns.to_string(),
            Column::Cookie => attr.cookie.map(|c| c.to_string()).unwrap_or_default(),
        }
    }

    /// Appends `,value` for each chosen column (RFC 4180 quoting).
    pub fn write_csv(&mut self, out: &mut Vec<u8>, ev: &NetEvent) {
        for (_, text) in self.values(ev) {
            out.push(b',');
            crate::output::row::write_csv_field(out, text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_attr_follows_each_events_cgroup() {
        let mut a = Attribution {
            columns: Columns::all(),
            resolver: None,
            last: None,
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
    fn values_and_unknowns() {
        let mut a = Attribution {
            columns: Columns::all(),
            resolver: None,
            last: None,
            last_syms: None,
        };
        let mut ev = crate::capture::event::tests::sample_event();
        ev.attr = Some(Attr {
            tid: 7,
            uid: 1000,
            cgroup_id: 99,
            netns: 4026531840,
            cookie: Some(12345),
        });
        let mut out = Vec::new();
        a.write_csv(&mut out, &ev);
        // No resolver (no cgroup2 mount): the number, and so no container.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ",7,1000,id:99,,4026531840,12345"
        );
        ev.attr = Some(Attr {
            cookie: None,
            netns: 0,
            ..ev.attr.unwrap()
        });
        let mut out = Vec::new();
        a.write_csv(&mut out, &ev);
        assert_eq!(String::from_utf8(out).unwrap(), ",7,1000,id:99,,,");
        // A record without attribution: every column empty.
        ev.attr = None;
        let mut out = Vec::new();
        a.write_csv(&mut out, &ev);
        assert_eq!(String::from_utf8(out).unwrap(), ",,,,,,");
    }

    #[test]
    fn cgroup_paths_and_container_ids_of_each_runtime() {
        use std::os::unix::fs::MetadataExt;
        let id = "3f9c1b2a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
        let root = std::env::temp_dir().join(format!("nwtrace-columns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let samples = [
            (format!("system.slice/docker-{id}.scope"), id),
            (
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{id}.scope"
                ),
                id,
            ),
            (
                format!("kubepods.slice/kubepods-pod0a1b.slice/crio-{id}.scope"),
                id,
            ),
            (format!("machine.slice/libpod-{id}.scope"), id),
            (format!("machine.slice/libpod-conmon-{id}.scope"), ""),
            ("user.slice/user-1000.slice/session-3.scope".to_string(), ""),
        ];
        let mut a = Attribution {
            columns: Columns::parse("cgroup,container").unwrap(),
            resolver: Some(CgroupResolver::new(root.clone())),
            last: None,
            last_syms: None,
        };
        let mut ev = crate::capture::event::tests::sample_event();
        for (path, _) in &samples {
            std::fs::create_dir_all(root.join(path)).unwrap();
        }
        for (path, container) in &samples {
            let ino = std::fs::metadata(root.join(path)).unwrap().ino();
            ev.attr = Some(Attr {
                cgroup_id: ino,
                ..Attr::default()
            });
            let v = a.values(&ev);
            assert_eq!(v[0], (Column::Cgroup, format!("/{path}")));
            assert_eq!(v[1], (Column::Container, container.to_string()), "{path}");
        }
        // The root itself is "/", as /proc/PID/cgroup writes it.
        ev.attr = Some(Attr {
            cgroup_id: std::fs::metadata(&root).unwrap().ino(),
            ..Attr::default()
        });
        assert_eq!(a.values(&ev)[0].1, "/");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
