#!/usr/bin/env python3
"""report.py — turns bench/results.tsv (written by bench/run.sh) into RESULTS.md.

Every figure is the median of the runs; every ratio is computed within one
run (same round of the interleaved schedule) and the median of those ratios
is shown, so drift between rounds cancels instead of adding up.

    python3 bench/report.py bench/results.tsv "<versions>" "<settings>" > bench/RESULTS.md
"""
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def main():
    path, versions, settings = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    http = defaultdict(dict)  # (server, target, conc) -> {run: (rps, cpu)}
    fan = defaultdict(dict)   # (server, size) -> {run: {p99, p50, ...}}
    errors = []               # (server, target, conc, run, count) of runs with 4xx/5xx answers
    rewrites = defaultdict(int)  # (server, target, conc) -> Redis AOF rewrites begun during its runs
    for r in rows:
        if r["kind"] == "http":
            extra = dict(kv.split("=", 1) for kv in r["extra"].split(";") if "=" in kv)
            http[(r["server"], r["target"], r["load"])][r["run"]] = (num(r["value"]), num(r["cpu_pct"]), num(extra.get("redis_cpu_pct")))
            rewrites[(r["server"], r["target"], r["load"])] += int(num(extra.get("aof_rewrites")) or 0)
            if num(extra.get("non2xx")):
                errors.append((r["server"], r["target"], r["load"], r["run"], int(num(extra["non2xx"]))))
        else:
            extra = dict(kv.split("=", 1) for kv in r["extra"].split(";") if "=" in kv)
            extra = {k: num(v) for k, v in extra.items()}
            extra["p99_ms"] = num(r["value"])
            fan[(r["server"], int(r["load"]))][r["run"]] = extra

    def rps(server, target, conc):
        return median([v[0] for v in http[(server, target, conc)].values()])

    def cpu(server, target, conc):
        return median([v[1] for v in http[(server, target, conc)].values()])

    def redis_cpu(server, target, conc):
        return median([v[2] for v in http[(server, target, conc)].values()])

    def ratio(a, b):  # median over runs of a/b; a, b are (server, target, conc) keys
        out = []
        for run, (va, _, _) in http[a].items():
            vb = http[b].get(run, (None, None, None))[0]
            if va and vb:
                out.append(va / vb)
        return median(out)

    print("# Benchmark results")
    print()
    print(f"Written by `make bench` (bench/run.sh, bench/report.py) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    print(f"Machine: {os.cpu_count()} cores, Linux {platform.release()}, {platform.machine()}; client and servers share it "
          "(servers pinned to CPU 1, load clients to CPU 0), over loopback.")
    print(f"Versions: {versions}.")
    print(f"Settings: {settings}. Each figure is the median of the runs; ratios are taken run by run, then the median.")
    print()
    print("Commands, per figure: `wrk -t1 -c{50,200} -d$DURATION [-s bench/wrk/grab.lua | vote.lua | book.lua] URL` and "
          "`bench/ssefan --port P --subscribers N --changes $FAN_CHANGES --gap-ms 300 ...` (see bench/run.sh for the exact "
          "peers' configurations). CPU is the server's use of its core during the run: under 100% the client was the limit.")
    print()

    print("## Requests per second")
    print()
    print("| request | conc | sse-server | sse-server :memory: | nginx | Node reference | sse/nginx | sse/Node |")
    print("|---|---|---|---|---|---|---|---|")
    for target in ["healthz", "index", "grab", "vote", "book"]:
        for conc in ["50", "200"]:
            cells = []
            for server in ["sse-server", "sse-memory", "nginx", "node"]:
                v = rps(server, target, conc)
                cells.append(f"{fmt(v)} ({fmt(cpu(server, target, conc))}%)" if v else "–")
            r_nginx = ratio(("sse-server", target, conc), ("nginx", target, conc))
            r_node = ratio(("sse-server", target, conc), ("node", target, conc))
            name = {"healthz": "GET /healthz", "index": "GET /", "grab": "POST grab", "vote": "POST vote", "book": "POST book"}[target]
            print(f"| {name} | {conc} | " + " | ".join(cells) + f" | {fmt(r_nginx, 2)} | {fmt(r_node, 1)} |")
    print()
    print("Server CPU in brackets. nginx answers `/healthz` with `return 200` and `/` from `public/` (open + sendfile); "
          "the Node reference's `/` is a small inline page, its grab and vote keep state in memory only. "
          "Booking is measured for sse-server only: the Node reference has no cinema. Each booking takes one seat "
          "for a new user, the showtimes taken in turn (bench/wrk/book.lua), over showtimes made fresh for the run.")
    print()
    if errors:
        print("Runs with 4xx or 5xx answers (wrk's \"Non-2xx or 3xx responses\"; a sold-out booking is a 409, "
              "an empty round a 410): their requests/s include those answers.")
        print()
        for server, target, conc, run, count in errors:
            print(f"- {server} {target} c={conc}, run {run}: {count:,}")
    else:
        print("No run had a 4xx or 5xx answer: no booking run sold out, no grab run emptied its round.")
    print()
    print("| durable write | conc | sse-server (file) / its /healthz | :memory: / /healthz |")
    print("|---|---|---|---|")
    for target in ["grab", "vote", "book"]:
        for conc in ["50", "200"]:
            a = ratio(("sse-server", target, conc), ("sse-server", "healthz", conc))
            b = ratio(("sse-memory", target, conc), ("sse-server", "healthz", conc))
            print(f"| POST {target} | {conc} | {fmt(a, 2)} | {fmt(b, 2)} |")
    print()
    print("A booking reads the showtime and the seats the user holds from SQLite, takes the seat with a conditional "
          "UPDATE and inserts the booking; a grab is decided in memory and appends one row, batched at commit. "
          "Bookings per grab, each pair from the same server in the same run:")
    print()
    print("| conc | sse-server (file) book ÷ grab | :memory: book ÷ grab |")
    print("|---|---|---|")
    for conc in ["50", "200"]:
        a = ratio(("sse-server", "book", conc), ("sse-server", "grab", conc))
        b = ratio(("sse-memory", "book", conc), ("sse-memory", "grab", conc))
        print(f"| {conc} | {fmt(a, 2)} | {fmt(b, 2)} |")
    print()

    print("## Writes through Redis (--redis)")
    print()
    print("One sse-server with `--redis` on a unix socket to its own redis-server (appendonly, fsync every second), "
          "both pinned to CPU 1: the core a SQLite-mode server has to itself. Each write is one Lua script (EVALSHA); "
          "a turn's scripts leave in one write and their replies are read in one pass. CPU in brackets: the "
          "server's, then Redis's. \"Redis alone\" is the rate at which Redis would fill a core of its own "
          "(requests/s ÷ its CPU share): what any number of processes in front of this one Redis can reach at most. "
          "AOF rewrites: how many Redis began during the row's runs; each is a forked child on the same core, "
          "whose CPU is in the Redis figure once Redis has reaped it (the append-only file grows by about 130 bytes a grab, 80 a vote).")
    print()
    print("| write | conc | SQLite file | :memory: | Redis mode (server, redis CPU) | Redis ÷ file | Redis ÷ :memory: | Redis alone | AOF rewrites |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target in ["grab", "vote", "book"]:
        for conc in ["50", "200"]:
            v = rps("sse-redis", target, conc)
            rc = redis_cpu("sse-redis", target, conc)
            alone = v / (rc / 100) if v and rc else None
            print(f"| POST {target} | {conc} | {fmt(rps('sse-server', target, conc))} ({fmt(cpu('sse-server', target, conc))}%) | "
                  f"{fmt(rps('sse-memory', target, conc))} ({fmt(cpu('sse-memory', target, conc))}%) | "
                  f"{fmt(v)} ({fmt(cpu('sse-redis', target, conc))}%, {fmt(rc)}%) | "
                  f"{fmt(ratio(('sse-redis', target, conc), ('sse-server', target, conc)), 2)} | "
                  f"{fmt(ratio(('sse-redis', target, conc), ('sse-memory', target, conc)), 2)} | {fmt(alone)} | "
                  f"{rewrites[('sse-redis', target, conc)]} |")
    print()

    print("## SSE fan-out: a vote (or an nchan publish) until every subscriber has it")
    print()
    print("Servers: sse-server (SQLite); floor (bench/floor.c: the same event bytes, one write() per subscriber in a "
          "plain loop, nothing else — the kernel's own cost); sse-redis (one process, `--redis`, the vote goes through "
          "Redis and comes back as a published change); sse-redis-2 (two processes on one port with `--reuse-port`, "
          "one per CPU, one Redis: the kernel splits the subscribers between them, RSS is their sum); nchan; node. "
          "Loop ms: the floor's own time in its write loop (the median of its broadcasts), what the kernel takes "
          "for the writes alone, without a client reading them.")
    print()
    print("| subscribers | server | p50 ms | p99 ms | max ms | loop ms | delivered | RSS per subscriber | connect ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    sizes = sorted({size for (_, size) in fan})
    servers = ["sse-server", "floor", "sse-redis", "sse-redis-2", "nchan", "node"]
    for size in sizes:
        for server in servers:
            runs = fan.get((server, size), {})
            if not runs:
                continue
            get = lambda k: median([r.get(k) for r in runs.values()])
            print(f"| {size:,} | {server} | {fmt(get('p50_ms'), 1)} | {fmt(get('p99_ms'), 1)} | {fmt(get('max_ms'), 1)} | "
                  f"{fmt(get('loop_ms') if server == 'floor' else None, 1)} | {fmt(get('delivered_pct'), 2)}% | {fmt(get('rss_per_sub_bytes'))} B | "
                  f"{fmt(get('connect_ms'))} |")
    print()
    print("| subscribers | p99 sse-server / nchan | p99 sse-server / Node | RSS per subscriber, sse-server / nchan |")
    print("|---|---|---|---|")

    def fan_ratio(size, other, key, me="sse-server"):
        out = []
        for run, mine in fan.get((me, size), {}).items():
            theirs = fan.get((other, size), {}).get(run)
            if theirs and mine.get(key) and theirs.get(key):
                out.append(mine[key] / theirs[key])
        return median(out)

    for size in sizes:
        print(f"| {size:,} | {fmt(fan_ratio(size, 'nchan', 'p99_ms'), 2)} | {fmt(fan_ratio(size, 'node', 'p99_ms'), 2)} | "
              f"{fmt(fan_ratio(size, 'nchan', 'rss_per_sub_bytes'), 3)} |")
    print()

    print("Against the floor and across processes, run by run (p50 and max: time until a subscriber has the change, "
          "measured by the client):")
    print()
    print("| subscribers | sse-server ÷ floor p50 | max | sse-redis ÷ floor p50 | max | sse-redis-2 ÷ sse-redis p50 | max | RSS/sub sse-redis ÷ sse-server |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        cells = [fan_ratio(size, "floor", "p50_ms"), fan_ratio(size, "floor", "max_ms"),
                 fan_ratio(size, "floor", "p50_ms", "sse-redis"), fan_ratio(size, "floor", "max_ms", "sse-redis"),
                 fan_ratio(size, "sse-redis", "p50_ms", "sse-redis-2"), fan_ratio(size, "sse-redis", "max_ms", "sse-redis-2"),
                 fan_ratio(size, "sse-server", "rss_per_sub_bytes", "sse-redis")]
        print(f"| {size:,} | " + " | ".join(fmt(c, 2) for c in cells) + " |")
    print()

    print("## Goals (issue #17), as measured")
    print()
    goals17 = []
    for target in ["grab", "vote"]:
        for conc in ["50", "200"]:
            r = ratio(("sse-redis", target, conc), ("sse-server", target, conc))
            goals17.append((f"{target} through Redis ≥ 0.5× the SQLite mode (c={conc}, Redis on the same core)", fmt(r, 2),
                            r is not None and r >= 0.5))
    m_redis = median([r.get("rss_per_sub_bytes") for r in fan.get(("sse-redis", 10000), {}).values()])
    m_sqlite = median([r.get("rss_per_sub_bytes") for r in fan.get(("sse-server", 10000), {}).values()])
    goals17.append(("RSS per subscriber in Redis mode no more than SQLite mode's (10,000)", f"{fmt(m_redis)} B vs {fmt(m_sqlite)} B",
                    m_redis is not None and m_sqlite is not None and m_redis <= m_sqlite * 1.05))
    q = fan_ratio(10000, "floor", "p50_ms", "sse-redis")
    goals17.append(("fan-out to 10,000 through Redis at the kernel floor (p50 ÷ floor's)", fmt(q, 2), q is not None and q <= 1.2))
    print("| goal | measured | met |")
    print("|---|---|---|")
    for name, value, met in goals17:
        print(f"| {name} | {value} | {'yes' if met else 'no'} |")
    print()

    print("## Goals (issue #7), as measured")
    print()
    goals = []
    for target in ["healthz", "index"]:
        r = ratio(("sse-server", target, "50"), ("nginx", target, "50"))
        goals.append((f"GET {'/healthz' if target == 'healthz' else '/'} at least nginx's requests/s (c=50)", fmt(r, 2), r is not None and r >= 1.0))
    for target in ["grab", "vote"]:
        r = ratio(("sse-server", target, "50"), ("sse-server", "healthz", "50"))
        goals.append((f"durable {target} ≥ 0.7× /healthz (c=50)", fmt(r, 2), r is not None and r >= 0.7))
        r = ratio(("sse-server", target, "50"), ("node", target, "50"))
        goals.append((f"durable {target} ≥ 10× the Node reference (c=50)", fmt(r, 1), r is not None and r >= 10))
    runs10 = fan.get(("sse-server", 10000), {})
    p99 = median([r.get("p99_ms") for r in runs10.values()])
    goals.append(("fan-out to 10,000: p99 ≤ 40 ms", f"{fmt(p99, 1)} ms", p99 is not None and p99 <= 40))
    q = fan_ratio(10000, "nchan", "p99_ms")
    goals.append(("fan-out to 10,000: p99 ≤ ¼ of nchan's", fmt(q, 2), q is not None and q <= 0.25))
    mem = median([r.get("rss_per_sub_bytes") for r in runs10.values()])
    goals.append(("≤ 2 KiB of RSS per idle subscriber (10,000)", f"{fmt(mem)} B", mem is not None and mem <= 2048))
    runs19 = fan.get(("sse-server", 19000), {})
    d19 = median([r.get("delivered_pct") for r in runs19.values()])
    goals.append(("19,000 subscribers, every change delivered to all", f"{fmt(d19, 2)}%", d19 == 100.0))
    print("| goal | measured | met |")
    print("|---|---|---|")
    for name, value, met in goals:
        print(f"| {name} | {value} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
