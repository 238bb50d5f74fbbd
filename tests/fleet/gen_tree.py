#!/usr/bin/env python3
"""A deterministic fleet tree in nwtrace's layout, and the truth about it.

    gen_tree.py ROOT [--machines N] [--runs N] [--rows N] [--seed S]

Writes ROOT/<machine>/<run>/nw/nw_0001.csv (the second run of every
machine as nw_0001.csv.gz, as `record --compress gzip` names it) and a
manifest.json per run, with the hard cases of the contract: a comm with a
comma and a quote, unknown peers (empty fields), failed operations,
unknown latencies, flags. Prints, as JSON on stdout, what any correct
reader must compute from it: rows per machine and run, and per process
(machine, pid, comm) the ops, sends, receives, bytes and errors, plus
every latency by direction (for percentile checks).

It is an oracle built from what it wrote, independent of nwtrace's code.
"""

import argparse
import csv
import datetime
import gzip
import io
import json
import os
import random

HEADER = [
    "Timestamp", "PID", "Command", "Protocol", "IP Version", "Source Address",
    "Destination Address", "Source Port", "Destination Port", "Size", "Direction",
    "Latency", "Error", "MSG Flags",
]
COMMS = ["nginx", "curl", 'a,"b', "redis-server", "python3"]
ERRORS = ["EAGAIN", "ECONNRESET", "EPIPE", "ERESTARTSYS"]


def rows_for(rng, machine, run_start, n):
    out = []
    t = run_start
    for i in range(n):
        t += datetime.timedelta(microseconds=rng.randint(1, 5000))
        pid = 1000 + rng.randint(0, 3)
        comm = COMMS[pid % len(COMMS)]
        proto = rng.choice(["TCP", "UDP"])
        direction = rng.choice(["send", "receive"])
        local = ("10.0.0.%d" % machine, 40000 + rng.randint(0, 5))
        peer = ("10.0.1.%d" % rng.randint(1, 9), rng.choice([80, 443, 6379]))
        if proto == "UDP" and direction == "receive" and rng.random() < 0.1:
            peer = None  # an unconnected receive without an address buffer
        failed = rng.random() < 0.05
        size = 0 if failed else rng.randint(0, 65536)
        latency = None if rng.random() < 0.03 else rng.randint(100, 5_000_000)
        src, dst = (local, peer) if direction == "send" else (peer, local)
        out.append(
            {
                "Timestamp": t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "PID": pid,
                "Command": comm,
                "Protocol": proto,
                "IP Version": 4,
                "Source Address": src[0] if src else "",
                "Destination Address": dst[0] if dst else "",
                "Source Port": src[1] if src else "",
                "Destination Port": dst[1] if dst else "",
                "Size": size,
                "Direction": direction,
                "Latency": "" if latency is None else latency,
                "Error": rng.choice(ERRORS) if failed else "",
                "MSG Flags": rng.choice(["", "", "MSG_DONTWAIT", "MSG_NOSIGNAL|MSG_MORE"]),
            }
        )
    return out


def csv_bytes(rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HEADER, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--machines", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    truth = {"rows": 0, "runs": {}, "processes": {}, "unknown_sources": 0}
    # 23:59:57, so the first run of each machine crosses midnight: two dates.
    base = datetime.datetime(2026, 11, 20, 23, 59, 57)
    for m in range(1, args.machines + 1):
        machine = "machine%02d" % m
        for r in range(args.runs):
            start = base + datetime.timedelta(hours=r)
            run = start.strftime("%Y%m%dT%H%M%SZ")
            nw = os.path.join(args.root, machine, run, "nw")
            os.makedirs(nw, exist_ok=True)
            rows = rows_for(rng, m, start, args.rows)
            data = csv_bytes(rows)
            gz = r % 2 == 1
            name = "nw_0001.csv.gz" if gz else "nw_0001.csv"
            on_disk = gzip.compress(data, mtime=0) if gz else data
            with open(os.path.join(nw, name), "wb") as f:
                f.write(on_disk)
            # Bytes on disk, as record counts them (compressed for .gz).
            manifest = {
                "nwtrace_version": "0.1.0", "command_line": ["nwtrace", "record"], "pid": 1,
                "kernel": "6.1.0", "backend": "fentry", "machine_id": machine,
                "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "stopped_at": None,
                "finalized": True, "exit_reason": "SIGINT",
                "files": [{"name": name, "rows": len(rows), "bytes": len(on_disk), "deleted": False}],
                "rows_written": len(rows), "events_captured": len(rows), "events_lost": 0,
                "probes_missed": 0, "rows_lost": 0, "malformed_records": 0,
            }
            with open(os.path.join(nw, "manifest.json"), "w") as f:
                json.dump(manifest, f)
            truth["rows"] += len(rows)
            truth["runs"]["%s/%s" % (machine, run)] = len(rows)
            for row in rows:
                truth["unknown_sources"] += 1 if row["Source Address"] == "" else 0
                key = "%s|%d|%s" % (machine, row["PID"], row["Command"])
                p = truth["processes"].setdefault(
                    key,
                    {"ops": 0, "sends": 0, "receives": 0, "bytes_sent": 0,
                     "bytes_received": 0, "errors": 0, "latency_send": [], "latency_receive": []},
                )
                p["ops"] += 1
                send = row["Direction"] == "send"
                p["sends" if send else "receives"] += 1
                p["bytes_sent" if send else "bytes_received"] += row["Size"]
                p["errors"] += 1 if row["Error"] else 0
                if row["Latency"] != "":
                    p["latency_send" if send else "latency_receive"].append(row["Latency"])
    json.dump(truth, fp=__import__("sys").stdout)


if __name__ == "__main__":
    main()
