#!/usr/bin/env python3
"""Benchmark `nwtrace report` against DuckDB on a generated recording.

Generates (once, cached) a <MACHINE_ID>/<TIMESTAMP>/nw/ tree of >= 10
million rows in the real CSV format (2 machines x 2 runs, files rotated at
about 100 MB like `record` does), then times, each run in its own process
under /usr/bin/time -v (wall time and peak RSS):

  - nwtrace: target/release/nwtrace report --format json TREE
  - DuckDB:  the same per-process (pid, comm) and per-conversation
             (protocol, pid, comm, local, remote, oriented by Direction)
             aggregates: ops, sends, receives, bytes each way, errors,
             first/last, and per-process approximate p50/p99 latency of
             sends and receives, reading the same CSV files.

and checks that both agree on the per-process numbers. Writes a Markdown
table to bench/results/report-<UTC stamp>.md and report-latest.md.

Usage: bench/report.py [--rows N] [--runs K] [--keep]
Needs duckdb: run it with the python of scripts/test-venv (the bench only;
not a build dependency).
"""

import argparse
import datetime
import json
import os
import random
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ("Timestamp,PID,Command,Protocol,IP Version,Source Address,Destination Address,"
          "Source Port,Destination Port,Size,Direction,Latency,Error,MSG Flags\n")
ROTATE = 100 * 1024 * 1024


def generate(tree, rows):
    """Writes `rows` rows over 2 machines x 2 runs, deterministic."""
    rnd = random.Random(42)
    procs = [(1000 + i, name) for i, name in enumerate(
        ["nginx", "nginx", "postgres", "redis-server", "curl", "java", "envoy",
         "node", "python3", "dnsmasq", "sshd", "a,b quoted", "grpc-worker",
         "kafka", "memcached", "haproxy"])]
    # Conversations: a few hot ones and a long tail of ephemeral ports, so
    # the heavy-hitter cap is exercised (DuckDB counts them all exactly).
    convs = []
    for i in range(6000):
        pid, comm = procs[i % len(procs)]
        tcp = rnd.random() < 0.8
        local = ("10.0.0.%d" % (1 + i % 3), 8080 if tcp else 53)
        remote = ("10.1.%d.%d" % (i // 250 % 250, i % 250), 30000 + i)
        convs.append((pid, comm, "TCP" if tcp else "UDP", local, remote))
    weights = [1.0 / (1 + i) ** 0.8 for i in range(len(convs))]
    errors = ["", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "EAGAIN",
              "ECONNRESET"]
    flags = ["", "", "MSG_NOSIGNAL", "MSG_DONTWAIT", "MSG_NOSIGNAL|MSG_MORE"]
    per_part = rows // 4
    t0 = datetime.datetime(2026, 11, 26, 5, 0, 0)
    written = 0
    for m, machine in enumerate(["bench-m1", "bench-m2"]):
        for r in range(2):
            start = t0 + datetime.timedelta(hours=r, minutes=m)
            run = start.strftime("%Y%m%dT%H%M%SZ")
            nw = os.path.join(tree, machine, run, "nw")
            os.makedirs(nw, exist_ok=True)
            base = int(start.replace(tzinfo=datetime.timezone.utc).timestamp() * 1_000_000)
            seq, f, size = 0, None, ROTATE
            files = []
            picks = rnd.choices(range(len(convs)), weights=weights, k=per_part)
            us = base
            buf = []
            for i, ci in enumerate(picks):
                pid, comm, proto, local, remote = convs[ci]
                us += rnd.randint(1, 600)
                send = rnd.random() < 0.5
                err = errors[rnd.randrange(len(errors))]
                size_b = 0 if err else rnd.choice((64, 128, 512, 1448, 4096, 16384, 65536))
                lat = str(rnd.randint(800, 3_000_000)) if rnd.random() < 0.97 else ""
                src, dst = (local, remote) if send else (remote, local)
                s = us // 1_000_000
                ts = datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M:%S") + ".%06d" % (us % 1_000_000)
                c = '"%s"' % comm if "," in comm else comm
                buf.append("%s,%d,%s,%s,4,%s,%s,%d,%d,%d,%s,%s,%s,%s\n" % (
                    ts, pid, c, proto, src[0], dst[0], src[1], dst[1], size_b,
                    "send" if send else "receive", lat, err, flags[i % len(flags)]))
                if len(buf) >= 20000 or i == len(picks) - 1:
                    chunk = "".join(buf)
                    buf = []
                    if size + len(chunk) > ROTATE:
                        if f:
                            f.close()
                        seq += 1
                        name = "nw_%04d.csv" % seq
                        files.append(name)
                        f = open(os.path.join(nw, name), "w")
                        f.write(HEADER)
                        size = len(HEADER)
                    f.write(chunk)
                    size += len(chunk)
            f.close()
            written += per_part
            manifest = {"nwtrace_version": "0.1.0", "machine_id": machine,
                        "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "stopped_at": None, "finalized": True, "exit_reason": "SIGINT",
                        "files": [{"name": n, "rows": 0, "bytes": 0, "deleted": False}
                                  for n in files],
                        "rows_written": per_part, "events_lost": 0, "probes_missed": 0,
                        "rows_lost": 0, "malformed_records": 0}
            with open(os.path.join(nw, "manifest.json"), "w") as mf:
                json.dump(manifest, mf)
    return written


DUCKDB_SCRIPT = r"""
import duckdb, json, sys
glob = sys.argv[1]
con = duckdb.connect()
src = f'''read_csv('{glob}', header=true, all_varchar=false, quote='"',
    columns={{'Timestamp':'TIMESTAMP','PID':'UINTEGER','Command':'VARCHAR','Protocol':'VARCHAR',
    'IP Version':'UTINYINT','Source Address':'VARCHAR','Destination Address':'VARCHAR',
    'Source Port':'USMALLINT','Destination Port':'USMALLINT','Size':'UBIGINT','Direction':'VARCHAR',
    'Latency':'UBIGINT','Error':'VARCHAR','MSG Flags':'VARCHAR'}}, filename=true)'''
con.execute(f'''CREATE TEMP VIEW ops AS SELECT
  regexp_extract(filename, '([^/]+)/[^/]+/nw/[^/]+$', 1) AS machine,
  "Timestamp" AS ts, PID AS pid, Command AS comm, Protocol AS protocol, Direction AS direction,
  CASE WHEN Direction = 'send' THEN "Source Address" ELSE "Destination Address" END AS laddr,
  CASE WHEN Direction = 'send' THEN "Source Port" ELSE "Destination Port" END AS lport,
  CASE WHEN Direction = 'send' THEN "Destination Address" ELSE "Source Address" END AS raddr,
  CASE WHEN Direction = 'send' THEN "Destination Port" ELSE "Source Port" END AS rport,
  Size AS size, Latency AS lat, Error AS err FROM {src}''')
procs = con.execute('''SELECT machine, pid, comm, count(*) AS ops,
  count(*) FILTER (WHERE direction='send') AS sends,
  count(*) FILTER (WHERE direction='receive') AS receives,
  coalesce(sum(size) FILTER (WHERE direction='send'), 0) AS bytes_sent,
  coalesce(sum(size) FILTER (WHERE direction='receive'), 0) AS bytes_received,
  count(err) AS errors, min(ts), max(ts),
  approx_quantile(lat, 0.5) FILTER (WHERE direction='send') AS send_p50,
  approx_quantile(lat, 0.99) FILTER (WHERE direction='send') AS send_p99,
  approx_quantile(lat, 0.5) FILTER (WHERE direction='receive') AS recv_p50,
  approx_quantile(lat, 0.99) FILTER (WHERE direction='receive') AS recv_p99
  FROM ops GROUP BY ALL ORDER BY machine, pid, comm''').fetchall()
convs = con.execute('''SELECT machine, protocol, pid, comm, laddr, lport, raddr, rport, count(*) AS ops,
  coalesce(sum(size) FILTER (WHERE direction='send'), 0),
  coalesce(sum(size) FILTER (WHERE direction='receive'), 0), count(err), min(ts), max(ts)
  FROM ops GROUP BY ALL ORDER BY 10 + 11 DESC''').fetchall()
print(json.dumps({"processes": [[r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]] for r in procs],
                  "conversations": len(convs)}))
"""


def timed(cmd, out_path):
    """Runs cmd under /usr/bin/time -v; returns (wall s, peak RSS KiB, CPU s)."""
    with open(out_path, "wb") as out:
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=out, stderr=subprocess.PIPE)
    err = p.stderr.decode()
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), err[-2000:]))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", err)
    h, m, s = wall.groups()
    secs = (int(h) if h else 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    cpu = sum(float(re.search(r"%s time \(seconds\): ([\d.]+)" % k, err).group(1))
              for k in ("User", "System"))
    return secs, rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (median)")
    ap.add_argument("--tree", default=os.path.join(ROOT, "target", "bench-report-tree"))
    args = ap.parse_args()

    stamp_file = os.path.join(args.tree, ".rows")
    if not (os.path.exists(stamp_file) and open(stamp_file).read().strip() == str(args.rows)):
        subprocess.run(["rm", "-rf", args.tree], check=True)
        t = time.time()
        n = generate(args.tree, args.rows)
        open(stamp_file, "w").write(str(args.rows))
        print("generated %d rows in %.0f s" % (n, time.time() - t), file=sys.stderr)
    csv_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.tree)
                    for f in fs if f.endswith(".csv"))

    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    nwtrace = os.path.join(ROOT, "target", "release", "nwtrace")
    script = os.path.join(args.tree, "..", "bench-report-duckdb.py")
    with open(script, "w") as f:
        f.write(DUCKDB_SCRIPT)
    glob = os.path.join(args.tree, "*", "*", "nw", "nw_*.csv")

    results = {"nwtrace": [], "duckdb": []}
    nw_out = os.path.join(args.tree, "..", "bench-report-nwtrace.json")
    db_out = os.path.join(args.tree, "..", "bench-report-duckdb.json")
    for i in range(args.runs):
        # Alternate the order; the page cache is warm for both after run 1.
        order = [("nwtrace", [nwtrace, "report", "--format", "json", args.tree], nw_out),
                 ("duckdb", [sys.executable, script, glob], db_out)]
        if i % 2:
            order.reverse()
        for name, cmd, out in order:
            results[name].append(timed(cmd, out))
            print("%s run %d: %.2f s, %d MiB, %.2f CPU s" % (
                name, i + 1, results[name][-1][0], results[name][-1][1] // 1024,
                results[name][-1][2]), file=sys.stderr)

    # The two agree on every process.
    nw = json.load(open(nw_out))
    db = json.load(open(db_out))
    rows = nw["totals"]["ops"]
    ours = {(p["machine_id"], p["pid"], p["comm"]): (p["ops"], p["sends"], p["receives"],
            p["bytes_sent"], p["bytes_received"], p["errors"]) for p in nw["processes"]}
    theirs = {(r[0], r[1], r[2]): tuple(r[3:9]) for r in db["processes"]}
    agree = ours == theirs
    if not agree:
        print("MISMATCH nwtrace vs duckdb:", sorted(set(ours.items()) ^ set(theirs.items()))[:10],
              file=sys.stderr)

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    nw_t = median([r[0] for r in results["nwtrace"]])
    db_t = median([r[0] for r in results["duckdb"]])
    nw_cpu = median([r[2] for r in results["nwtrace"]])
    db_cpu = median([r[2] for r in results["duckdb"]])
    load = open("/proc/loadavg").read().split()[:3]
    nw_rss = max(r[1] for r in results["nwtrace"])
    db_rss = max(r[1] for r in results["duckdb"])
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    import duckdb
    md = f"""# nwtrace report vs DuckDB, {stamp}

- Machine: {cpu}, {os.cpu_count()} CPUs; nwtrace `{commit}` (release), DuckDB {duckdb.__version__} (Python)
- Input: {rows:,} rows in {sum(1 for d, _, fs in os.walk(args.tree) for f in fs if f.endswith('.csv'))} CSV files, {csv_bytes / 2**20:,.0f} MiB, 2 machines x 2 runs, {db['conversations']:,} conversations
- Each tool in its own process under `/usr/bin/time -v`, {args.runs} runs alternating, page cache warm; figure = median wall time, max peak RSS
- Same aggregates: per process (machine, pid, comm) and per conversation (protocol, pid, comm, local, remote; oriented by Direction): ops, sends, receives, bytes each way, errors, first/last; per-process p50/p99 of send and receive latency (DuckDB: approx_quantile). nwtrace computes its whole report besides (all tables, histograms, time series, exemplars).
- Per-process numbers agree between the two: **{"yes" if agree else "NO"}**

| Tool | Wall time (s) | Rows/s (wall) | CPU time (s) | Rows per CPU-second | Peak RSS (MiB) |
|---|---|---|---|---|---|
| nwtrace report --format json | **{nw_t:.2f}** | {rows / nw_t:,.0f} | {nw_cpu:.2f} | {rows / nw_cpu:,.0f} | **{nw_rss / 1024:.0f}** |
| DuckDB | {db_t:.2f} | {rows / db_t:,.0f} | {db_cpu:.2f} | {rows / db_cpu:,.0f} | {db_rss / 1024:.0f} |

Time ratio nwtrace / DuckDB: **{nw_t / db_t:.2f}** wall, **{nw_cpu / db_cpu:.2f}** CPU (target < 1). Peak RSS target: < 256 MiB.
Load average at the end (other work on the machine): {" ".join(load)}.

Runs (wall s / MiB / CPU s): nwtrace {", ".join("%.2f/%d/%.2f" % (t, r // 1024, c) for t, r, c in results["nwtrace"])}; DuckDB {", ".join("%.2f/%d/%.2f" % (t, r // 1024, c) for t, r, c in results["duckdb"])}
"""
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    for name in ("report-%s.md" % stamp, "report-latest.md"):
        with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
            f.write(md)
    print(md)
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
