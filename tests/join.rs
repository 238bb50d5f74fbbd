//! `nwtrace report` over recordings of two machines with the TCP columns
//! (issue 24): written here with a known delay each way, a known clock
//! offset, sequence numbers that wrap at 2^32, one lost receive row and a
//! retransmit; the report's `join` and `network` sections are checked
//! against those numbers, computed here, in JSON, text and HTML.

use std::path::{Path, PathBuf};
use std::process::Command;

use nwtrace::schema::{HEADER, format_timestamp_ns};
use serde_json::Value;

const MS: i64 = 1_000_000;
/// Machine "server"'s clock is ahead of "client"'s by this.
const OFFSET: i64 = 3 * MS;
/// True one-way delays (the receive ends when the bytes arrive).
const C_TO_S: i64 = 20 * MS;
const S_TO_C: i64 = 4 * MS;
const T0: i64 = 1_795_669_694_000_000_000;
const N: u32 = 200;
const REQ: u32 = 300;
const RESP: u32 = 5000;

struct Tree {
    root: PathBuf,
    /// The client's sends that the server's lost row held.
    lost_bytes: u64,
}

fn row(
    t: i64,
    comm: &str,
    (src, dst): (&str, &str),
    size: u32,
    dir: &str,
    lat: i64,
    tcp: &str,
) -> String {
    let (sa, sp) = src.rsplit_once(':').unwrap();
    let (da, dp) = dst.rsplit_once(':').unwrap();
    format!(
        "{},7,{comm},TCP,4,{sa},{da},{sp},{dp},{size},{dir},{lat},,,{tcp}\n",
        format_timestamp_ns(t)
    )
}

fn build(tag: &str) -> Tree {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("join-{tag}"));
    let _ = std::fs::remove_dir_all(&root);
    let header = format!("{},SRTT us,CWND,Retrans,TCP Seq\n", HEADER.trim_end());
    let (c, s) = ("10.1.0.1:41000", "10.1.0.2:8080");
    let (mut client, mut server) = (header.clone(), header.clone());
    // Both directions start close below 2^32 and wrap within the run.
    let mut c_seq: u32 = u32::MAX - 20 * REQ;
    let mut s_seq: u32 = u32::MAX - 7 * RESP;
    let mut lost_bytes = 0;
    for i in 0..N {
        let t = T0 + i64::from(i) * 10 * MS;
        // The client's retransmit counter rises once, at i = 100.
        let retrans = u32::from(i >= 100);
        let ctcp = |seq: u32| format!("250,10,{retrans},{seq}");
        let stcp = |seq: u32| format!("300,12,0,{seq}");
        client.push_str(&row(t, "cli", (c, s), REQ, "send", 5000, &ctcp(c_seq)));
        // The server's receive blocked since t (its clock) and ends when
        // the bytes arrive; row 50 is lost.
        if i == 50 {
            lost_bytes = u64::from(REQ);
        } else {
            server.push_str(&row(
                t + OFFSET,
                "srv",
                (c, s),
                REQ,
                "receive",
                C_TO_S,
                &stcp(c_seq),
            ));
        }
        c_seq = c_seq.wrapping_add(REQ);
        // The response, read by the client in two parts.
        let t2 = t + C_TO_S;
        server.push_str(&row(
            t2 + OFFSET,
            "srv",
            (s, c),
            RESP,
            "send",
            8000,
            &stcp(s_seq),
        ));
        let first = 1448;
        client.push_str(&row(
            t2,
            "cli",
            (s, c),
            first,
            "receive",
            S_TO_C,
            &ctcp(s_seq),
        ));
        client.push_str(&row(
            t2 + S_TO_C,
            "cli",
            (s, c),
            RESP - first,
            "receive",
            1000,
            &ctcp(s_seq.wrapping_add(first)),
        ));
        s_seq = s_seq.wrapping_add(RESP);
    }
    for (machine, text) in [("client", client), ("server", server)] {
        let dir = root.join(machine).join("20261126T050814Z").join("nw");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nw_0001.csv"), text).unwrap();
    }
    Tree { root, lost_bytes }
}

fn report(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nwtrace"))
        .arg("report")
        .arg(dir)
        .args(args)
        .output()
        .expect("running nwtrace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn two_machines_join_on_sequence_numbers() {
    let tree = build("json");
    let r: Value = serde_json::from_str(&report(&tree.root, &["--format", "json"])).unwrap();
    let j = &r["join"];
    assert_eq!(j["version"], 1);
    assert_eq!(
        j["machines_with_seq"],
        serde_json::json!(["client", "server"])
    );
    let p = &j["pairs"][0];
    assert_eq!(
        (p["machine_a"].as_str(), p["machine_b"].as_str()),
        (Some("client"), Some("server"))
    );
    let (ab, ba) = (&p["a_to_b"], &p["b_to_a"]);
    let sent = u64::from(N * REQ);
    assert_eq!(ab["bytes_sent"], sent);
    assert_eq!(ab["bytes_joined"], sent - tree.lost_bytes);
    assert_eq!(ab["bytes_sent_not_joined"], tree.lost_bytes);
    assert_eq!(ba["bytes_joined"], u64::from(N * RESP));
    assert_eq!(ba["bytes_received_not_joined"], 0);
    // Two receives per response: two pairs each.
    assert_eq!(ba["pairs"], u64::from(2 * N));
    assert_eq!(j["unjoined"]["sent_not_received"]["bytes"], tree.lost_bytes);
    assert_eq!(j["tcp_sent"]["bytes"], u64::from(N * (REQ + RESP)));
    assert_eq!(
        j["tcp_received"]["bytes"],
        u64::from(N * (REQ + RESP)) - tree.lost_bytes
    );
    assert_eq!(
        j["bytes_joined"],
        sent - tree.lost_bytes + u64::from(N * RESP)
    );
    // The delays as measured across the two clocks.
    assert_eq!(i(&ab["measured_delay_ns"]["p50"]), C_TO_S + OFFSET);
    assert_eq!(i(&ba["measured_delay_ns"]["min"]), S_TO_C - OFFSET);
    assert_eq!(i(&ba["measured_delay_ns"]["max"]), S_TO_C + 1000 - OFFSET);
    // NTP: the offset is within its error of the truth, and so is each
    // one-way delay.
    let o = &p["clock_offset"];
    let (off, err) = (i(&o["b_minus_a_ns"]), i(&o["error_ns"]));
    assert_eq!(err, (C_TO_S + S_TO_C) / 2);
    assert!((off - OFFSET).abs() <= err, "offset {off} ± {err}");
    assert!((i(&ab["one_way_delay_ns"]["p50"]) - C_TO_S).abs() <= err);
    assert!((i(&ba["one_way_delay_ns"]["min"]) - S_TO_C).abs() <= err);
    // One conversation, from the client's end.
    let c = &j["conversations"][0];
    assert_eq!(c["a"], "10.1.0.1:41000");
    assert_eq!(c["b"], "10.1.0.2:8080");
    assert_eq!(j["conversations_total"], 1);

    // The network's side: the client's socket retransmitted once.
    let n = &r["network"];
    assert_eq!(n["version"], 1);
    let conv = n["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["machine"] == "client")
        .unwrap();
    assert_eq!(conv["retransmits"], 1);
    assert_eq!(conv["ops"], u64::from(3 * N));
    assert_eq!(conv["srtt_max_us"], 250);
    let points = conv["points"].as_array().unwrap();
    let with_retrans: Vec<_> = points.iter().filter(|p| p["retransmits"] == 1).collect();
    assert_eq!(with_retrans.len(), 1);
    // The bucket holding the 100th request (t = 1 s) has the retransmit.
    let step = i(&conv["step_ns"]);
    let t = i(&with_retrans[0]["t_ns"]);
    let at = T0 + 100 * 10 * MS;
    assert!(t <= at && at < t + step, "{t} {step}");
}

#[test]
fn text_and_html_show_both_sections() {
    let tree = build("text");
    let text = report(&tree.root, &[]);
    assert!(
        text.contains("Machines joined on TCP sequence numbers"),
        "{text}"
    );
    assert!(text.contains("client <-> server"));
    assert!(
        text.contains("sent, no receive recorded: 1 ops, 300 B"),
        "{text}"
    );
    assert!(text.contains("The network's side: TCP state over time"));
    let html = report(&tree.root, &["--format", "html"]);
    assert!(html.contains("<h2 id=\"join\">"));
    assert!(html.contains("<h2 id=\"network\">"));
    assert!(html.contains("Delay from a send&#39;s start to its receive&#39;s end"));
    assert!(html.contains("client 10.1.0.1:41000 -&gt; 10.1.0.2:8080: latency and srtt"));
}

#[test]
fn no_tcp_columns_no_sections() {
    let tree = build("plain");
    // The same folders with the 14 columns only.
    for m in ["client", "server"] {
        let f = tree.root.join(m).join("20261126T050814Z/nw/nw_0001.csv");
        let text = std::fs::read_to_string(&f).unwrap();
        let cut: String = text
            .lines()
            .map(|l| l.splitn(15, ',').take(14).collect::<Vec<_>>().join(",") + "\n")
            .collect();
        std::fs::write(&f, cut).unwrap();
    }
    let r: Value = serde_json::from_str(&report(&tree.root, &["--format", "json"])).unwrap();
    assert!(r.get("join").is_none() && r.get("network").is_none());
}
