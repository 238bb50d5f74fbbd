//! End to end, as root: the real tracer records known TCP and UDP traffic
//! from a thread with a known comm, then `nwtrace report --format json`
//! must count exactly the operations and bytes that thread made.

use nwtrace_testkit as common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use common::{Tracer, nwtrace_bin, scratch_dir, skip_without_root};
use serde_json::Value;

const COMM: &str = "nwrep-e2e";

/// What the traced thread did, counted at each syscall it made.
#[derive(Debug, Default)]
struct Did {
    sends: u64,
    receives: u64,
    bytes_sent: u64,
    bytes_received: u64,
    tcp_ops: u64,
    udp_ops: u64,
    local_tcp: String,
    remote_tcp: String,
}

fn traffic() -> Did {
    // The peers run in threads with other names: the tracer's --comm
    // filter keeps them out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let udp_server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp_server.local_addr().unwrap();
    let tcp_peer = std::thread::Builder::new()
        .name("e2e-tcp-peer".into())
        .spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1000];
            for _ in 0..10 {
                s.read_exact(&mut buf).unwrap();
                s.write_all(&[7u8; 500]).unwrap();
            }
            // Then close: the client sees end of stream.
        })
        .unwrap();
    let udp_peer = std::thread::Builder::new()
        .name("e2e-udp-peer".into())
        .spawn(move || {
            let mut buf = [0u8; 2048];
            let mut from = None;
            for _ in 0..5 {
                let (n, f) = udp_server.recv_from(&mut buf).unwrap();
                assert_eq!(n, 200);
                from = Some(f);
            }
            for _ in 0..3 {
                udp_server.send_to(&[9u8; 300], from.unwrap()).unwrap();
            }
        })
        .unwrap();

    let did = std::thread::Builder::new()
        .name(COMM.into())
        .spawn(move || {
            let mut d = Did::default();
            let mut s = TcpStream::connect(server_addr).unwrap();
            d.local_tcp = s.local_addr().unwrap().to_string();
            d.remote_tcp = server_addr.to_string();
            let mut reply = [0u8; 500];
            for _ in 0..10 {
                // One write of 1000 bytes on loopback is one whole send.
                let n = s.write(&[1u8; 1000]).unwrap();
                assert_eq!(n, 1000);
                d.sends += 1;
                d.bytes_sent += 1000;
                d.tcp_ops += 1;
                let mut got = 0;
                while got < reply.len() {
                    let n = s.read(&mut reply[got..]).unwrap();
                    assert!(n > 0);
                    got += n;
                    d.receives += 1;
                    d.bytes_received += n as u64;
                    d.tcp_ops += 1;
                }
            }
            s.shutdown(Shutdown::Write).unwrap();
            // End of stream: a read of 0 bytes.
            let n = s.read(&mut reply).unwrap();
            assert_eq!(n, 0);
            d.receives += 1;
            d.tcp_ops += 1;

            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..5 {
                u.send_to(&[2u8; 200], udp_addr).unwrap();
                d.sends += 1;
                d.bytes_sent += 200;
                d.udp_ops += 1;
            }
            let mut buf = [0u8; 2048];
            for _ in 0..3 {
                let (n, _) = u.recv_from(&mut buf).unwrap();
                assert_eq!(n, 300);
                d.receives += 1;
                d.bytes_received += 300;
                d.udp_ops += 1;
            }
            d
        })
        .unwrap()
        .join()
        .unwrap();
    tcp_peer.join().unwrap();
    udp_peer.join().unwrap();
    did
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

#[test]
fn report_counts_exactly_what_a_thread_did() {
    if skip_without_root("report_counts_exactly_what_a_thread_did") {
        return;
    }
    let dir = scratch_dir("report-e2e");
    let mut tracer = Tracer::start(&dir, &["--comm", COMM]);
    let did = traffic();
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));

    let out = Command::new(nwtrace_bin())
        .args(["report", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let pid = std::process::id();
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "only the traced thread: {procs:?}");
    let p = &procs[0];
    assert_eq!(p["pid"], pid);
    assert_eq!(p["comm"], COMM);
    assert_eq!(u(&p["sends"]), did.sends, "{did:?}");
    assert_eq!(u(&p["receives"]), did.receives, "{did:?}");
    assert_eq!(u(&p["ops"]), did.sends + did.receives);
    assert_eq!(u(&p["bytes_sent"]), did.bytes_sent);
    assert_eq!(u(&p["bytes_received"]), did.bytes_received);
    assert_eq!(u(&p["errors"]), 0);
    assert_eq!(u(&p["latency_ns"]["send"]["count"]), did.sends);

    // The TCP socket is one conversation, both directions on one key,
    // with the end of stream seen.
    let convs = v["conversations"].as_array().unwrap();
    let tcp = convs
        .iter()
        .find(|c| c["protocol"] == "TCP")
        .expect("a TCP conversation");
    assert_eq!(
        format!(
            "{}:{}",
            tcp["local_address"].as_str().unwrap(),
            tcp["local_port"]
        ),
        did.local_tcp
    );
    assert_eq!(
        format!(
            "{}:{}",
            tcp["remote_address"].as_str().unwrap(),
            tcp["remote_port"]
        ),
        did.remote_tcp
    );
    assert_eq!(u(&tcp["ops"]), did.tcp_ops);
    assert_eq!(u(&tcp["bytes_sent"]), 10_000);
    assert_eq!(u(&tcp["bytes_received"]), 5_000);
    assert_eq!(tcp["end_of_stream"], true);
    let udp_ops: u64 = convs
        .iter()
        .filter(|c| c["protocol"] == "UDP")
        .map(|c| u(&c["ops"]))
        .sum();
    assert_eq!(udp_ops, did.udp_ops);

    // Coverage: one clean run.
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["finalized"], true);
    assert_eq!(u(&runs[0]["events_lost"]), 0);
    assert_eq!(u(&runs[0]["rows"]), did.sends + did.receives);
    assert_eq!(u(&v["coverage"]["malformed_rows"]), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
