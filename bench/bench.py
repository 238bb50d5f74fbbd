#!/usr/bin/env python3
"""Helpers for bench/run: parse sockperf and nwtrace output, read BPF program
stats, count CSV rows, and render the results as markdown.

bench/run does the orchestration; every run leaves a folder of logs, and this
file turns those folders into numbers.  Subcommands:

  sockperf LOG                 key=value lines parsed from one sockperf log
  tax LOG dd|pipe              syscalls/s of one tax workload run
  cputicks PID                 user+system CPU seconds of PID so far
  rows CSVROOT PID...          rows per PID in every nw_*.csv under CSVROOT
  bpfstats NWPID OUT.json      stats of the BPF programs that process NWPID holds
  report WORKDIR               the markdown report for a whole bench run
  sampler OUT BENCHPID [SECS]  log foreign CPU load every SECS until BENCHPID ends
  progs OUT.json TRACERPID     tracing BPF programs loaded now, and the tracer's
  quiet WORKDIR                the foreign load in the last sample
"""

import csv
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

# --------------------------------------------------------------------------
# Parsers


def _strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def parse_sockperf(path):
    """Everything bench/run needs from one sockperf log (client or server).

    sockperf 3.7 prints, for a ping-pong client:
      [Total Run] RunTime=3.000 sec; Warm up time=400 msec; SentMessages=N; ReceivedMessages=M
      [Valid Duration] RunTime=2.550 sec; SentMessages=N; ReceivedMessages=M
    and no message rate, so the rate is the valid-duration SentMessages over
    its RunTime.  A throughput client prints
      Total of N messages sent in 3.000 sec
      Summary: Message Rate is N [msg/sec]
    and a server, on SIGINT,
      Total N messages received and handled
    Newer sockperf versions also print "Summary: Message Rate is" for
    ping-pong; when present it wins.
    """
    out = {}
    try:
        text = _strip_ansi(open(path, errors="replace").read())
    except OSError:
        return out
    num = r"([0-9]+(?:\.[0-9]+)?)"
    m = re.search(r"\[Total Run\]\s*RunTime=" + num + r"\s*sec.*?SentMessages=(\d+);\s*ReceivedMessages=(\d+)", text)
    if m:
        out["total_runtime"] = float(m.group(1))
        out["total_sent"] = int(m.group(2))
        out["total_received"] = int(m.group(3))
    m = re.search(r"\[Valid Duration\]\s*RunTime=" + num + r"\s*sec;\s*SentMessages=(\d+);\s*ReceivedMessages=(\d+)", text)
    if m:
        out["valid_runtime"] = float(m.group(1))
        out["valid_sent"] = int(m.group(2))
        out["valid_received"] = int(m.group(3))
    m = re.search(r"Summary:\s*Message Rate is\s*" + num, text)
    if m:
        out["reported_rate"] = float(m.group(1))
    m = re.search(r"Total of (\d+) messages sent in " + num + r" sec", text)
    if m:
        out["tp_sent"] = int(m.group(1))
        out["tp_runtime"] = float(m.group(2))
    m = re.search(r"Total (\d+) messages received and handled", text)
    if m:
        out["server_received"] = int(m.group(1))
    m = re.search(r"avg-latency=" + num, text)
    if m:
        out["avg_latency_us"] = float(m.group(1))
    # The message rate of this run.
    if "reported_rate" in out:
        out["rate"] = out["reported_rate"]
    elif out.get("valid_runtime"):
        out["rate"] = out["valid_sent"] / out["valid_runtime"]
    elif out.get("total_runtime"):
        out["rate"] = out["total_sent"] / out["total_runtime"]
    return out


def parse_tax(path, workload):
    """Syscalls per second of one tax workload run.

    dd, stopped by SIGINT, prints
      N bytes (...) copied, T s, R kB/s
    with bs=1: N reads and N writes in T s.  `perf bench sched pipe -l L`
    prints
      Total time: T [sec]
    for L round trips of 2 writes and 2 reads."""
    out = {}
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return out
    if workload == "dd":
        m = re.search(r"(\d+) bytes .*copied, ([0-9.]+) s", text)
        if m and float(m.group(2)) > 0:
            out["ops"] = 2 * int(m.group(1))
            out["secs"] = float(m.group(2))
    elif workload == "pipe":
        m = re.search(r"Total time:\s*([0-9.]+)", text)
        loops = re.search(r"Executed (\d+) pipe operations", text)
        if m and loops and float(m.group(1)) > 0:
            out["ops"] = 4 * int(loops.group(1))
            out["secs"] = float(m.group(1))
    if out.get("secs"):
        out["rate"] = out["ops"] / out["secs"]
    cpu = parse_cputime(path)
    if cpu and out.get("ops"):
        out["cpu"] = cpu
        out["rate_cpu"] = out["ops"] / cpu
    return out


def parse_nwtrace_manifest(path):
    """The run's figures from nwtrace's manifest.json (the machine interface;
    the stderr summary is for people)."""
    try:
        m = json.load(open(path))
    except (OSError, ValueError):
        return None
    live = [f for f in m.get("files", []) if not f.get("deleted")]
    return {"rows": m.get("rows_written"), "files": len(live), "lost": m.get("events_lost"),
            "rows_lost": m.get("rows_lost"),
            "events": m.get("events_captured"), "finalized": m.get("finalized"),
            "programs": m.get("programs", [])}


def parse_time(path):
    """GNU time -f '%e %U %S %M' output: elapsed, user, sys, max RSS (KiB)."""
    try:
        lines = open(path).read().split("\n")
    except OSError:
        return None
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 4:
            try:
                e, u, s, m = float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])
            except ValueError:
                continue
            return {"elapsed": e, "user": u, "sys": s, "cpu": u + s, "maxrss_kib": m}
    return None


def read_kv(path):
    out = {}
    try:
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------
# Data gathering subcommands


def cmd_sockperf(args):
    for k, v in parse_sockperf(args[0]).items():
        print(f"{k}={v}")


def cmd_cputicks(args):
    """PID: its user+system CPU seconds so far, from /proc/PID/stat."""
    try:
        line = open(f"/proc/{args[0]}/stat").read()
        f = line[line.rfind(")") + 2:].split()
        print(f"cpu={(int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')}")
    except (OSError, IndexError, ValueError):
        pass


def parse_cputime(path):
    """The last 'cputime ELAPSED USER SYS' line (GNU time -f) of a file:
    the CPU seconds a workload used, whatever else ran on its CPU."""
    cpu = None
    try:
        for line in open(path, errors="replace"):
            f = line.split()
            if len(f) == 4 and f[0] == "cputime":
                cpu = float(f[2]) + float(f[3])
    except (OSError, ValueError):
        pass
    return cpu


def cmd_tax(args):
    for k, v in parse_tax(args[0], args[1]).items():
        print(f"{k}={v}")


def cmd_rows(args):
    root, pids = args[0], set(args[1:])
    counts = {p: 0 for p in pids}
    total = 0
    for path in sorted(glob.glob(os.path.join(root, "**", "nw_*.csv"), recursive=True)):
        with open(path, newline="", errors="replace") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                continue
            try:
                col = header.index("PID")
            except ValueError:
                col = 1
            for row in reader:
                total += 1
                if len(row) > col and row[col] in counts:
                    counts[row[col]] += 1
    print(f"rows_total={total}")
    for p in sorted(counts):
        print(f"rows_pid_{p}={counts[p]}")
    print(f"rows_pids={sum(counts.values())}")


TRACING_TYPES = {"tracepoint", "tracing", "kprobe", "raw_tracepoint", "perf_event", "lsm"}


def _fd_prog_ids(pid):
    ids = set()
    fddir = f"/proc/{pid}/fdinfo"
    try:
        for fd in os.listdir(fddir):
            try:
                for line in open(os.path.join(fddir, fd)):
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
            except OSError:
                pass
    except OSError:
        pass
    return ids


def _all_progs():
    try:
        raw = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=20).stdout
        return json.loads(raw or "[]")
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        print(f"bench: bpftool failed: {e}", file=sys.stderr)
        return []


def cmd_progs(args):
    """OUT.json TRACERPID: the tracing-type BPF programs loaded right now,
    and which of them the tracer (if any) holds, so that the report can
    flag other tracers (e.g. another nwtrace) running during a measurement."""
    out_path, pid = args[0], int(args[1]) if len(args) > 1 else 0
    mine = sorted(_fd_prog_ids(pid)) if pid > 0 else []
    progs = [{"id": p["id"], "name": p.get("name", "?"), "type": p.get("type")}
             for p in _all_progs() if p.get("type") in TRACING_TYPES]
    with open(out_path, "w") as f:
        json.dump({"tracer_ids": mine, "progs": progs}, f)


def cmd_bpfstats(args):
    """The BPF programs open in process NWPID (from /proc/PID/fdinfo), with
    run_time_ns and run_cnt from bpftool."""
    pid, out_path = args[0], args[1]
    ids = _fd_prog_ids(pid)
    progs = []
    for p in _all_progs():
        if p.get("id") in ids:
            progs.append({
                "id": p["id"],
                "name": p.get("name", "?"),
                "type": p.get("type", "?"),
                "run_time_ns": int(p.get("run_time_ns", 0)),
                "run_cnt": int(p.get("run_cnt", 0)),
            })
    with open(out_path, "w") as f:
        json.dump(progs, f)


def _proc_snapshot():
    """{pid: (ppid, cpu_ticks, starttime, comm)} for every process."""
    snap = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            line = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        lp, rp = line.find("("), line.rfind(")")
        comm = line[lp + 1:rp]
        f = line[rp + 2:].split()
        # f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
        try:
            snap[int(name)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[19]), comm)
        except (IndexError, ValueError):
            pass
    return snap


def cmd_sampler(args):
    """Every INTERVAL s, until BENCHPID ends: the CPU (in CPUs) used by
    processes that are not descendants of BENCHPID ("foreign"), by kernel
    threads, and by the bench's own processes.  Foreign load on a shared
    machine disturbs every figure, so the report shows it per run."""
    out_path, bench_pid = args[0], int(args[1])
    interval = float(args[2]) if len(args) > 2 else 1.0
    hz = os.sysconf("SC_CLK_TCK")
    prev, prev_t = _proc_snapshot(), time.monotonic()
    prev_boot_ticks = float(open("/proc/uptime").read().split()[0]) * hz
    with open(out_path, "a", buffering=1) as out:
        while os.path.exists(f"/proc/{bench_pid}"):
            time.sleep(interval)
            snap, now = _proc_snapshot(), time.monotonic()
            boot_ticks = float(open("/proc/uptime").read().split()[0]) * hz
            dt = (now - prev_t) * hz
            ours = {bench_pid}
            # Descendants of the bench: walk parents (a few levels).
            for pid in snap:
                p, seen = pid, 0
                while p > 1 and seen < 20:
                    if p == bench_pid:
                        ours.add(pid)
                        break
                    p = snap.get(p, (0,))[0]
                    seen += 1
            sums = {"foreign": 0, "kernel": 0, "ours": 0}
            per_comm = {}
            for pid, (ppid, ticks, start, comm) in snap.items():
                if pid in prev and prev[pid][2] == start:
                    d = ticks - prev[pid][1]
                elif start >= prev_boot_ticks - hz:
                    d = ticks  # started during this interval
                else:
                    continue
                if d <= 0:
                    continue
                if pid in ours:
                    kind = "ours"
                elif pid == 2 or ppid == 2:
                    kind = "kernel"
                else:
                    kind = "foreign"
                    per_comm[comm] = per_comm.get(comm, 0) + d
                sums[kind] += d
            top = max(per_comm.items(), key=lambda kv: kv[1]) if per_comm else ("-", 0)
            out.write(f"{time.time():.3f} {sums['foreign'] / dt:.3f} {sums['kernel'] / dt:.3f} "
                      f"{sums['ours'] / dt:.3f} {top[0].replace(' ', '_')}:{top[1] / dt:.2f}\n")
            prev, prev_t, prev_boot_ticks = snap, now, boot_ticks


def load_samples(work):
    samples = []
    try:
        for line in open(os.path.join(work, "load.txt")):
            f = line.split()
            if len(f) >= 5:
                samples.append((float(f[0]), float(f[1]), f[4]))
    except (OSError, ValueError):
        pass
    return samples


def foreign_during(samples, t0, t1):
    """Mean foreign CPUs over samples taken in [t0, t1 + 1], and the busiest
    foreign command seen."""
    sel = [s for s in samples if t0 + 0.5 <= s[0] <= t1 + 1.0]
    if not sel:
        return None, None
    top = max(sel, key=lambda s: float(s[2].rsplit(":", 1)[-1] or 0))[2]
    return sum(s[1] for s in sel) / len(sel), top


def cmd_quiet(args):
    """Prints the foreign load of the last sample (or 0), its busiest command,
    and how many tracing BPF programs are loaded (call it while none of the
    bench's own tracers runs)."""
    samples = load_samples(args[0])
    nbpf = sum(1 for p in _all_progs() if p.get("type") in TRACING_TYPES)
    print(f"{samples[-1][1]:.3f} {samples[-1][2]} {nbpf}" if samples else f"0 - {nbpf}")


# --------------------------------------------------------------------------
# Report


def fmt_int(x):
    return "–" if x is None else f"{int(round(x)):,}"


def fmt_f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def fmt_pct(x, nd=2):
    return "–" if x is None else f"{100 * x:.{nd}f} %"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load_runs(work):
    samples = load_samples(work)
    runs = []
    for d in sorted(glob.glob(os.path.join(work, "runs", "*"))):
        meta = read_kv(os.path.join(d, "meta"))
        if not meta:
            continue
        r = dict(meta)
        r["dir"] = d
        r["client"] = parse_sockperf(os.path.join(d, "client.log"))
        r["server"] = parse_sockperf(os.path.join(d, "server.log"))
        r["summary"] = parse_nwtrace_manifest(os.path.join(d, "manifest.json"))
        r["time"] = parse_time(os.path.join(d, "time.txt"))
        r["rows"] = read_kv(os.path.join(d, "rows"))
        try:
            r["bpf"] = json.load(open(os.path.join(d, "bpf.json")))
        except (OSError, ValueError):
            r["bpf"] = []
        # nwtrace's own figures come from its manifest (programs[] when BPF
        # statistics were on); bpftool's snapshot only gives the types, and
        # the peers' figures.
        if r["summary"] and r["summary"].get("programs"):
            known = {p["name"]: p for p in r["bpf"]}
            r["bpf"] = [{"id": known.get(p["name"], {}).get("id"), "name": p["name"],
                         "type": known.get(p["name"], {}).get("type", "?"),
                         "run_cnt": p["run_count"], "run_time_ns": p["run_time_ns"]}
                        for p in r["summary"]["programs"]]
        r["tax"] = parse_tax(os.path.join(d, "workload.log"), meta.get("workload", ""))
        # Ping-pong: messages per CPU second of the two sockperf processes.
        ccpu = parse_cputime(os.path.join(d, "client.time"))
        scpu = read_kv(os.path.join(d, "server.ticks")).get("cpu")
        r["pp_rate_cpu"] = None
        if ccpu and scpu and r["client"].get("total_sent"):
            r["pp_rate_cpu"] = r["client"]["total_sent"] / (ccpu + float(scpu))
        # The tracer's CPU seconds while the workload ran (/proc/PID/stat).
        t0 = read_kv(os.path.join(d, "tracer0.ticks")).get("cpu")
        t1 = read_kv(os.path.join(d, "tracer1.ticks")).get("cpu")
        r["cpu_during"] = float(t1) - float(t0) if t0 is not None and t1 is not None else None
        r["hwm_kib"] = None
        try:
            r["hwm_kib"] = int(open(os.path.join(d, "vmhwm")).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        # Flood: every client and server log.
        r["flood_clients"] = [parse_sockperf(p) for p in sorted(glob.glob(os.path.join(d, "client-*.log")))]
        r["flood_servers"] = [parse_sockperf(p) for p in sorted(glob.glob(os.path.join(d, "server-*.log")))]
        # Tracing BPF programs loaded during the run that are not the tracer's.
        other = {}
        for snap in ("progs0.json", "progs1.json"):
            try:
                j = json.load(open(os.path.join(d, snap)))
            except (OSError, ValueError):
                continue
            mine = set(j.get("tracer_ids", [])) | {p["id"] for p in r["bpf"]}
            for p in j.get("progs", []):
                if p["id"] not in mine:
                    other[p["id"]] = p["name"]
        r["other_bpf"] = other
        r["foreign"], r["foreign_top"] = None, None
        if "t0" in r and "t1" in r:
            r["foreign"], r["foreign_top"] = foreign_during(samples, float(r["t0"]), float(r["t1"]))
        runs.append(r)
    return runs


def tracer_label(t):
    if t.startswith("nwtrace:"):
        return f"nwtrace (backend {t.split(':', 1)[1]})"
    if t.startswith("nwtrace-base:"):
        return f"nwtrace baseline (backend {t.split(':', 1)[1]})"
    if t.startswith("nwtrace-top:"):
        return f"nwtrace top --json --record (backend {t.split(':', 1)[1]})"
    if t.startswith("nwtrace-cols:"):
        return f"nwtrace --columns tid,uid,cgroup,container,netns,cookie (backend {t.split(':', 1)[1]})"
    if t.startswith("nwtrace-tcpcols:"):
        return f"nwtrace --columns srtt,cwnd,retrans,seq (backend {t.split(':', 1)[1]})"
    if t.startswith("nwtrace-null:"):
        return f"nwtrace capture alone, rows discarded (backend {t.split(':', 1)[1]})"
    return {
        "bpftrace": "bpftrace: syscall enter/exit + sock_*_length, printf per event",
        "perf-trace": "`perf trace -a -e sendto,recvfrom`",
        "strace": "`strace -f -T -p <server>`",
    }.get(t, t)


def peak_rss_mib(r):
    kib = None
    if r["time"]:
        kib = r["time"]["maxrss_kib"]
    if r["hwm_kib"]:
        kib = max(kib or 0, r["hwm_kib"])
    return None if kib is None else kib / 1024


def bpf_total_ns(r):
    return sum(p["run_time_ns"] for p in r["bpf"]) if r["bpf"] else None


def pp_expected_ops(r):
    """Send/receive operations the two sockperf processes did, from their own
    counts: the client sent S and received R; the server received Q and
    replied to each, so it sent Q."""
    c, s = r["client"], r["server"]
    if "total_sent" not in c or "server_received" not in s:
        return None
    return c["total_sent"] + c["total_received"] + 2 * s["server_received"]


def report(work):
    env = read_kv(os.path.join(work, "env"))
    runs = load_runs(work)
    pp = [r for r in runs if r.get("kind") == "pp"]
    pp_cost = [r for r in runs if r.get("kind") == "ppcost"]
    flood = [r for r in runs if r.get("kind") == "flood"]
    tracers = env.get("tracers", "").split()
    L = []
    w = L.append

    w(f"# nwtrace benchmark, {env.get('stamp', '?')}")
    w("")
    w(f"- Machine: {env.get('cpu', '?')}, {env.get('ncpu', '?')} CPUs, kernel {env.get('kernel', '?')}, {env.get('os', '?')}")
    w(f"- nwtrace: `{env.get('nwtrace_rev', '?')}`; sockperf {env.get('sockperf_ver', '?')}; {env.get('bpftrace_ver', '?')}; perf {env.get('perf_ver', '?')}; strace {env.get('strace_ver', '?')}")
    w(f"- Mode: {env.get('mode', '?')}: {env.get('pairs', '?')} pairs of {env.get('secs', '?')} s ping-pong runs per tracer; "
      f"flood levels {env.get('flood_levels', '?')} of {env.get('flood_secs', '?')} s each")
    fl = [r["foreign"] for r in runs if r["foreign"] is not None]
    if fl:
        worst = max((r for r in runs if r["foreign"] is not None), key=lambda r: r["foreign"])
        w(f"- Other processes on the machine during the measured runs (\"foreign load\", sampled each second): "
          f"median {fmt_f(median(fl), 2)} CPUs, max {fmt_f(worst['foreign'], 2)} CPUs "
          f"(in {os.path.basename(worst['dir'])}, busiest: {worst['foreign_top']})."
          + (" **The machine was not quiet: the figures below are disturbed.**" if max(fl) > 0.1 else ""))
    w("")

    # ---------------------------------------------------------------- 1
    w("## 1. Overhead: TCP ping-pong, 64 B")
    w("")
    w("sockperf server and client pinned to CPU 0, tracer pinned to CPU 1. Each pair is one untraced and one "
      "traced run back to back (order alternates by pair). Ratio = traced msg rate / untraced msg rate; "
      "the figure is the median over pairs (1.0 = no cost). Msg rate = sockperf's messages per second "
      "over its valid duration (one message = one round trip = 4 send/recv operations).")
    w("")
    w("| Tracer | Ratio (median) | Ratios per pair | Untraced msg/s (median) | Traced msg/s (median) | Foreign load, max (CPUs) | Ratio, clean pairs (n) | Ratio per CPU second (median; per pair) |")
    w("|---|---|---|---|---|---|---|---|")
    untraced_all = []
    for t in tracers:
        pairs = {}
        dirty = set()
        fmax = None
        for r in pp:
            if r.get("tracer") != t:
                continue
            if r["foreign"] is not None:
                fmax = max(fmax or 0, r["foreign"])
            if r["other_bpf"] or r.get("error"):
                dirty.add(r.get("pair"))
            pairs.setdefault(r.get("pair"), {})[r.get("mode")] = r["client"].get("rate")
            pairs[r.get("pair")][r.get("mode") + "_cpu"] = r["pp_rate_cpu"]
        ratios, un, tr, clean, cpu_ratios = [], [], [], [], []
        for p in sorted(pairs, key=lambda x: int(x)):
            u, v = pairs[p].get("untraced"), pairs[p].get("traced")
            if u:
                un.append(u)
                untraced_all.append(u)
            if v:
                tr.append(v)
            if u and v is not None:
                ratios.append(v / u)
                if p not in dirty:
                    clean.append(v / u)
            uc, vc = pairs[p].get("untraced_cpu"), pairs[p].get("traced_cpu")
            if uc and vc:
                cpu_ratios.append(vc / uc)
        w(f"| {tracer_label(t)} | **{fmt_f(median(ratios))}** | {', '.join(fmt_f(x) for x in ratios) or '–'} "
          f"| {fmt_int(median(un))} | {fmt_int(median(tr))} | {fmt_f(fmax, 2)} | {fmt_f(median(clean))} ({len(clean)}) "
          f"| {fmt_f(median(cpu_ratios))}; {', '.join(fmt_f(x) for x in cpu_ratios) or '–'} |")
    w("")
    w("A pair is clean when no other tracing BPF program (e.g. another nwtrace, from tests running on the same "
      "machine) was loaded during either of its runs; foreign load is the CPU that processes outside the bench used "
      "during the runs. Ratio per CPU second = the same ratio with each run's messages divided by the CPU "
      "seconds the two sockperf processes used instead of by wall time: on a shared machine, other processes "
      "on CPU 0 take wall time from both runs of a pair unequally, but not CPU time (they still pollute the "
      "caches).")
    w("")
    mu = median(untraced_all)
    if mu:
        w(f"Untraced, all runs: median **{fmt_int(mu)} msg/s** (min {fmt_int(min(untraced_all))}, max {fmt_int(max(untraced_all))}, "
          f"n={len(untraced_all)}), i.e. about {fmt_int(4 * mu)} send/recv operations/s on one core.")
        w("")

    # ---------------------------------------------------------------- 2
    w("## 2. Completeness at that rate")
    w("")
    w("Each nwtrace-traced ping-pong run above (system-wide, no filter). Rows = CSV rows whose PID is the sockperf "
      "client or server. Expected = client SentMessages + ReceivedMessages ([Total Run], warm-up included) "
      "+ 2 × the server's \"messages received and handled\" (it replies to each).")
    w("")
    w("| Run | Traced msg/s | Rows (sockperf PIDs) | Expected ops | Rows / expected | All rows | Events lost |")
    w("|---|---|---|---|---|---|---|")
    nw_pp = [r for r in pp if r.get("tracer", "").startswith("nwtrace:") and r.get("mode") == "traced"]
    for r in nw_pp:
        rows = r["rows"].get("rows_pids")
        rows = int(rows) if rows is not None else None
        exp = pp_expected_ops(r)
        s = r["summary"] or {}
        w(f"| {r.get('tracer')} pair {r.get('pair')} | {fmt_int(r['client'].get('rate'))} | {fmt_int(rows)} | {fmt_int(exp)} "
          f"| {fmt_pct(rows / exp, 3) if rows is not None and exp else '–'} | {fmt_int(s.get('rows'))} | {fmt_int(s.get('lost'))} |")
    w("")

    # ---------------------------------------------------------------- 3
    base = env.get("baseline") or None
    rev = env.get("nwtrace_rev", "?")

    def binary(r):
        return f"baseline `{base}`" if r.get("tracer", "").startswith("nwtrace-base") else f"this `{rev}`"

    w("## 3. Capacity: UDP flood on loopback")
    w("")
    if not flood:
        w("Not run (`BENCH_SECTIONS` left out `flood`).")
        w("")
    else:
        w("N pairs of `sockperf tp --mps=max -m 64` UDP clients and `sockperf sr` servers on 127.0.0.1, unpinned, "
          "nwtrace with default settings (backend auto, 16M ring)"
          + (f", and the baseline binary `{base}` at each level in the same run (order alternating by level)" if base else "")
          + ". Offered ops/s = (messages the clients sent + messages the servers received) / the flood's "
          "duration. Rows/s = all of nwtrace's rows over the flood duration; sockperf rows = those whose PID is one "
          "of the sockperf processes. Lost = events lost in the ring buffer + rows not written (the manifest's "
          "`events_lost` + `rows_lost`). summary.json = whether record wrote its run summary (see section 4).")
        w("")
        w("| Sender pairs | Binary | Offered ops/s | Rows written | Rows/s | Lost | Lost % | sockperf rows / offered | summary.json | Foreign load (CPUs) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        by_bin = {}
        for r in sorted(flood, key=lambda r: (int(r.get("level", 0)), r.get("tracer", "") != "nwtrace")):
            secs = float(r.get("secs", 0)) or None
            sent = sum(c.get("tp_sent", 0) for c in r["flood_clients"])
            recv = sum(s.get("server_received", 0) for s in r["flood_servers"])
            offered = sent + recv
            s = r["summary"] or {}
            rows = s.get("rows")
            lost = None if s.get("lost") is None else s.get("lost") + (s.get("rows_lost") or 0)
            rate = rows / secs if rows is not None and secs else None
            sp_rows = int(r["rows"]["rows_pids"]) if "rows_pids" in r["rows"] else rows
            lostp = lost / (rows + lost) if rows is not None and lost is not None and rows + lost else None
            w(f"| {r.get('level')} | {binary(r)} | {fmt_int(offered / secs if secs and offered else None)} | {fmt_int(rows)} "
              f"| {fmt_int(rate)} | {fmt_int(lost)} | {fmt_pct(lostp)} "
              f"| {fmt_pct(sp_rows / offered) if sp_rows is not None and offered else '–'} | {r.get('summary_json', '?')} "
              f"| {fmt_f(r['foreign'], 2)} |")
            by_bin.setdefault(binary(r), []).append((int(r.get("level", 0)), rate, lost, offered / secs if secs else None))
        w("")
        for b, levels in by_bin.items():
            ok = [x for x in levels if x[2] == 0]
            bad = [x for x in levels if x[2]]
            if ok:
                top = max(ok, key=lambda x: x[0])
                line = (f"- {b}: highest level with 0 lost: **{top[0]} sender pair(s)**, {fmt_int(top[3])} offered ops/s, "
                        f"{fmt_int(top[1])} rows/s")
            else:
                line = f"- {b}: every level lost rows"
            if bad:
                first = min(bad, key=lambda x: x[0])
                line += f"; loss from {first[0]} pair(s) on ({fmt_int(first[2])} lost)."
            else:
                line += "; no loss at any level tried: the senders did not outrun the tracer on this machine."
            w(line)
        if base and len(by_bin) == 2:
            mine = {x[0]: x[2] for x in by_bin.get(f"this `{rev}`", [])}
            theirs = {x[0]: x[2] for x in by_bin.get(f"baseline `{base}`", [])}
            worse = [lv for lv in mine if mine[lv] is not None and theirs.get(lv) is not None and mine[lv] > theirs[lv]]
            w(f"- Levels where this binary lost more than the baseline: {', '.join(map(str, worse)) if worse else 'none'}.")
        w("")

    # ---------------------------------------------------------------- 4
    w("## 4. The tracer's own cost")
    w("")
    w("CPU s = nwtrace's user+sys seconds: over its whole life (GNU time; includes loading and attaching the BPF "
      "programs and the final flush), and while the workload ran (from /proc/PID/stat at the workload's start and "
      "end; 10 ms resolution), each per million rows written. The ping-pong cost runs are pinned like section 1 "
      "(sockperf on CPU 0, nwtrace and all its threads on CPU 1)"
      + (f", alternating with the baseline binary `{base}`" if base else "")
      + ". summary.json = whether record wrote its run summary (it gives the summary up rather than lose events "
      "when its thread falls behind: docs/architecture.md). Peak RSS = max RSS from GNU time (VmHWM just before stopping, if larger). BPF ns/row = the sum of "
      "run_time_ns over all of nwtrace's programs divided by rows written; it includes "
      "programs that fire on syscalls that make no row (e.g. read/write on non-sockets). These rows come from "
      "separate runs with kernel.bpf_stats_enabled=1 (the ping-pong cost runs, and the flood); the "
      "overhead pairs of section 1 ran with it off, since it adds two clock reads to every BPF program run.")
    w("")
    w("| Workload | Binary | Rows | CPU s, whole life | CPU s / M rows, whole life | CPU s during the workload | CPU s / M rows, during | Peak RSS MiB | BPF ns / row | Lost | summary.json |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    cost_rows = [(f"ping-pong, {r.get('tracer')} run {r.get('pair')}", r) for r in pp_cost]
    cost_rows += [(f"flood, {r.get('level')} pair(s)", r) for r in sorted(flood, key=lambda r: int(r.get("level", 0)))]
    per_bin = {}
    for label, r in cost_rows:
        s = r["summary"] or {}
        rows = s.get("rows")
        cpu = r["time"]["cpu"] if r["time"] else None
        during = r.get("cpu_during")
        bt = bpf_total_ns(r)
        w(f"| {label} | {binary(r)} | {fmt_int(rows)} | {fmt_f(cpu, 2)} | {fmt_f(cpu / rows * 1e6, 3) if cpu is not None and rows else '–'} "
          f"| {fmt_f(during, 2)} | {fmt_f(during / rows * 1e6, 3) if during is not None and rows else '–'} "
          f"| {fmt_f(peak_rss_mib(r), 1)} | {fmt_f(bt / rows, 0) if bt and rows else '–'} | {fmt_int(s.get('lost'))} "
          f"| {r.get('summary_json', '?')} |")
        if r in pp_cost and rows:
            e = per_bin.setdefault(binary(r), {"whole": [], "during": [], "rss": []})
            if cpu is not None:
                e["whole"].append(cpu / rows * 1e6)
            if during is not None:
                e["during"].append(during / rows * 1e6)
            if peak_rss_mib(r) is not None:
                e["rss"].append(peak_rss_mib(r))
    w("")
    if per_bin:
        w("Ping-pong cost runs, per binary: median (min–max, n):")
        w("")
        w("| Binary | CPU s / M rows, during the workload | CPU s / M rows, whole life | Peak RSS MiB |")
        w("|---|---|---|---|")

        def spread(xs, nd):
            return f"**{fmt_f(median(xs), nd)}** ({fmt_f(min(xs), nd)}–{fmt_f(max(xs), nd)}, {len(xs)})" if xs else "–"
        for b, e in per_bin.items():
            w(f"| {b} | {spread(e['during'], 3)} | {spread(e['whole'], 3)} | {spread(e['rss'], 1)} |")
        w("")

    def agg(rs):
        a = {}
        for r in rs:
            for p in r["bpf"]:
                e = a.setdefault(p["name"], [0, 0, p["type"]])
                e[0] += p["run_time_ns"]
                e[1] += p["run_cnt"]
        return a

    def mine(rs):
        return [r for r in rs if not r.get("tracer", "").startswith("nwtrace-base")]
    a_pp, a_fl = agg(mine(pp_cost)), agg(mine(flood))
    names = sorted(set(a_pp) | set(a_fl), key=lambda n: -(a_pp.get(n, [0, 0])[1] + a_fl.get(n, [0, 0])[1]))
    if names:
        w("BPF programs this nwtrace loaded, run_time_ns / run_cnt (over the ping-pong cost runs, and over all flood "
          "levels):")
        w("")
        w("| Program | Type | Ping-pong runs | Ping-pong ns/run | Flood runs | Flood ns/run |")
        w("|---|---|---|---|---|---|")
        for n in names:
            p, f = a_pp.get(n), a_fl.get(n)
            typ = (p or f)[2]
            w(f"| `{n}` | {typ} | {fmt_int(p[1]) if p else '–'} | {fmt_f(p[0] / p[1], 0) if p and p[1] else '–'} "
              f"| {fmt_int(f[1]) if f else '–'} | {fmt_f(f[0] / f[1], 0) if f and f[1] else '–'} |")
        w("")

    # ---------------------------------------------------------------- 5
    tax = [r for r in runs if r.get("kind") == "tax"]
    tax_cost = [r for r in runs if r.get("kind") == "taxcost"]
    if tax or tax_cost:
        w("## 5. The tax on syscalls that are not network I/O")
        w("")
        w("The tracers hook write/read/writev/readv, which a socket may be behind, and those hooks fire for "
          "every file, pipe and device too. Workloads pinned to CPU 0, tracer to CPU 1, no filter, untraced and "
          "traced runs alternating in pairs as in section 1: `dd if=/dev/zero of=/dev/null bs=1` (one read and one "
          "write per byte), and `perf bench sched pipe` (two processes bouncing a word over two pipes: 2 writes, "
          "2 reads and 2 context switches per round trip). Ratio = traced / untraced syscalls per second.")
        w("")
        w("Ratio per CPU second: the same with syscalls per CPU second of the workload (GNU time's user+sys), "
          "which other processes sharing CPU 0 do not distort (see section 1).")
        w("")
        w("| Workload | Tracer | Ratio (median) | Ratios per pair | Untraced syscalls/s (median) | Traced syscalls/s (median) | Foreign load, max (CPUs) | Ratio, clean pairs (n) | Ratio per CPU second (median; per pair) |")
        w("|---|---|---|---|---|---|---|---|---|")
        for wl in ("dd", "pipe"):
            for t in [t for t in dict.fromkeys(r.get("tracer") for r in tax if r.get("workload") == wl)]:
                pairs, dirty, fmax = {}, set(), None
                for r in tax:
                    if r.get("tracer") != t or r.get("workload") != wl:
                        continue
                    if r["foreign"] is not None:
                        fmax = max(fmax or 0, r["foreign"])
                    if r["other_bpf"] or r.get("error"):
                        dirty.add(r.get("pair"))
                    pairs.setdefault(r.get("pair"), {})[r.get("mode")] = r["tax"].get("rate")
                    pairs[r.get("pair")][r.get("mode") + "_cpu"] = r["tax"].get("rate_cpu")
                ratios, un, tr, clean, cpu_ratios = [], [], [], [], []
                for p in sorted(pairs, key=lambda x: int(x)):
                    u, v = pairs[p].get("untraced"), pairs[p].get("traced")
                    un += [u] if u else []
                    tr += [v] if v else []
                    if u and v is not None:
                        ratios.append(v / u)
                        if p not in dirty:
                            clean.append(v / u)
                    uc, vc = pairs[p].get("untraced_cpu"), pairs[p].get("traced_cpu")
                    if uc and vc:
                        cpu_ratios.append(vc / uc)
                w(f"| {wl} | {tracer_label(t)} | **{fmt_f(median(ratios))}** | {', '.join(fmt_f(x) for x in ratios) or '–'} "
                  f"| {fmt_int(median(un))} | {fmt_int(median(tr))} | {fmt_f(fmax, 2)} | {fmt_f(median(clean))} ({len(clean)}) "
                  f"| {fmt_f(median(cpu_ratios))}; {', '.join(fmt_f(x) for x in cpu_ratios) or '–'} |")
        w("")
        if tax_cost:
            w("Per-program cost on the same workloads, one traced run each with kernel.bpf_stats_enabled=1 "
              "(nwtrace's from its manifest's `programs[]`, bpftrace's from bpftool). ns/run includes what the "
              "statistics themselves add (two clock reads a run). Programs that did not run are left out.")
            w("")
            w("| Workload | Tracer | Program | Runs | ns/run | Syscalls/s in this run |")
            w("|---|---|---|---|---|---|")
            for r in tax_cost:
                for p in sorted(r["bpf"], key=lambda p: -p["run_cnt"]):
                    if not p["run_cnt"]:
                        continue
                    w(f"| {r.get('workload')} | {tracer_label(r.get('tracer', ''))} | `{p['name']}` | {fmt_int(p['run_cnt'])} "
                      f"| {fmt_f(p['run_time_ns'] / p['run_cnt'], 0)} | {fmt_int(r['tax'].get('rate'))} |")
            w("")

    # Warnings
    notes = []
    for r in runs:
        if r.get("error"):
            notes.append(f"- {os.path.basename(r['dir'])}: {r['error']}")
        if r["other_bpf"]:
            names = sorted(set(r["other_bpf"].values()))
            notes.append(f"- {os.path.basename(r['dir'])}: {len(r['other_bpf'])} other tracing BPF programs were loaded "
                         f"during the run (another tracer?): {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
        if r.get("kind") in ("tax", "taxcost") and r["tax"].get("rate") is None and not r.get("error"):
            notes.append(f"- {os.path.basename(r['dir'])}: no rate found in workload.log")
        if r.get("kind") == "pp" and r["client"].get("rate") is None and not r.get("error"):
            notes.append(f"- {os.path.basename(r['dir'])}: no sockperf rate found in client.log")
        if (r.get("tracer", "").startswith("nwtrace:") or r.get("kind") == "flood") and r.get("mode") != "untraced" and r["summary"] is None:
            notes.append(f"- {os.path.basename(r['dir'])}: no nwtrace manifest.json")
    busy = [r for r in runs if r["foreign"] is not None and r["foreign"] > 0.1]
    if busy:
        notes.append(f"- {len(busy)} of {len(runs)} runs had other processes using more than 0.1 CPU "
                     f"(busiest commands: {', '.join(sorted({(r['foreign_top'] or '?').rsplit(':', 1)[0] for r in busy}))}); "
                     "see the foreign-load columns.")
    if notes:
        w("## Problems during the run")
        w("")
        L.extend(notes)
        w("")
    w(f"Raw logs: `{work}`")
    return "\n".join(L) + "\n"


def cmd_report(args):
    sys.stdout.write(report(args[0]))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"progs": cmd_progs, "sockperf": cmd_sockperf, "rows": cmd_rows, "bpfstats": cmd_bpfstats, "report": cmd_report,
          "sampler": cmd_sampler, "quiet": cmd_quiet, "tax": cmd_tax,
          "cputicks": cmd_cputicks}.get(cmd)
    if fn is None:
        print(__doc__, file=sys.stderr)
        return 2
    fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
