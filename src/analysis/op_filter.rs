//! The filter flags of issue #12, shared by every command that takes them
//! so that their names, values and errors are the same everywhere:
//! `--port N` (local or remote; repeatable), `--protocol tcp|udp`,
//! `--ip-version 4|6`, `--direction send|receive`, `--cgroup PATH` (that
//! cgroup and its descendants; repeatable), `--container ID` (a prefix of
//! at least 12 hex digits; repeatable), `--exclude-comm COMM`
//! (repeatable).
//!
//! `record` runs them in the kernel; `report` and `top` run the same
//! words on [`Op`](super::Op)s through [`Filter`]. `--pid` and `--comm`
//! are not here: they belong to `CaptureArgs` (top, record, watch) and to
//! `report`'s own arguments.
//!
//! The value parsers are also what the `/` box of top and `--filter`
//! (see [`filter_text`](super::filter_text)) use, so a bad value reads the
//! same in both.

use clap::Args;

use super::Filter;
use crate::schema::{Direction, Protocol};

/// The filter flags. Flatten into a command's arguments with
/// `#[command(flatten)]`.
#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// Only ops whose local or remote port is this. Repeatable.
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port)]
    pub ports: Vec<u16>,

    /// Only this protocol.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,

    /// Only IPv4 or only IPv6 (as the row's IP Version: an IPv4-mapped
    /// peer on an IPv6 socket is 4).
    #[arg(long, value_name = "4|6", value_parser = parse_ip_version)]
    pub ip_version: Option<u8>,

    /// Only sends or only receives.
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,

    /// Only ops in this cgroup (v2 path relative to the root, like
    /// system.slice/nginx.service) or below it. Repeatable.
    #[arg(long = "cgroup", value_name = "PATH", value_parser = parse_cgroup)]
    pub cgroups: Vec<String>,

    /// Only ops in this container: its id or a prefix of at least 12 hex
    /// digits. Repeatable.
    #[arg(long = "container", value_name = "ID", value_parser = parse_container)]
    pub containers: Vec<String>,

    /// Leave out threads with this exact command name. Repeatable.
    #[arg(long = "exclude-comm", value_name = "COMM", value_parser = parse_comm)]
    pub exclude_comms: Vec<String>,
}

impl FilterArgs {
    /// Adds these flags to `f` (AND with what is there; values of one
    /// kind add alternatives).
    pub fn apply(&self, f: &mut Filter) {
        f.ports.extend(&self.ports);
        if let Some(p) = self.protocol {
            f.protocol = Some(p);
        }
        if let Some(v) = self.ip_version {
            f.ip_version = Some(v);
        }
        if let Some(d) = self.direction {
            f.direction = Some(d);
        }
        f.cgroups.extend(self.cgroups.iter().cloned());
        f.containers.extend(self.containers.iter().cloned());
        f.exclude_comms.extend(self.exclude_comms.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        let mut f = Filter::default();
        self.apply(&mut f);
        f.is_empty()
    }
}

/// No row has port 0 (an unknown port is an empty field), so 0 is a
/// mistake, refused as record always refused it.
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("{text:?}: a port is a number from 1 to 65535")),
        Ok(p) => Ok(p),
    }
}

pub fn parse_ip_version(text: &str) -> Result<u8, String> {
    match text {
        "4" => Ok(4),
        "6" => Ok(6),
        _ => Err(format!("{text:?}: the IP version is 4 or 6")),
    }
}

/// A cgroup v2 path, relative to the root (a leading `/` is allowed and
/// dropped), or an unresolved `id:NNN` as the Cgroup column writes it.
pub fn parse_cgroup(text: &str) -> Result<String, String> {
    // A folder under this host's cgroup2 mount, as record also takes it
    // (and as its --cgroup keeps it), is the same path from the root.
    let under_mount = crate::attribution::cgroup::cgroup2_root().and_then(|root| {
        std::path::Path::new(text)
            .strip_prefix(&root)
            .ok()
            .map(|rel| rel.to_string_lossy().into_owned())
    });
    let t = super::attr::normalize_cgroup(under_mount.as_deref().unwrap_or(text));
    if text.is_empty() {
        return Err("a cgroup is a path like system.slice/nginx.service".into());
    }
    if let Some(id) = t.strip_prefix("id:") {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?}: an unresolved cgroup is id:NUMBER"));
        }
        return Ok(t.to_string());
    }
    if t.split('/').any(|c| c == "." || c == ".." || c.is_empty()) && !t.is_empty() {
        return Err(format!(
            "{text:?}: a cgroup path has no empty, . or .. components"
        ));
    }
    Ok(t.to_string())
}

/// A container id or a prefix of one: 12 to 64 hex digits, kept
/// lowercase.
/// (The same check as the recorder's: `attribution::container`.)
pub fn parse_container(text: &str) -> Result<String, String> {
    crate::attribution::container::parse_container_prefix(text)
}

pub fn parse_comm(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 15 {
        return Err(format!(
            "{text:?}: a command name is 1 to 15 bytes (the kernel truncates longer ones)"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{Op, OpAttr, Sym};
    use super::*;
    use crate::schema::{Comm, Endpoint};
    use clap::Parser;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: FilterArgs,
    }

    fn parse(args: &[&str]) -> Result<Filter, String> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut f = Filter::default();
        t.f.apply(&mut f);
        Ok(f)
    }

    const C1: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const C2: &str = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990";

    fn op(
        local_port: u16,
        remote_port: u16,
        proto: Protocol,
        v6: bool,
        dir: Direction,
        comm: &str,
    ) -> Op {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        Op {
            machine: 0,
            ts_ns: 0,
            pid: 1,
            comm: Comm::from_text(comm.as_bytes()),
            protocol: proto,
            ip_version: if v6 { 6 } else { 4 },
            local: Endpoint {
                addr,
                port: local_port,
            },
            remote: Some(Endpoint {
                addr,
                port: remote_port,
            }),
            size: 1,
            direction: dir,
            latency_ns: None,
            errno: None,
            msg_flags: None,
            attr: OpAttr::default(),
        }
    }

    fn with(mut o: Op, cgroup: Option<&str>, container: Option<&str>, netns: Option<u64>) -> Op {
        o.attr.cgroup = cgroup.map(Sym::intern);
        o.attr.container = container.map(Sym::intern);
        o.attr.netns = netns;
        o
    }

    #[test]
    fn each_kind_keeps_exactly_its_ops() {
        use Direction::*;
        use Protocol::*;
        let ops = [
            op(40000, 6379, Tcp, false, Send, "redis-cli"),
            op(6379, 40000, Tcp, false, Receive, "redis-server"),
            op(5353, 53, Udp, true, Send, "dnsmasq"),
            op(443, 51000, Tcp, true, Receive, "nginx"),
        ];
        let kept = |args: &[&str]| -> Vec<usize> {
            let f = parse(args).unwrap();
            (0..ops.len()).filter(|&i| f.matches(&ops[i])).collect()
        };
        assert_eq!(kept(&[]), [0, 1, 2, 3]);
        // local or remote port
        assert_eq!(kept(&["--port", "6379"]), [0, 1]);
        // OR within a kind
        assert_eq!(kept(&["--port", "53", "--port", "443"]), [2, 3]);
        assert_eq!(kept(&["--protocol", "udp"]), [2]);
        assert_eq!(kept(&["--ip-version", "6"]), [2, 3]);
        assert_eq!(kept(&["--ip-version", "4"]), [0, 1]);
        assert_eq!(kept(&["--direction", "receive"]), [1, 3]);
        assert_eq!(kept(&["--exclude-comm", "nginx"]), [0, 1, 2]);
        assert_eq!(
            kept(&["--exclude-comm", "nginx", "--exclude-comm", "dnsmasq"]),
            [0, 1]
        );
        // AND across kinds
        assert_eq!(kept(&["--port", "6379", "--direction", "send"]), [0]);
        assert_eq!(kept(&["--ip-version", "6", "--protocol", "tcp"]), [3]);
        assert_eq!(
            kept(&["--port", "6379", "--ip-version", "6"]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn cgroup_container_and_netns() {
        use Direction::*;
        use Protocol::*;
        let base = op(1, 2, Tcp, false, Send, "x");
        let docker = format!("system.slice/docker-{C1}.scope");
        let ops = [
            with(base, Some(&docker), Some(C1), Some(4026531840)),
            with(
                base,
                Some("kubepods.slice/kubepods-pod1.slice/cri-containerd-aaaabbbbcccc.scope"),
                Some(C2),
                Some(4026532000),
            ),
            // the host: the column was recorded, no container
            with(
                base,
                Some("user.slice/user-1000.slice/session-2.scope"),
                Some(""),
                Some(4026531840),
            ),
            with(base, Some("id:1234"), Some(""), None),
            // a row from a recording without the columns
            base,
        ];
        let kept = |args: &[&str]| -> Vec<usize> {
            let f = parse(args).unwrap();
            (0..ops.len()).filter(|&i| f.matches(&ops[i])).collect()
        };
        assert_eq!(kept(&["--cgroup", "system.slice"]), [0]);
        assert_eq!(kept(&["--cgroup", "/system.slice/"]), [0]);
        assert_eq!(kept(&["--cgroup", &docker]), [0]);
        assert_eq!(
            kept(&["--cgroup", "kubepods.slice", "--cgroup", "user.slice"]),
            [1, 2]
        );
        // the root holds every resolved path, not the unresolved id
        assert_eq!(kept(&["--cgroup", "/"]), [0, 1, 2]);
        assert_eq!(kept(&["--cgroup", "id:1234"]), [3]);
        assert_eq!(kept(&["--container", &C1[..12]]), [0]);
        assert_eq!(kept(&["--container", &C1.to_ascii_uppercase()[..20]]), [0]);
        assert_eq!(kept(&["--container", C1, "--container", &C2[..12]]), [0, 1]);
        assert_eq!(kept(&["--container", "000000000000"]), Vec::<usize>::new());
        assert_eq!(
            kept(&["--container", &C1[..12], "--cgroup", "user.slice"]),
            Vec::<usize>::new()
        );
        let mut f = Filter::default();
        f.netns.push(4026531840);
        assert_eq!(
            (0..ops.len())
                .filter(|&i| f.matches(&ops[i]))
                .collect::<Vec<_>>(),
            [0, 2]
        );
    }

    /// record's --cgroup also takes a folder under the cgroup2 mount: the
    /// same cgroup as its path from the root.
    #[test]
    fn a_cgroup_under_the_mount_is_its_path_from_the_root() {
        let Some(root) = crate::attribution::cgroup::cgroup2_root() else {
            return; // no cgroup2 mount here
        };
        let abs = root.join("system.slice/nginx.service");
        assert_eq!(
            parse_cgroup(abs.to_str().unwrap()).unwrap(),
            "system.slice/nginx.service"
        );
        assert_eq!(parse_cgroup(root.to_str().unwrap()).unwrap(), "");
        assert_eq!(parse_cgroup("/system.slice/").unwrap(), "system.slice");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--port", "70000"][..],
            &["--port", "0"],
            &["--port", "x"],
            &["--protocol", "icmp"],
            &["--ip-version", "5"],
            &["--direction", "up"],
            &["--container", "abc"],
            &["--container", "3f4e1c2b9a8z"],
            &["--cgroup", ""],
            &["--cgroup", "a/../b"],
            &["--cgroup", "id:x"],
            &["--exclude-comm", "0123456789abcdef"],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?}"));
            assert!(e.starts_with("error: invalid value"), "{bad:?}: {e}");
        }
    }
}
