#!/usr/bin/python3
"""figures.py: the bench driver's helper: counter snapshots, deltas, the overhead join, the table.

  figures.py snap --redis SOCK --cloud URL --metrics URL --pid NAME=PID ... > snap.json
  figures.py delta BEFORE.json AFTER.json SAGAS > delta.json
  figures.py overhead EVENTS.tsv REQUESTS.json POLL_MS STEPS > overhead.json
  figures.py table RESULTS_DIR

Only the standard library (and redis-cli for INFO), so /usr/bin/python3 runs it anywhere.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def http_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def http_text(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def redis_info(sock, section):
    out = subprocess.run(["redis-cli", "-s", sock, "INFO", section], capture_output=True,
                         text=True, check=True).stdout
    info = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    return info


def proc_cpu_s(pid):
    """utime + stime of a live pid, in seconds (None if gone)."""
    try:
        stat = open("/proc/%s/stat" % pid).read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_schedstat(pid):
    """[ns on a CPU, ns runnable but waiting for a CPU] of a live pid's main thread, then the
    same summed over all its threads (cloudsim's loops, the worker's Redis thread and
    librdkafka's are not the main one), or None."""
    try:
        main = open("/proc/%s/schedstat" % pid).read().split()
        out = [int(main[0]), int(main[1]), 0, 0]
        for tid in os.listdir("/proc/%s/task" % pid):
            try:
                f = open("/proc/%s/task/%s/schedstat" % (pid, tid)).read().split()
            except OSError:  # the thread ended meanwhile
                continue
            out[2] += int(f[0])
            out[3] += int(f[1])
        return out
    except (OSError, IndexError, ValueError):
        return None


def proc_status(pid, key):
    try:
        for line in open("/proc/%s/status" % pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    except OSError:
        pass
    return None


def metrics(url):
    m = {}
    for line in http_text(url).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            m[name] = float(value)
        except ValueError:
            pass
    return m


def cmd_snap(args):
    redis = cloud = murl = None
    pids = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--redis":
            redis = args[i + 1]
        elif a == "--cloud":
            cloud = args[i + 1]
        elif a == "--metrics":
            murl = args[i + 1]
        elif a == "--pid":
            k, _, v = args[i + 1].partition("=")
            pids[k] = v
        else:
            sys.exit("figures.py snap: unknown argument " + a)
        i += 2
    snap = {"cpu_s": {}, "rss_kb": {}, "hwm_kb": {}, "sched": {}, "mono": time.monotonic()}
    for name, pid in pids.items():
        snap["sched"][name] = proc_schedstat(pid)
        snap["cpu_s"][name] = proc_cpu_s(pid)
        snap["rss_kb"][name] = proc_status(pid, "VmRSS")
        snap["hwm_kb"][name] = proc_status(pid, "VmHWM")
    if redis:
        cs = redis_info(redis, "commandstats")
        calls, usec = {}, {}
        for k, v in cs.items():
            m = re.search(r"calls=(\d+),usec=(\d+)", v)
            if k.startswith("cmdstat_") and m:
                calls[k[len("cmdstat_"):]] = int(m.group(1))
                usec[k[len("cmdstat_"):]] = int(m.group(2))
        snap["redis_calls"] = calls
        snap["redis_usec"] = usec
        cpu = redis_info(redis, "cpu")
        snap["redis_cpu_s"] = float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0))
        mem = redis_info(redis, "memory")
        snap["redis_used_memory"] = int(mem.get("used_memory", 0))
    if cloud:
        snap["cloud_requests"] = http_json(cloud + "/admin/requests?limit=1")["total"]
        snap["cloud_mutations"] = http_json(cloud + "/admin/mutations?limit=1")["counts"]
    if murl:
        snap["worker"] = metrics(murl)
    json.dump(snap, sys.stdout)


def cmd_delta(before_path, after_path, sagas):
    b = json.load(open(before_path))
    a = json.load(open(after_path))
    n = max(int(sagas), 1)
    d = {"sagas": int(sagas), "cpu_ms_per_saga": {}, "hwm_mb": {}}
    for k, v in a["cpu_s"].items():
        if v is not None and b["cpu_s"].get(k) is not None:
            d["cpu_ms_per_saga"][k] = (v - b["cpu_s"][k]) * 1000 / n
    for k, v in a["hwm_kb"].items():
        if v is not None:
            d["hwm_mb"][k] = v / 1024
    if "redis_calls" in a:
        calls = {k: v - b["redis_calls"].get(k, 0) for k, v in a["redis_calls"].items()}
        # the snapshots' own INFO calls are not the worker's
        calls = {k: v for k, v in calls.items() if v > 0 and k not in ("info",)}
        d["redis_calls_per_saga"] = {k: v / n for k, v in sorted(calls.items())}
        d["redis_executed_per_saga"] = sum(calls.values()) / n
        d["redis_cpu_ms_per_saga"] = (a["redis_cpu_s"] - b["redis_cpu_s"]) * 1000 / n
        us = {k: v - b["redis_usec"].get(k, 0) for k, v in a["redis_usec"].items()}
        # evalsha's usec include the commands its script ran
        d["redis_cmd_usec_per_saga"] = {k: v / n for k, v in sorted(us.items())
                                        if v > 0 and k != "info"}
    wall = a["mono"] - b["mono"]
    d["wall_s"] = wall
    d["sched_pct"] = {}
    for k, v in a["sched"].items():
        if v and b["sched"].get(k):
            run = (v[0] - b["sched"][k][0]) / 1e9
            wait = (v[1] - b["sched"][k][1]) / 1e9
            # the main thread on a CPU / runnable but no CPU free / the rest: blocked (I/O,
            # Redis replies, idle); then all threads' on a CPU and runnable, in % of one core
            d["sched_pct"][k] = {"on_cpu": 100 * run / wall, "runqueue": 100 * wait / wall,
                                 "blocked": 100 * max(wall - run - wait, 0) / wall}
            if len(v) == 4 and len(b["sched"][k]) == 4:
                d["sched_pct"][k]["all_on_cpu"] = 100 * (v[2] - b["sched"][k][2]) / 1e9 / wall
                d["sched_pct"][k]["all_runqueue"] = 100 * (v[3] - b["sched"][k][3]) / 1e9 / wall
    if "cloud_requests" in a:
        d["http_per_saga"] = (a["cloud_requests"] - b["cloud_requests"]) / n
        d["mutations_per_saga"] = {k: (v - b["cloud_mutations"].get(k, 0)) / n
                                   for k, v in a["cloud_mutations"].items()}
    if "worker" in a:
        wa, wb = a["worker"], b["worker"]

        def dw(name):
            return wa.get(name, 0) - wb.get(name, 0)
        d["worker_commands_per_saga"] = dw("meshbuy_redis_commands_total") / n
        d["worker_round_trips_per_saga"] = dw("meshbuy_redis_round_trips_total") / n
        d["worker_claims_per_saga"] = dw("meshbuy_saga_claims_total") / n
        d["worker_cloud_requests_per_saga"] = sum(
            dw('meshbuy_cloud_requests_total{outcome="%s"}' % o)
            for o in ("ok", "again", "permanent")) / n
        d["worker_retries"] = dw("meshbuy_saga_retries_total")
        d["worker_tick_overruns"] = dw("meshbuy_tick_overruns_total")
        d["worker_ticks"] = dw("meshbuy_ticks_total")
        d["worker_new_connections"] = dw("meshbuy_cloud_connections_total")
        d["checkpoint_ms"] = {p: hist_delta(wa, wb, "meshbuy_checkpoint_seconds", 'phase="%s"' % p)
                              for p in CK_PHASES}
    json.dump(d, sys.stdout)


# meshbuy_checkpoint_seconds's phases, in the worker's order (mb_saga_ck_phases)
CK_PHASES = ("held", "queue", "redis", "back")


def hist_delta(a, b, name, labels):
    """A histogram's growth between two /metrics snapshots: {n, mean, p50, p99} in ms, the
    quantiles interpolated within their bucket as PromQL's histogram_quantile does."""
    pre = '%s_bucket{%s,le="' % (name, labels)
    buckets = []
    for k, v in a.items():
        if k.startswith(pre):
            le = k[len(pre):-2]
            buckets.append((float("inf") if le == "+Inf" else float(le), v - b.get(k, 0)))
    buckets.sort()
    n = buckets[-1][1] if buckets else 0
    if n <= 0:
        return {"n": 0, "mean": None, "p50": None, "p99": None}
    total = a.get("%s_sum{%s}" % (name, labels), 0) - b.get("%s_sum{%s}" % (name, labels), 0)

    def quantile(q):
        lo, below = 0.0, 0
        for le, cum in buckets:
            if cum >= q * n:
                if le == float("inf"):
                    return lo * 1000
                return (lo + (le - lo) * (q * n - below) / max(cum - below, 1)) * 1000
            lo, below = le, cum
        return lo * 1000
    return {"n": int(n), "mean": total * 1000 / n, "p50": quantile(0.5), "p99": quantile(0.99)}


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[int(round((len(v) - 1) * p))]


def release_polls(calls):
    """The reads of a release after its create: each follows a deliberate poll wait.  A read
    before the create (a later attempt looks first) is not one."""
    creates = [r["seq"] for r in calls if r["method"] == "POST" and r["path"].endswith("/releases")]
    if not creates:
        return []
    return [r for r in calls if r["method"] == "GET" and "/releases/" in r["path"]
            and r["seq"] > min(creates)]


def cmd_overhead(events_path, requests_path, poll_ms, steps):
    """Per saga: (Running.occurred_at - first Installing.occurred_at) - sum of the cloud's own
    time for the saga's calls (cloudsim's request log) - the deliberate poll waits, divided
    by the steps.  Per step: the same between consecutive step events (means only: times are
    whole milliseconds)."""
    poll_ms = float(poll_ms)
    steps = int(steps)
    ev = {}
    for line in open(events_path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8:
            continue
        idx, cluster, status, step, seq, occ = f[0], f[1], f[2], f[3], int(f[4]), int(f[5])
        ev.setdefault(cluster, []).append((seq, status, step, occ))
    reqs = json.load(open(requests_path))["requests"]
    by_cluster = {}
    unattributed = []
    pat = re.compile(r"/(?:clusters|k8s)/([^/?]+)|security_group_id=([^&]+)-sg")
    for r in reqs:
        m = pat.search(r["path"])
        if not m:
            unattributed.append(r)
            continue
        cid = m.group(1) or m.group(2)
        by_cluster.setdefault(cid, []).append(r)
    # SG rule creations carry the group in the body only: their time is shared out evenly
    un_ms = sum(r.get("ms") or 0 for r in unattributed)
    per_saga_overhead, per_saga_cloud, per_saga_span, n_calls = [], [], [], []
    step_sum, step_n = {}, {}
    for cid, evs in ev.items():
        evs.sort()
        inst = [e for e in evs if e[1] == "Installing"]
        run = [e for e in evs if e[1] == "Running"]
        if not inst or not run:
            continue
        t0, t1 = inst[0][3], run[0][3]
        calls = [r for r in by_cluster.get(cid, []) if t0 - 1 <= r["t_ms"] <= t1 + 1]
        polls = len(release_polls(calls))
        cloud = sum(r.get("ms") or 0 for r in calls) + un_ms / max(len(ev), 1)
        span = t1 - t0
        per_saga_span.append(span)
        per_saga_cloud.append(cloud)
        n_calls.append(len(calls))
        per_saga_overhead.append((span - cloud - polls * poll_ms) / steps)
        # per step: from the previous step's event to this step's event
        marks = [(e[2], e[3]) for e in evs if e[1] in ("Installing", "Running")]
        for (pstep, pt), (step, t) in zip(marks, marks[1:]):
            c = [r for r in calls if pt <= r["t_ms"] < t]
            w = sum(r.get("ms") or 0 for r in c)
            if step == "install_release":
                w += poll_ms * len(release_polls(c))
            step_sum[step] = step_sum.get(step, 0) + (t - pt - w)
            step_n[step] = step_n.get(step, 0) + 1
    out = {
        "sagas": len(per_saga_overhead),
        "steps": steps,
        "poll_ms": poll_ms,
        "overhead_ms_per_step": {"p50": pct(per_saga_overhead, 0.5),
                                 "p90": pct(per_saga_overhead, 0.9),
                                 "p99": pct(per_saga_overhead, 0.99),
                                 "mean": sum(per_saga_overhead) / max(len(per_saga_overhead), 1)},
        "saga_span_ms": {"p50": pct(per_saga_span, 0.5), "p99": pct(per_saga_span, 0.99)},
        "cloud_ms_per_saga": {"p50": pct(per_saga_cloud, 0.5), "p99": pct(per_saga_cloud, 0.99)},
        "calls_attributed_per_saga": sum(n_calls) / max(len(n_calls), 1),
        "unattributed_calls": len(unattributed),
        "requests_in_log": len(reqs),
        "mean_overhead_ms_by_step": {k: step_sum[k] / step_n[k] for k in step_sum},
    }
    json.dump(out, sys.stdout)


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def cmd_table(d):
    rows = []
    t = load(os.path.join(d, "throughput.json"))
    if t:
        b, dl, rb = t["bench"], t["delta"], t.get("redis_bench", {})
        cmds = dl.get("worker_commands_per_saga") or 0
        rows.append(("throughput: sagas/s end to end (1 worker)", fmt(b["sagas_per_s"], 0),
                     ">= 1000", "%d orders, %.1f s" % (b["orders"], b["e2e_s"])))
        rows.append(("Redis commands/saga (worker-sent, EVALSHA=1)", fmt(cmds, 1),
                     "BullMQ ~150", "round trips/saga %s" % fmt(dl.get("worker_round_trips_per_saga"), 1)))
        rows.append(("Redis commands/saga executed (incl. in scripts)",
                     fmt(dl.get("redis_executed_per_saga"), 1), "", ""))
        if rb.get("set") and cmds:
            rows.append(("Redis bound: SET/s / commands per saga", fmt(rb["set"] / cmds, 0),
                         "", "redis-benchmark SET %s/s" % fmt(rb["set"], 0)))
        if rb.get("eval") and cmds:
            rows.append(("Redis bound: EVAL/s / commands per saga", fmt(rb["eval"] / cmds, 0),
                         "", "redis-benchmark EVAL %s/s" % fmt(rb["eval"], 0)))
        rc = dl.get("redis_cpu_ms_per_saga")
        if rc:
            rows.append(("Redis bound: 1 core / Redis CPU per saga", fmt(1000 / rc, 0), "",
                         "Redis CPU %s ms/saga" % fmt(rc, 3)))
        cpu = dl.get("cpu_ms_per_saga", {})
        ncpu = os.cpu_count() or 1
        if cpu.get("cloudsim"):
            rows.append(("cloudsim bound: %d cores / cloudsim CPU per saga" % ncpu,
                         fmt(ncpu * 1000 / cpu["cloudsim"], 0), "",
                         "cloudsim CPU %s ms/saga" % fmt(cpu["cloudsim"], 3)))
        total = sum(cpu.get(k) or 0 for k in ("worker", "cloudsim", "redis", "devkafka"))
        if total:
            rows.append(("machine bound: %d cores / CPU per saga of all" % ncpu,
                         fmt(ncpu * 1000 / total, 0), "",
                         "worker+cloudsim+redis+devkafka %s ms/saga" % fmt(total, 3)))
        rows.append(("HTTP calls/saga (cloudsim log)", fmt(dl.get("http_per_saga"), 1), "",
                     "worker counts %s" % fmt(dl.get("worker_cloud_requests_per_saga"), 1)))
        rows.append(("worker CPU ms/saga", fmt(cpu.get("worker"), 3), "BullMQ ~9",
                     "-> %s sagas/s per core" % (fmt(1000 / cpu["worker"], 0)
                                                 if cpu.get("worker") else "-")))
        rows.append(("CPU ms/saga cloudsim / redis / devkafka / meshbench",
                     " / ".join(fmt(cpu.get(k), 3) for k in ("cloudsim", "redis", "devkafka"))
                     + " / " + fmt(b.get("cpu_s", 0) * 1000 / max(b["orders"], 1), 3), "", ""))
        sp = dl.get("sched_pct", {}).get("worker")
        if sp:
            rows.append(("worker loop thread: on CPU / waiting CPU / blocked %",
                         "%.0f / %.0f / %.0f" % (sp["on_cpu"], sp["runqueue"], sp["blocked"]),
                         "", "(/proc/PID/schedstat over the run)"))
        rows.append(("worker peak RSS (throughput run), MB",
                     fmt(dl.get("hwm_mb", {}).get("worker"), 1), "", ""))
        rows.append(("publish->Running p50 / p99 ms (saturated)",
                     "%s / %s" % (fmt(b["latency_running"]["p50_ms"], 0),
                                  fmt(b["latency_running"]["p99_ms"], 0)), "", "queueing"))
    c = load(os.path.join(d, "concurrency.json"))
    if c:
        b, s = c["bench"], c["single"]
        single = s["latency_running"]["p50_ms"] / 1000
        ingest = b.get("last_accepted_s") or 0
        bound = 2 * single + ingest
        rows.append(("concurrency: %d orders all Running, s" % b["orders"], fmt(b["e2e_s"], 1),
                     "<= %.1f" % bound, "2 x single %.2f s + ingestion %.2f s" % (single, ingest)))
        rows.append(("concurrency: worker peak RSS, MB",
                     fmt(c["delta"].get("hwm_mb", {}).get("worker"), 1), "<= 64", ""))
        rows.append(("concurrency: publish->Running p50 / p99 s",
                     "%s / %s" % (fmt(b["latency_running"]["p50_ms"] / 1000, 1),
                                  fmt(b["latency_running"]["p99_ms"] / 1000, 1)), "", ""))
    i = load(os.path.join(d, "instructions.json"))
    if i and i.get("instructions") and i["bench"].get("running"):
        rows.append(("worker instructions per saga (callgrind), M",
                     fmt(i["instructions"] / i["bench"]["running"] / 1e6, 2), "",
                     "%d orders, start and stop included" % i["bench"]["running"]))
    for name in ("overhead", "overhead-low"):
        o = load(os.path.join(d, name + ".json"))
        if not o:
            continue
        ov, b = o["overhead"], o["bench"]
        rate = fmt(o.get("rate"), 0)
        rows.append(("overhead @%s/s: worker ms per step p50 / p99" % rate,
                     "%s / %s" % (fmt(ov["overhead_ms_per_step"]["p50"], 2),
                                  fmt(ov["overhead_ms_per_step"]["p99"], 2)), "",
                     "%d sagas, %s Running/s achieved" % (ov["sagas"],
                                                        fmt(b["sagas_per_s"], 0))))
        ck = o["delta"].get("checkpoint_ms")
        if ck and ck["held"]["n"]:
            rows.append(("overhead @%s/s: a checkpoint, mean ms: %s" % (rate, " / ".join(CK_PHASES)),
                         " / ".join(fmt(ck[p]["mean"], 2) for p in CK_PHASES), "",
                         "p99 " + " / ".join(fmt(ck[p]["p99"], 1) for p in CK_PHASES)))
        rows.append(("overhead @%s/s: publish->Running p50 / p99 ms" % rate,
                     "%s / %s" % (fmt(b["latency_running"]["p50_ms"], 0),
                                  fmt(b["latency_running"]["p99_ms"], 0)), "",
                     "cloud's own time/saga p50 %s ms" % fmt(ov["cloud_ms_per_saga"]["p50"], 1)))
    w1 = max([len(r[0]) for r in rows] + [10])
    print()
    print("%-*s  %14s  %-12s  %s" % (w1, "figure", "measured", "bar/ref", "note"))
    print("-" * (w1 + 50))
    for r in rows:
        print("%-*s  %14s  %-12s  %s" % (w1, r[0], r[1], r[2], r[3]))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "snap":
        cmd_snap(args)
    elif cmd == "delta":
        cmd_delta(*args)
    elif cmd == "overhead":
        cmd_overhead(*args)
    elif cmd == "table":
        cmd_table(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
