//! The optional columns' text from an event's raw attribution: the cgroup
//! id as a path, the path as a container id. Which columns exist and in
//! what order is the schema's ([`Column`]).

use crate::attribution::cgroup::{CgroupResolver, cgroup2_root};
use crate::attribution::container::container_id;
pub use crate::schema::columns::{Column, Columns};

/// The raw values of the optional columns, as the kernel gave them. A
/// field whose column was not asked for is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub tid: u32,
    pub uid: u32,
    /// cgroup v2 id (the cgroup folder's inode in cgroupfs).
    pub cgroup_id: u64,
    /// The socket's network namespace inode.
    pub netns: u32,
    /// The socket cookie; `None` where the backend has none.
    pub cookie: Option<u64>,
    /// The TCP columns' values; `None` for UDP (and MPTCP), or when no
    /// TCP column was asked for.
    pub tcp: Option<TcpState>,
}

/// What TCP knew at the operation (the `srtt`, `cwnd`, `retrans`, `seq`
/// columns; docs/output.md says at which moment each is read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpState {
    /// `srtt_us >> 3`: the smoothed RTT in µs.
    pub srtt_us: u32,
    /// `snd_cwnd`, in segments.
    pub cwnd: u32,
    /// `total_retrans`: segments retransmitted on this socket so far.
    pub retrans: u32,
    /// The sequence number of the operation's first byte; `None` where it
    /// is not known (a failed operation).
    pub seq: Option<u32>,
}

/// Turns an event's raw attribution into the columns' text: the cgroup id
/// into its path (cached; see [`CgroupResolver`]) and the path into a
/// container id.
pub struct Attribution {
    columns: Columns,
    resolver: Option<CgroupResolver>,
    /// The last cgroup resolved, since consecutive rows mostly share it.
    last: Option<(u64, String)>,
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
        }
    }

    /// For tests: paths are never resolved (every id is `id:NNN`), as on a
    /// host without a cgroup2 mount.
    #[cfg(test)]
    pub fn without_resolver(columns: Columns) -> Self {
        Attribution {
            columns,
            resolver: None,
            last: None,
        }
    }

    pub fn columns(&self) -> Columns {
        self.columns
    }

    /// The cgroup path as /proc/PID/cgroup writes it (`/` is the root), or
    /// `id:NNN` when no cgroup has (or, with no cgroup2 mount, can be
    /// found with) that id.
    pub fn cgroup_path(&mut self, id: u64) -> &str {
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

    /// Each chosen column's text for an event's attribution, in file
    /// order; empty where the value is unknown.
    pub fn values(&mut self, attr: Option<&Attr>) -> Vec<(Column, String)> {
        let has = attr.is_some();
        let attr = attr.copied().unwrap_or_default();
        let mut out = Vec::with_capacity(Column::COUNT);
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
            Column::Srtt | Column::Cwnd | Column::Retrans | Column::Seq => {
                let value = attr.tcp.and_then(|t| match col {
                    Column::Srtt => Some(t.srtt_us),
                    Column::Cwnd => Some(t.cwnd),
                    Column::Retrans => Some(t.retrans),
                    _ => t.seq,
                });
                value.map(|v| v.to_string()).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::NetEvent;

    #[test]
    fn values_and_unknowns() {
        let mut a = Attribution {
            columns: Columns::all(),
            resolver: None,
            last: None,
        };
        let mut ev = crate::capture::event::tests::sample_event();
        ev.attr = Some(Attr {
            tid: 7,
            uid: 1000,
            cgroup_id: 99,
            netns: 4026531840,
            cookie: Some(12345),
            tcp: Some(TcpState {
                srtt_us: 48,
                cwnd: 10,
                retrans: 0,
                seq: Some(4_000_000_000),
            }),
        });
        let csv = |a: &mut Attribution, ev: &NetEvent| -> String {
            a.values(ev.attr.as_ref())
                .iter()
                .map(|(_, t)| format!(",{t}"))
                .collect()
        };
        // No resolver (no cgroup2 mount): the number, and so no container.
        assert_eq!(
            csv(&mut a, &ev),
            ",7,1000,id:99,,4026531840,12345,48,10,0,4000000000"
        );
        // A TCP row whose seq is unknown (a failed send): only seq empty.
        ev.attr = Some(Attr {
            tcp: Some(TcpState {
                seq: None,
                ..ev.attr.unwrap().tcp.unwrap()
            }),
            ..ev.attr.unwrap()
        });
        assert_eq!(csv(&mut a, &ev), ",7,1000,id:99,,4026531840,12345,48,10,0,");
        // UDP: the TCP columns are empty.
        ev.attr = Some(Attr {
            cookie: None,
            netns: 0,
            tcp: None,
            ..ev.attr.unwrap()
        });
        assert_eq!(csv(&mut a, &ev), ",7,1000,id:99,,,,,,,");
        // A record without attribution: every column empty.
        ev.attr = None;
        assert_eq!(csv(&mut a, &ev), ",,,,,,,,,,");
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
            let v = a.values(ev.attr.as_ref());
            assert_eq!(v[0], (Column::Cgroup, format!("/{path}")));
            assert_eq!(v[1], (Column::Container, container.to_string()), "{path}");
        }
        // The root itself is "/", as /proc/PID/cgroup writes it.
        ev.attr = Some(Attr {
            cgroup_id: std::fs::metadata(&root).unwrap().ino(),
            ..Attr::default()
        });
        assert_eq!(a.values(ev.attr.as_ref())[0].1, "/");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
