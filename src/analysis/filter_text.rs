//! The one-line filter syntax of `top`'s `/` box, with the same meaning as
//! `report`'s options: `pid:123 comm:nginx port:443 proto:tcp dir:send`.
//!
//! Words of the same kind are alternatives (`port:80 port:443` is either
//! port, like repeating `--port`); different kinds must all match. Words
//! are separated by spaces; an empty text matches everything.
//!
//! Every filter flag has its word, named like the flag (see
//! [`op_filter`](super::op_filter)): `ip-version:6` (or `ipv:6`),
//! `cgroup:system.slice`, `container:3f4e1c2b9a8d`, `exclude-comm:sshd`,
//! and `netns:4026531840`, which report also takes as `--netns`.

use super::Filter;
use super::op_filter::{parse_cgroup, parse_comm, parse_container, parse_ip_version, parse_port};
use crate::schema::{Direction, Protocol};

const KINDS: &str =
    "pid, comm, exclude-comm, port, proto, ip-version, dir, cgroup, container or netns";

/// Parses the filter text. The error says which word is wrong and why.
pub fn parse_filter(text: &str) -> Result<Filter, String> {
    let mut f = Filter::default();
    for word in text.split_whitespace() {
        let Some((kind, value)) = word.split_once(':') else {
            return Err(format!(
                "{word:?}: write kind:value, e.g. pid:123 comm:nginx port:443 proto:tcp dir:send"
            ));
        };
        if value.is_empty() {
            return Err(format!("{word:?}: the value is missing"));
        }
        match kind.to_ascii_lowercase().as_str() {
            "pid" => f.pids.push(
                value
                    .parse()
                    .map_err(|_| format!("{word:?}: a pid is a number"))?,
            ),
            "comm" => {
                if value.len() > 15 {
                    return Err(format!("{word:?}: a comm is at most 15 bytes"));
                }
                f.comms.push(value.to_string());
            }
            "port" => f
                .ports
                .push(parse_port(value).map_err(|e| format!("{word:?}: {e}"))?),
            "exclude-comm" => f
                .exclude_comms
                .push(parse_comm(value).map_err(|e| format!("{word:?}: {e}"))?),
            "ip-version" | "ipv" => {
                let v = parse_ip_version(value).map_err(|e| format!("{word:?}: {e}"))?;
                if f.ip_version.is_some_and(|w| w != v) {
                    return Err(format!("{word:?}: only one IP version at a time"));
                }
                f.ip_version = Some(v);
            }
            "cgroup" => f
                .cgroups
                .push(parse_cgroup(value).map_err(|e| format!("{word:?}: {e}"))?),
            "container" => f
                .containers
                .push(parse_container(value).map_err(|e| format!("{word:?}: {e}"))?),
            "netns" => f.netns.push(
                value
                    .parse()
                    .map_err(|_| format!("{word:?}: a netns is its inode number"))?,
            ),
            "proto" | "protocol" => {
                let p = match value.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return Err(format!("{word:?}: the protocol is tcp or udp")),
                };
                if f.protocol.is_some_and(|q| q != p) {
                    return Err(format!("{word:?}: only one protocol at a time"));
                }
                f.protocol = Some(p);
            }
            "dir" | "direction" => {
                let d = match value.to_ascii_lowercase().as_str() {
                    "send" => Direction::Send,
                    "receive" | "recv" => Direction::Receive,
                    _ => return Err(format!("{word:?}: the direction is send or receive")),
                };
                if f.direction.is_some_and(|e| e != d) {
                    return Err(format!("{word:?}: only one direction at a time"));
                }
                f.direction = Some(d);
            }
            _ => {
                return Err(format!("{word:?}: unknown kind {kind:?}; use {KINDS}"));
            }
        }
    }
    Ok(f)
}

/// The canonical text of a filter (what `parse_filter` reads back);
/// time bounds are not part of this syntax and are left out.
pub fn filter_text(f: &Filter) -> String {
    let mut words: Vec<String> = Vec::new();
    words.extend(f.pids.iter().map(|p| format!("pid:{p}")));
    words.extend(f.comms.iter().map(|c| format!("comm:{c}")));
    words.extend(f.exclude_comms.iter().map(|c| format!("exclude-comm:{c}")));
    words.extend(f.ports.iter().map(|p| format!("port:{p}")));
    if let Some(p) = f.protocol {
        words.push(format!("proto:{}", p.as_str().to_ascii_lowercase()));
    }
    if let Some(v) = f.ip_version {
        words.push(format!("ip-version:{v}"));
    }
    if let Some(d) = f.direction {
        words.push(format!("dir:{}", d.as_str().to_ascii_lowercase()));
    }
    // The root cgroup is the empty path; `/` reads back as it.
    words.extend(f.cgroups.iter().map(|c| format!("cgroup:/{c}")));
    words.extend(f.containers.iter().map(|c| format!("container:{c}")));
    words.extend(f.netns.iter().map(|n| format!("netns:{n}")));
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let f = parse_filter("pid:123 comm:nginx port:443 port:80 proto:TCP dir:send").unwrap();
        assert_eq!(f.pids, [123]);
        assert_eq!(f.comms, ["nginx"]);
        assert_eq!(f.ports, [443, 80]);
        assert_eq!(f.protocol, Some(Protocol::Tcp));
        assert_eq!(f.direction, Some(Direction::Send));
        assert_eq!(
            filter_text(&f),
            "pid:123 comm:nginx port:443 port:80 proto:tcp dir:send"
        );
        assert_eq!(
            parse_filter("dir:recv").unwrap().direction,
            Some(Direction::Receive)
        );
        assert!(parse_filter("   ").unwrap().is_empty());

        let text = "comm:a exclude-comm:sshd port:6379 ip-version:6 \
                    cgroup:/system.slice/docker-1.scope cgroup:/ container:3f4e1c2b9a8d netns:4026531840";
        let f = parse_filter(text).unwrap();
        assert_eq!(f.exclude_comms, ["sshd"]);
        assert_eq!(f.ip_version, Some(6));
        assert_eq!(f.cgroups, ["system.slice/docker-1.scope", ""]);
        assert_eq!(f.containers, ["3f4e1c2b9a8d"]);
        assert_eq!(f.netns, [4026531840]);
        assert_eq!(
            filter_text(&f),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(parse_filter("ipv:4").unwrap().ip_version, Some(4));
        assert_eq!(
            parse_filter("container:3F4E1C2B9A8D").unwrap().containers,
            ["3f4e1c2b9a8d"]
        );
        for bad in [
            "pid",
            "pid:x",
            "port:70000",
            "proto:icmp",
            "dir:up",
            "host:a",
            "comm:",
            "proto:tcp proto:udp",
            "comm:0123456789abcdef",
            "ip-version:5",
            "ipv:4 ipv:6",
            "container:3f4e1c2b9a8",
            "container:zzzzzzzzzzzz",
            "cgroup:a/../b",
            "netns:x",
            "exclude-comm:0123456789abcdef",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
