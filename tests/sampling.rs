//! Root integration tests of `--sample` and `--rate-limit` (docs/sampling.md):
//! real traffic under the real tracer, the oracle being what the syscalls
//! returned, and an unsampled recorder of the same traffic beside the
//! sampled one.
//!
//! Each scenario runs in a thread of its own name and its recorders trace
//! only that name (`--comm`), so scenarios and other tracers do not mix.

use nwtrace_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;

use common::*;
use nwtrace::capture::event::Protocol;
use nwtrace::capture::sampling::flow_kept;

/// A flow: protocol and its two endpoints, in a fixed order.
type Flow = (String, (String, u16), (String, u16));

fn flow(protocol: &str, a: SocketAddr, b: SocketAddr) -> Flow {
    let x = (a.ip().to_string(), a.port());
    let y = (b.ip().to_string(), b.port());
    (protocol.to_string(), x.clone().min(y.clone()), x.max(y))
}

/// What the syscalls returned: one op per entry.
#[derive(Default)]
struct Truth {
    ops: Vec<(Flow, &'static str, u64)>,
}

impl Truth {
    fn op(
        &mut self,
        protocol: &str,
        dir: &'static str,
        local: SocketAddr,
        peer: SocketAddr,
        n: usize,
    ) {
        self.ops.push((flow(protocol, local, peer), dir, n as u64));
    }

    fn per_flow(&self) -> BTreeMap<Flow, u64> {
        let mut m = BTreeMap::new();
        for (f, _, _) in &self.ops {
            *m.entry(f.clone()).or_default() += 1;
        }
        m
    }

    fn bytes(&self, dir: &str) -> u64 {
        self.ops.iter().filter(|o| o.1 == dir).map(|o| o.2).sum()
    }
}

fn row_flow(r: &Row) -> Flow {
    let a: IpAddr = r.get("Source Address").parse().expect("source address");
    let b: IpAddr = r
        .get("Destination Address")
        .parse()
        .expect("destination address");
    let pa: u16 = r.get("Source Port").parse().expect("source port");
    let pb: u16 = r.get("Destination Port").parse().expect("destination port");
    flow(
        r.get("Protocol"),
        SocketAddr::new(a, pa),
        SocketAddr::new(b, pb),
    )
}

fn rows_per_flow(dir: &Path) -> BTreeMap<Flow, u64> {
    let mut m = BTreeMap::new();
    for f in csv_files(dir) {
        for r in read_rows(&f) {
            *m.entry(row_flow(&r)).or_default() += 1;
        }
    }
    m
}

fn summary(dir: &Path) -> serde_json::Value {
    let path = find_file(dir, "summary.json")
        .unwrap_or_else(|| panic!("no summary.json under {}", dir.display()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("summary JSON")
}

/// Runs `f` in a thread named `name` (its Command in the rows).
fn in_thread<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawning the scenario thread")
        .join()
        .expect("the scenario thread panicked")
}

/// `tcp` connections (100 bytes each way) and `udp` peers (3 datagrams of
/// 64 bytes to one server socket, each answered with 32 bytes), both ends
/// in this thread, on loopback.
fn loopback_traffic(tcp: usize, udp: usize) -> Truth {
    let mut t = Truth::default();
    // Every socket stays open to the end, so that no port is used twice
    // (two flows on the same ports would be one).
    let mut open_tcp = Vec::new();
    let mut open_udp = Vec::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    for _ in 0..tcp {
        let mut c = TcpStream::connect(to).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
        let mut buf = [0u8; 100];
        let n = c.write(&[1u8; 100]).unwrap();
        t.op("TCP", "send", cl, sl, n);
        // One read on loopback (a second one would show as a row the
        // truth lacks, and fail the test loudly).
        s.read_exact(&mut buf[..n]).unwrap();
        t.op("TCP", "receive", sl, cl, n);
        let n = s.write(&[2u8; 100]).unwrap();
        t.op("TCP", "send", sl, cl, n);
        c.read_exact(&mut buf[..n]).unwrap();
        t.op("TCP", "receive", cl, sl, n);
        open_tcp.push((c, s));
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sa = server.local_addr().unwrap();
    for _ in 0..udp {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ca = c.local_addr().unwrap();
        let mut buf = [0u8; 128];
        for _ in 0..3 {
            let n = c.send_to(&[3u8; 64], sa).unwrap();
            t.op("UDP", "send", ca, sa, n);
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(from, ca);
            t.op("UDP", "receive", sa, ca, n);
            let n = server.send_to(&[4u8; 32], ca).unwrap();
            t.op("UDP", "send", sa, ca, n);
            let (n, _) = c.recv_from(&mut buf).unwrap();
            t.op("UDP", "receive", ca, sa, n);
        }
        open_udp.push(c);
    }
    drop((open_tcp, open_udp));
    t
}

#[test]
fn sampling_keeps_whole_flows_and_the_totals_stay_exact() {
    if skip_without_root("sampling_keeps_whole_flows_and_the_totals_stay_exact") {
        return;
    }
    let comm = "smp-flows";
    let sampled_dir = scratch_dir("sample-10");
    let full_dir = scratch_dir("sample-full");
    let mut sampled = Tracer::start(&sampled_dir, &["--comm", comm, "--sample", "1/10"]);
    let mut full = Tracer::start(&full_dir, &["--comm", comm]);
    let truth = in_thread(comm, || loopback_traffic(200, 100));
    assert_eq!(sampled.stop(), 0, "{:?}", sampled.stderr);
    assert_eq!(full.stop(), 0, "{:?}", full.stderr);

    let want = truth.per_flow();
    assert_eq!(want.len(), 300);
    // The unsampled recorder saw every op: the comparison is fair.
    assert_eq!(full.manifest()["events_lost"], 0);
    assert_eq!(rows_per_flow(&full_dir), want, "the unsampled run");

    let got = rows_per_flow(&sampled_dir);
    assert_eq!(sampled.manifest()["events_lost"], 0);
    for (f, n) in &got {
        // Rows only from flows of the traffic, and every op of a kept flow.
        assert_eq!(want.get(f), Some(n), "kept flow {f:?} is not whole");
    }
    // The kernel's decision is the documented hash's (its twin in Rust).
    for f in want.keys() {
        let proto = if f.0 == "TCP" {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        assert_eq!(
            got.contains_key(f),
            flow_kept(10, proto, f.1.1, Some(f.2.1)),
            "{f:?}"
        );
    }
    // 1 in 10 of 300 flows: 30 expected; 10..=60 is far outside chance.
    assert!((10..=60).contains(&got.len()), "{} flows kept", got.len());

    let written: u64 = got.values().sum();
    let total = truth.ops.len() as u64;
    let m = sampled.manifest();
    let loss = &m["loss_by_reason"];
    assert_eq!(loss["sample"], 10);
    assert_eq!(m["rows_written"], written);
    assert_eq!(loss["sampled_out"], total - written);
    assert_eq!(loss["rate_limited"], 0);
    assert_eq!(loss["unwritten_overflow_ops"], 0);

    let s = summary(&sampled_dir);
    assert_eq!(
        s["aggregate"]["totals"]["ops"], written,
        "the rows' own part"
    );
    let u = &s["unwritten"];
    assert_eq!(u["sample"], 10);
    assert_eq!(u["lower_bounds"], false);
    let all = &u["all_totals"];
    assert_eq!(all["ops"], total, "exact totals");
    assert_eq!(all["bytes_sent"], truth.bytes("send"));
    assert_eq!(all["bytes_received"], truth.bytes("receive"));
    assert_eq!(all["errors"], 0);
    // Per conversation, exact too: the written and the unwritten parts
    // together hold every flow's ops (each side of a TCP connection and
    // each UDP socket is its own conversation).
    let mut convs: BTreeMap<Flow, u64> = BTreeMap::new();
    for part in [&s["aggregate"], &u["aggregate"]] {
        for c in part["conversations"].as_array().expect("conversations") {
            let ops: u64 = c["ops"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_u64().unwrap()).sum())
                .unwrap_or_else(|| panic!("conversation without ops: {c}"));
            let key = conv_flow(c);
            *convs.entry(key).or_default() += ops;
        }
    }
    assert_eq!(convs, want, "per-flow totals, written + unwritten");
}

/// A stored conversation's flow.
fn conv_flow(c: &serde_json::Value) -> Flow {
    let ep = |v: &serde_json::Value| -> SocketAddr {
        v.as_str()
            .unwrap_or_else(|| panic!("an endpoint: {v}"))
            .parse()
            .expect("address:port")
    };
    flow(
        c["protocol"].as_str().expect("protocol"),
        ep(&c["local"]),
        ep(&c["remote"]),
    )
}

#[test]
fn the_rate_limit_caps_a_process_and_counts_the_rest() {
    if skip_without_root("the_rate_limit_caps_a_process_and_counts_the_rest") {
        return;
    }
    let comm = "smp-rate";
    let dir = scratch_dir("rate-limit");
    let mut tracer = Tracer::start(&dir, &["--comm", comm, "--rate-limit", "100/s"]);
    let started = std::time::Instant::now();
    let truth = in_thread(comm, || loopback_traffic(0, 400));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(tracer.stop(), 0, "{:?}", tracer.stderr);

    let total = truth.ops.len() as u64;
    let written: u64 = rows_per_flow(&dir).values().sum();
    // A full bucket (100) plus 100 a second while the traffic ran, and a
    // little for refills racing on two CPUs.
    let most = 100 + (100.0 * secs).ceil() as u64 + 10;
    assert!(
        (50..=most).contains(&written),
        "{written} rows of {total} ops in {secs:.2} s"
    );
    let m = tracer.manifest();
    let loss = &m["loss_by_reason"];
    assert_eq!(loss["rate_limit"], 100);
    assert_eq!(loss["rate_limit_by"], "process");
    assert_eq!(loss["rate_limited"], total - written);
    assert_eq!(loss["sampled_out"], 0);
    let suppressed = loss["suppressed"].as_array().expect("suppressed list");
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0]["id"], std::process::id());
    assert_eq!(suppressed[0]["operations"], total - written);
    let s = summary(&dir);
    assert_eq!(s["unwritten"]["all_totals"]["ops"], total);
    assert_eq!(
        s["unwritten"]["all_totals"]["bytes_sent"],
        truth.bytes("send")
    );
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct TwoNamespaces {
    names: [String; 2],
    addrs: [IpAddr; 2],
}

impl TwoNamespaces {
    fn create() -> TwoNamespaces {
        let id = std::process::id() % 100_000;
        let names = [format!("nwt-smp-a{id}"), format!("nwt-smp-b{id}")];
        let (va, vb) = (format!("nwsa{id}"), format!("nwsb{id}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("running ip (iproute2)");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        let ns = TwoNamespaces {
            names: names.clone(),
            addrs: ["10.231.0.1".parse().unwrap(), "10.231.0.2".parse().unwrap()],
        };
        ip(&["netns", "add", &names[0]]);
        ip(&["netns", "add", &names[1]]);
        ip(&[
            "link", "add", &va, "netns", &names[0], "type", "veth", "peer", "name", &vb, "netns",
            &names[1],
        ]);
        for (n, (dev, addr)) in names
            .iter()
            .zip([(&va, "10.231.0.1/24"), (&vb, "10.231.0.2/24")])
        {
            ip(&["-n", n, "addr", "add", addr, "dev", dev]);
            ip(&["-n", n, "link", "set", dev, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for TwoNamespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Moves the calling thread into the named network namespace.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("the netns file");
    // SAFETY: setns on an open namespace descriptor; it changes only this
    // thread's network namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn both_ends_of_a_conversation_keep_the_same_flows() {
    if skip_without_root("both_ends_of_a_conversation_keep_the_same_flows") {
        return;
    }
    let ns = TwoNamespaces::create();
    let (dir_a, dir_b) = (scratch_dir("sample-ns-a"), scratch_dir("sample-ns-b"));
    // Each recorder sees every namespace: each traces one side's thread.
    let mut rec_a = Tracer::start(&dir_a, &["--comm", "smp-ns-a", "--sample", "1/4"]);
    let mut rec_b = Tracer::start(&dir_b, &["--comm", "smp-ns-b", "--sample", "1/4"]);
    const UDP_PEERS: usize = 60;
    const TCP_CONNS: usize = 40;
    let (a_addr, name_a, name_b) = (ns.addrs[0], ns.names[0].clone(), ns.names[1].clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new()
        .name("smp-ns-a".into())
        .spawn(move || {
            enter_netns(&name_a);
            let udp = UdpSocket::bind(SocketAddr::new(a_addr, 0)).unwrap();
            let tcp = TcpListener::bind(SocketAddr::new(a_addr, 0)).unwrap();
            ready_tx
                .send((udp.local_addr().unwrap(), tcp.local_addr().unwrap()))
                .unwrap();
            let mut buf = [0u8; 128];
            for _ in 0..UDP_PEERS * 2 {
                let (n, from) = udp.recv_from(&mut buf).unwrap();
                udp.send_to(&buf[..n], from).unwrap();
            }
            for _ in 0..TCP_CONNS {
                let (mut s, _) = tcp.accept().unwrap();
                s.read_exact(&mut buf[..50]).unwrap();
                s.write_all(&buf[..50]).unwrap();
            }
        })
        .unwrap();
    let (udp_at, tcp_at) = ready_rx.recv().unwrap();
    let name_b2 = name_b.clone();
    in_thread("smp-ns-b", move || {
        enter_netns(&name_b2);
        let mut buf = [0u8; 128];
        for _ in 0..UDP_PEERS {
            let c = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..2 {
                c.send_to(&[5u8; 40], udp_at).unwrap();
                c.recv_from(&mut buf).unwrap();
            }
        }
        for _ in 0..TCP_CONNS {
            let mut c = TcpStream::connect(tcp_at).unwrap();
            c.write_all(&[6u8; 50]).unwrap();
            c.read_exact(&mut buf[..50]).unwrap();
        }
    });
    server.join().expect("the server thread");
    assert_eq!(rec_a.stop(), 0, "{:?}", rec_a.stderr);
    assert_eq!(rec_b.stop(), 0, "{:?}", rec_b.stderr);

    // By protocol and ports: what both ends see alike (the clients'
    // sockets are bound to 0.0.0.0, so their rows show that address while
    // the server's show 10.231.0.2).
    let by_ports = |dir: &Path| -> BTreeSet<(String, u16, u16)> {
        rows_per_flow(dir)
            .into_keys()
            .map(|(p, x, y)| (p, x.1.min(y.1), x.1.max(y.1)))
            .collect()
    };
    let (a, b) = (by_ports(&dir_a), by_ports(&dir_b));
    assert!(!a.is_empty(), "no flow kept of {}", UDP_PEERS + TCP_CONNS);
    assert_eq!(a, b, "the two ends kept different flows");
    let left_out = |m: serde_json::Value| m["loss_by_reason"]["sampled_out"].as_u64().unwrap();
    assert!(left_out(rec_a.manifest()) > 0, "nothing was sampled out");
    assert!(a.len() < UDP_PEERS + TCP_CONNS, "every flow was kept");
    drop(ns);
}
