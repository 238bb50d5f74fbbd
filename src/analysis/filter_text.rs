//! The one-line filter syntax of `top`'s `/` box, with the same meaning as
//! `report`'s options: `pid:123 comm:nginx port:443 proto:tcp dir:send`.
//!
//! Words of the same kind are alternatives (`port:80 port:443` is either
//! port, like repeating `--port`); different kinds must all match. Words
//! are separated by spaces; an empty text matches everything.

use super::Filter;
use crate::schema::{Direction, Protocol};

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
            "port" => f.ports.push(
                value
                    .parse()
                    .map_err(|_| format!("{word:?}: a port is a number from 0 to 65535"))?,
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
                return Err(format!(
                    "{word:?}: unknown kind {kind:?}; use pid, comm, port, proto or dir"
                ));
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
    words.extend(f.ports.iter().map(|p| format!("port:{p}")));
    if let Some(p) = f.protocol {
        words.push(format!("proto:{}", p.as_str().to_ascii_lowercase()));
    }
    if let Some(d) = f.direction {
        words.push(format!("dir:{}", d.as_str().to_ascii_lowercase()));
    }
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
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
