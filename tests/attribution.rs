//! Attribution as root: a process moved into a cgroup named the way docker
//! names its scopes is resolved, from the cgroup's id, to the path the
//! kernel itself reports for it, and to that container id; a process in a
//! network namespace of its own gets that namespace and its socket cookies.

use nwtrace_testkit as common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use nwtrace::attribution::cgroup::{CgroupResolver, cgroup2_root};
use nwtrace::attribution::container::container_id;

#[test]
fn a_docker_named_cgroup_resolves_to_its_path_and_container() {
    if skip_without_root("a_docker_named_cgroup_resolves_to_its_path_and_container") {
        return;
    }
    let root = cgroup2_root().expect("a cgroup2 mount (cgroup v2 or hybrid)");
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let parent = root.join(format!("nwtrace-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).expect("making a cgroup");

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(scope.join("cgroup.procs"), child.id().to_string()).expect("moving into it");
    // The kernel's own view: "0::/<path>" in /proc/PID/cgroup.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let kernel_path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .expect("a cgroup v2 line")
        .to_string();

    let mut resolver = CgroupResolver::new(root.clone());
    let cgroup_id = std::fs::metadata(&scope).unwrap().ino();
    let resolved = resolver.resolve(cgroup_id);

    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir(&scope).unwrap();
    std::fs::remove_dir(&parent).unwrap();

    assert_eq!(resolved, kernel_path);
    assert_eq!(container_id(&resolved), Some(id));
}

/// A process of its own network namespace (`unshare -n`, loopback up)
/// gets that namespace's inode in the Netns column, not the host's; its
/// two sockets get the cookies that getsockopt(SO_COOKIE) gives them,
/// where the backend has cookies.
#[test]
fn a_process_in_its_own_netns_and_its_socket_cookies() {
    if skip_without_root("a_process_in_its_own_netns_and_its_socket_cookies") {
        return;
    }
    let comm = "nwt-netns-proc";
    let (dir, mut tracer) = {
        let dir = scratch_dir("attr-netns");
        let t = Tracer::start(&dir, &["--comm", comm, "--columns", "netns,cookie"]);
        (dir, t)
    };
    // The child names itself, then sends one datagram each way between two
    // UDP sockets on its own loopback, and prints its namespace inode and
    // each socket's local port and SO_COOKIE.
    let script = format!(
        r#"
import ctypes, os, socket
ctypes.CDLL(None).prctl(15, b"{comm}", 0, 0, 0)
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.0.1", 0))
a.sendto(b"x" * 5, b.getsockname()); b.recvfrom(100)
b.sendto(b"y" * 6, a.getsockname()); a.recvfrom(100)
cookie = lambda s: int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
print(os.stat("/proc/self/ns/net").st_ino)
for s in (a, b):
    print(s.getsockname()[1], cookie(s))
"#
    );
    let out = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec python3 -c \"$0\"",
        ])
        .arg(&script)
        .output()
        .expect("running unshare -n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tracer.stop(), 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let netns = lines.next().unwrap().to_string();
    let cookies: Vec<(String, String)> = lines
        .map(|l| {
            let (p, c) = l.split_once(' ').unwrap();
            (p.to_string(), c.to_string())
        })
        .collect();
    let host_netns = std::fs::metadata("/proc/self/ns/net")
        .unwrap()
        .ino()
        .to_string();
    assert_ne!(netns, host_netns, "the child has a namespace of its own");

    let rows: Vec<Row> = csv_files(&dir)
        .iter()
        .flat_map(|f| read_rows_with(f, &["Netns", "Socket Cookie"]))
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let manifest = tracer.manifest();
    let cookies_known = matches!(manifest["backend"].as_str(), Some("tracepoint" | "fentry"))
        && std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| {
                let mut it = r.trim().split(['.', '-']).map(|p| p.parse::<u32>().ok());
                Some((it.next()??, it.next()??))
            })
            .is_some_and(|v| v >= (5, 12));
    for r in &rows {
        assert_eq!(r.fields[14], netns, "{r:?}");
        let local = match r.get("Direction") {
            "send" => r.get("Source Port"),
            _ => r.get("Destination Port"),
        };
        let want = cookies
            .iter()
            .find(|(p, _)| p == local)
            .map(|(_, c)| c.as_str());
        if cookies_known {
            assert_eq!(Some(r.fields[15].as_str()), want, "{r:?}");
        } else {
            assert_eq!(r.fields[15], "", "{r:?}");
        }
    }
    assert_ne!(cookies[0].1, cookies[1].1, "two sockets, two cookies");
}
