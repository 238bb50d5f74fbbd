#!/usr/bin/env python3
"""A deterministic fleet tree in nwtrace's layout, and the truth about it.

    gen_tree.py ROOT [--machines N] [--runs N] [--rows N] [--seed S] [--kinds K[,K...]]

Writes ROOT/<machine>/<run>/nw/nw_0001.csv and a manifest.json per run.
--kinds (default csv,csv.gz) is the list of file kinds the runs take in
turn: csv, csv.gz (`record --compress gzip`) or csv.zst (`--compress
zstd`, written by the zstd command). A compressed file is several gzip
members or zstd frames, one per FRAME_ROWS rows, as record compresses each
flush on its own. The rows do not depend on --kinds: the same seed gives
the same truth whatever the compression. The tree has the hard cases of
the contract: a comm with a comma and a quote, unknown peers (empty
fields), failed operations, unknown latencies, flags. Prints, as JSON on stdout, what any correct
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
import subprocess

HEADER = [
    "Timestamp", "PID", "Command", "Protocol", "IP Version", "Source Address",
    "Destination Address", "Source Port", "Destination Port", "Size", "Direction",
    "Latency", "Error", "MSG Flags",
]
COMMS = ["nginx", "curl", 'a,"b', "redis-server", "python3"]
ERRORS = ["EAGAIN", "ECONNRESET", "EPIPE", "ERESTARTSYS"]
KINDS = ("csv", "csv.gz", "csv.zst")
FRAME_ROWS = 700


def rows_for(rng, machine, run_start, n):
    out = []
    t = run_start
    for i in range(n):
        t += datetime.timedelta(microseconds=rng.randint(1, 5000))
        pid = 1000 + rng.randint(0, 3)
        comm = COMMS[pid % len(COMMS)]
        proto = rng.choice(["TCP", "UDP"])
        direction = rng.choice(["send", "receive"])
        # Past 255 machines (bench/fleet-scale's 1,000) the address needs
        # two bytes; the first 255 keep theirs.
        host = "10.0.0.%d" % machine if machine < 256 else "10.1.%d.%d" % (machine >> 8, machine & 255)
        local = (host, 40000 + rng.randint(0, 5))
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


def compressed(rows, kind):
    """The file's bytes: one gzip member or zstd frame per FRAME_ROWS rows
    (the header in the first), concatenated."""
    if kind == "csv":
        return csv_bytes(rows)
    out = b""
    for i in range(0, len(rows), FRAME_ROWS):
        chunk = csv_bytes(rows[i:i + FRAME_ROWS])
        if i:
            chunk = chunk.split(b"\n", 1)[1]  # the header only once
        if kind == "csv.gz":
            out += gzip.compress(chunk, mtime=0)
        else:
            out += subprocess.run(["zstd", "-q", "-c", "-3"], input=chunk, capture_output=True, check=True).stdout
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--machines", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kinds", default="csv,csv.gz", help="file kinds the runs take in turn")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if not kinds or any(k not in KINDS for k in kinds):
        ap.error(f"--kinds takes {', '.join(KINDS)}")
    rng = random.Random(args.seed)
    truth = {"rows": 0, "runs": {}, "processes": {}, "unknown_sources": 0}
    # 23:59:57, so the first run of each machine crosses midnight: two dates.
    base = datetime.datetime(2026, 11, 20, 23, 59, 57)
    n = 0
    for m in range(1, args.machines + 1):
        machine = "machine%02d" % m
        for r in range(args.runs):
            start = base + datetime.timedelta(hours=r)
            run = start.strftime("%Y%m%dT%H%M%SZ")
            nw = os.path.join(args.root, machine, run, "nw")
            os.makedirs(nw, exist_ok=True)
            rows = rows_for(rng, m, start, args.rows)
            kind = kinds[n % len(kinds)]
            n += 1
            name = "nw_0001." + kind
            on_disk = compressed(rows, kind)
            with open(os.path.join(nw, name), "wb") as f:
                f.write(on_disk)
            # Bytes on disk, as record counts them (compressed).
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
