#!/usr/bin/env python3
"""cluster.py — three sse-servers in front of one Redis, on five machines made
of network namespaces, through faults; then a checker of what the clients saw.

The machines (namespaces named PREFIX<pid>-<role>, so two runs never meet):

    client ──10.78.i.0/24── s1, s2, s3 ──10.77.i.0/24── redis

  redis   redis-server on 10.77.0.1:6379 (an address on its loopback: only
          this namespace can reach it), appendonly yes, appendfsync everysec;
          and one relay per server (relay.cpp) on 10.77.i.1:6380, which
          delays every byte 1 ms ± 0.3 ms each way. A server reaches Redis
          only through its own relay, so one server's link can be cut or
          slowed alone.
  s1..s3  sse-server --redis 10.77.i.1:6380 --bind 10.78.i.2 --port 8080
  client  this process, once the namespaces are made: writers and
          subscribers (workload.py) reach the servers on 10.78.i.2:8080.

Every address exists only inside the namespaces this run makes. The kernel
this was written on has no netem and no iptables/nft, so the delay is the
relay's, and a partition is a blackhole route in the redis namespace toward
the server, with strict reverse-path filtering there: what Redis's side
sends vanishes and what the server sends is dropped on arrival, so TCP
times out on both ends, as across a real broken network (no RST, no ICMP).

The faults, one after another, each healed before the next (FAULTS below),
with writes and subscribers running throughout; after each heal the
checker (checker.py) is run on the history so far and on the state read
from Redis and from every server, and prints one line per invariant.

Everything it makes is removed on exit, after a failure or Ctrl-C too:
processes stopped by PID, namespaces deleted (their links go with them).
At start it removes what a run that died without cleaning left: namespaces
with our prefix whose pid is gone, and the processes inside them.

Before the faults it checks that the distance is there (a PING through each
relay takes at least 2 × (1 - 0.3) ms). Output: one line per invariant per
phase (and a line of the phase's write outcomes), then "N passed, M failed";
exit status 1 on any failure. A run takes about 45 s, at most 3 minutes.

Usage (as root: it needs CAP_NET_ADMIN, and says so in one line without it):
  test/cluster/cluster.py [--server ./sse-server] [--relay build/cluster-relay] [--keep-logs]
  test/cluster/cluster.py --faults cut-s1:8.5,kill-s2   some faults only, with their own hold
  test/cluster/cluster.py --selftest      the checker against a doctored history and state
With --keep-logs (and after a run that broke) the temp dir stays: each
process's log, and history.json (every operation and every event).
"""
import argparse
import asyncio
import ctypes
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
import workload  # noqa: E402

PREFIX = "sseclu"
SERVERS = ("s1", "s2", "s3")
REDIS_ADDR = "10.77.0.1"
REDIS_PORT = 6379
RELAY_PORT = 6380
HTTP_PORT = 8080
PUSH_GAP_MS = 100
PERIOD_S = 1  # --vote-interval and --schedule-interval; red packets repeat every second anyway
LINK_DELAY = (1.0, 0.3)  # ms each way, and its jitter
SLOW_DELAY = (200.0, 0.0)
HEALTHZ_WITHIN_S = 2.0
START_DEADLINE_S = 10.0
RUN_DEADLINE_S = 180.0  # the whole run, from the first namespace to the last check
CLONE_NEWNET = 0x40000000
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def redis_side(i):
    return f"10.77.{i}.1"


def server_side(i):
    return f"10.77.{i}.2"


def client_side(i):
    return f"10.78.{i}.1"


def server_addr(i):
    return f"10.78.{i}.2"


def sh(*argv, check=True):
    """Runs a command (ip, redis-cli) and returns its stdout; a failure
    raises with its stderr when `check`."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def enter_netns(name):
    """Moves this thread (asyncio's) into namespace `name`: sockets made from
    now on are made there, and so are threads started from now on (those of
    asyncio.to_thread), which begin in their creator's namespace. Python 3.11
    has no os.setns, so it is libc's, by ctypes."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


# ---- The machines: namespaces, links, processes ---------------------------------------------

class Cluster:
    """The namespaces and processes of one run, and the faults done to them.
    up() makes them, down() removes them, whatever up() got to."""

    def __init__(self, server_bin, relay_bin, tmp):
        self.server_bin, self.relay_bin, self.tmp = server_bin, relay_bin, tmp
        self.tag = f"{PREFIX}{os.getpid()}"
        self.namespaces = []
        self.procs = {}  # name -> Popen, every process we started and have not reaped
        self.token = secrets.token_hex(16)
        self.rss_start_kib = {}

    def ns(self, role):
        return f"{self.tag}-{role}"

    # -- start and stop --

    def add_ns(self, role):
        sh("ip", "netns", "add", self.ns(role))
        self.namespaces.append(self.ns(role))
        sh("ip", "-n", self.ns(role), "link", "set", "lo", "up")

    def link(self, a, a_if, a_ip, b, b_if, b_ip):
        """A veth pair made directly inside namespaces a and b (so no name
        is ever taken in ours), one /24 address on each end."""
        sh("ip", "link", "add", a_if, "netns", self.ns(a), "type", "veth", "peer", "name", b_if, "netns", self.ns(b))
        for ns, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            sh("ip", "-n", self.ns(ns), "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", self.ns(ns), "link", "set", ifname, "up")

    def make_network(self):
        for role in ("redis", "client") + SERVERS:
            self.add_ns(role)
        sh("ip", "-n", self.ns("redis"), "addr", "add", f"{REDIS_ADDR}/32", "dev", "lo")
        for i, s in enumerate(SERVERS, 1):
            self.link("redis", s, redis_side(i), s, "redis", server_side(i))
            self.link("client", s, client_side(i), s, "client", server_addr(i))
        # Strict reverse-path filtering: a packet from a server whose route
        # back is a blackhole is dropped on arrival (the partition's inbound half).
        sh("ip", "netns", "exec", self.ns("redis"), "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1",
           *(f"net.ipv4.conf.{s}.rp_filter=1" for s in SERVERS))

    def spawn(self, name, role, argv, env=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        # ip netns exec execs the command itself, so the PID is the process's.
        # A session of its own: a Ctrl-C at the terminal reaches us, not it;
        # we stop it, by PID, in order.
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), *argv], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()
        self.procs[name] = p
        return p

    def stop(self, name, sig=signal.SIGTERM, wait_s=3.0):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(wait_s)

    def wait_for(self, what, ready, deadline_s=START_DEADLINE_S):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} was not ready within {deadline_s} s (logs in {self.tmp})")

    def redis_cli(self, *args, check=True):
        return sh("ip", "netns", "exec", self.ns("redis"), "redis-cli", "-h", REDIS_ADDR, "-p", str(REDIS_PORT),
                  *args, check=check)

    def start_redis(self):
        conf = os.path.join(self.tmp, "redis.conf")
        os.makedirs(os.path.join(self.tmp, "redis"), exist_ok=True)
        with open(conf, "w") as f:
            f.write(f"bind {REDIS_ADDR}\nport {REDIS_PORT}\nprotected-mode no\ndir {self.tmp}/redis\n"
                    "appendonly yes\nappendfsync everysec\nsave \"\"\n")
        self.spawn("redis", "redis", ["redis-server", conf])
        self.wait_for("redis-server", lambda: self.redis_cli("PING", check=False).strip() == "PONG")

    def start_relay(self, i):
        name = f"relay{i}"
        control = os.path.join(self.tmp, f"{name}.control")
        with open(control, "w") as f:
            f.write("%g %g\n" % LINK_DELAY)
        self.spawn(name, "redis", [self.relay_bin, "--listen", f"{redis_side(i)}:{RELAY_PORT}",
                                   "--to", f"{REDIS_ADDR}:{REDIS_PORT}", "--delay-ms", str(LINK_DELAY[0]),
                                   "--jitter-ms", str(LINK_DELAY[1]), "--control", control])
        log = os.path.join(self.tmp, f"{name}.log")
        self.wait_for(name, lambda: "listening" in open(log).read())

    def server_argv(self, i):
        return [self.server_bin, "--redis", f"{redis_side(i)}:{RELAY_PORT}", "--bind", server_addr(i),
                "--port", str(HTTP_PORT), "--db", os.path.join(self.tmp, f"s{i}.db"),
                "--public", os.path.join(ROOT, "public"), "--push-gap-ms", str(PUSH_GAP_MS),
                "--vote-interval", str(PERIOD_S), "--schedule-interval", str(PERIOD_S),
                "--redpacket-total", "100000000", "--redpacket-count", "50000"]

    def start_server(self, i):
        env = dict(os.environ, SSE_ADMIN_TOKEN=self.token)
        self.spawn(f"s{i}", f"s{i}", self.server_argv(i), env=env)

    def redis_rtt_ms(self, i, pings=20):
        """The median time of a PING from server i's namespace through its
        relay: the distance its sse-server has to Redis."""
        probe = ("import socket, statistics, sys, time\n"
                 "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
                 "ms = []\n"
                 "for _ in range(int(sys.argv[3])):\n"
                 "    t = time.perf_counter(); s.sendall(b'PING\\r\\n'); assert s.recv(16) == b'+PONG\\r\\n'\n"
                 "    ms.append((time.perf_counter() - t) * 1000)\n"
                 "print(statistics.median(ms))\n")
        out = sh("ip", "netns", "exec", self.ns(f"s{i}"), sys.executable, "-c", probe, redis_side(i), str(RELAY_PORT), str(pings))
        return float(out)

    def rss_kib(self, name):
        with open(f"/proc/{self.procs[name].pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def up(self):
        self.make_network()
        enter_netns(self.ns("client"))
        self.start_redis()
        for i in range(1, len(SERVERS) + 1):
            self.start_relay(i)
        for i in range(1, len(SERVERS) + 1):
            self.start_server(i)

    def down(self):
        for name in list(self.procs):
            self.stop(name)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces = []

    # -- faults: each returns once it is in place; its heal undoes it --

    def cut(self, indexes):
        for i in indexes:
            sh("ip", "-n", self.ns("redis"), "route", "add", "blackhole", f"{server_side(i)}/32")

    def uncut(self, indexes):
        for i in indexes:
            sh("ip", "-n", self.ns("redis"), "route", "del", "blackhole", f"{server_side(i)}/32")

    def signal_redis(self, sig):
        os.kill(self.procs["redis"].pid, sig)

    def kill_redis(self):
        self.stop("redis", signal.SIGKILL)

    def kill_server(self, i):
        self.stop(f"s{i}", signal.SIGKILL)

    def set_delay(self, i, delay):
        with open(os.path.join(self.tmp, f"relay{i}.control"), "w") as f:
            f.write("%g %g\n" % delay)
        os.kill(self.procs[f"relay{i}"].pid, signal.SIGUSR1)


def remove_leftovers():
    """Namespaces of runs that died without cleaning up (their pid is gone):
    the processes inside them are that run's, stopped by PID; then the
    namespaces go, and that run's temp dir. (A run that failed but cleaned
    up leaves no namespace, so its logs stay.)"""
    for line in sh("ip", "netns", "list", check=False).splitlines():
        m = re.match(rf"^({PREFIX}(\d+)-\w+)", line)
        if not m or os.path.exists(f"/proc/{m.group(2)}"):
            continue
        for pid in sh("ip", "netns", "pids", m.group(1), check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        sh("ip", "netns", "del", m.group(1), check=False)
        print(f"cluster: removed {m.group(1)}, left by a run that died", file=sys.stderr)
        for tmp in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}{m.group(2)}-*")):
            shutil.rmtree(tmp, ignore_errors=True)


def have_net_admin():
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True


# ---- The run: workload, faults, checks ------------------------------------------------------

class Fault:
    """One fault: begin() puts it in place, it lasts hold_s (writes go on),
    heal() undoes it and returns once the cluster should work again."""

    def __init__(self, name, begin, hold_s, heal):
        self.name, self.begin, self.hold_s, self.heal = name, begin, hold_s, heal


def faults(c):
    def restart_redis():
        c.start_redis()

    def restart_server():
        c.start_server(2)
    return [
        Fault("none", lambda: None, 3, lambda: None),
        # 8.5 s: the heal lands 0.4 s into a reconnect attempt whose SYN was
        # lost (with writes flowing, a server's attempts start about 1.1, 2.3,
        # 3.7, 5.5 and 8.1 s after the cut: 100 ms doubling, each connect
        # given --redis-timeout), the slowest moment to recover from.
        Fault("cut-s1", lambda: c.cut([1]), 8.5, lambda: c.uncut([1])),
        Fault("cut-all", lambda: c.cut([1, 2, 3]), 8.5, lambda: c.uncut([1, 2, 3])),
        Fault("pause-redis", lambda: c.signal_redis(signal.SIGSTOP), 3, lambda: c.signal_redis(signal.SIGCONT)),
        Fault("kill-redis", c.kill_redis, 1, restart_redis),
        Fault("kill-s2", lambda: c.kill_server(2), 1, restart_server),
        Fault("slow-s3", lambda: c.set_delay(3, SLOW_DELAY), 4, lambda: c.set_delay(3, LINK_DELAY)),
    ]


class Run:
    """One run's clients and results: the servers' addresses, the history,
    the subscribers, and one (phase, invariant, passed, detail) per check."""

    def __init__(self, cluster, plan):
        self.c, self.plan = cluster, plan
        self.servers = {s: (server_addr(i), HTTP_PORT) for i, s in enumerate(SERVERS, 1)}
        self.history = workload.History()
        self.subscribers = workload.subscribers_for(self.servers)
        self.results = []

    def record(self, phase, invariant, passed, detail):
        self.results.append((phase, invariant, passed, detail))
        print(f"{phase:<12} {invariant:<22} {'pass' if passed else 'FAIL'}  {detail}", flush=True)

    async def dump(self):
        text = await asyncio.to_thread(self.c.redis_cli, "--raw", "--eval", os.path.join(HERE, "dump.lua"))
        return json.loads(text)

    async def healthz(self, name):
        try:
            status, body = await workload.http_request(self.servers[name], "GET", "/healthz", timeout_s=0.5)
            return status == 200 and body.strip() == "ok"
        except (workload.NotSent, OSError, asyncio.TimeoutError, ValueError):
            return False

    async def all_healthy_within(self, deadline_s):
        """Seconds until every server's /healthz said ok, or None past the deadline."""
        start = time.monotonic()
        pending = set(self.servers)
        while pending and time.monotonic() - start < deadline_s:
            for name in list(pending):
                if await self.healthz(name):
                    pending.discard(name)
            await asyncio.sleep(0.05)
        return None if pending else time.monotonic() - start

    async def add_showtimes(self):
        """The test's own showtimes: one small (booked out early, so three
        servers race for its last seats) and two large."""
        ids = []
        for movie, seats in (("Cluster Small", 40), ("Cluster Large A", 3000), ("Cluster Large B", 3000)):
            form = {"movie": movie, "hall": "Hall C", "starts_at": "2030-01-01T12:00:00Z", "seats": str(seats)}
            status, body = await workload.http_request(self.servers["s1"], "POST", "/cinema/showtimes", form,
                                                       headers=[f"Authorization: Bearer {self.c.token}"])
            if status != 201:
                raise RuntimeError(f"could not add a showtime: {status} {body}")
            ids.append(json.loads(body)["showtime"]["id"])
        return ids

    async def until_subscribed(self, deadline_s=START_DEADLINE_S):
        """Until every subscriber has had an event of each of its streams."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if all(len(s.last) == (3 if s.live else 1) for s in self.subscribers):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("some subscribers had no events within %g s" % deadline_s)

    def events(self):
        return {s.name: s.events for s in self.subscribers}

    def malformed(self, since):
        return [f"{s.name}: {what}" for s in self.subscribers for t, what in s.errors if t >= since]

    async def converged_within(self, deadline_s):
        """Polls the truth (Redis) and every subscriber's newest event of each
        stream, and a fresh read of each server, until all agree; returns
        (seconds, []) or (None, what was stale at the deadline)."""
        start = time.monotonic()
        stale = ["never compared"]
        while time.monotonic() - start < deadline_s:
            truth = checker.truth_views(await self.dump())
            lasts = {s.name: {stream: data for stream, (_, data) in s.last.items()} for s in self.subscribers}
            unread = []
            for name, addr in self.servers.items():
                try:
                    status, body = await workload.http_request(addr, "GET", "/cinema/showtimes", timeout_s=0.5)
                    if status != 200:
                        raise ValueError(f"{status} {body[:100]}")
                    lasts[f"{name} GET /cinema/showtimes"] = {"cinema": body}
                except (workload.NotSent, OSError, asyncio.TimeoutError, ValueError) as e:
                    unread.append((f"{name} GET /cinema/showtimes", repr(e)))
            stale = unread + checker.stale_views(lasts, truth)
            if not stale:
                return time.monotonic() - start, []
            await asyncio.sleep(0.1)
        return None, stale

    async def phase(self, fault, writers, base):
        """One fault: writes on through it and across its heal, then the checks."""
        self.history.phase = fault.name
        writers.writing.set()
        since = time.time()
        await asyncio.to_thread(fault.begin)
        await asyncio.sleep(fault.hold_s)  # the fault lasts this long: a duration, not a condition
        await asyncio.to_thread(fault.heal)
        # Measured past the 2 s it must take, so that a failure says by how much.
        healthy = asyncio.create_task(self.all_healthy_within(HEALTHZ_WITHIN_S + 3))
        await asyncio.sleep(1.0)  # writes go on across the heal, then stop for the checks
        drained = await writers.drained()
        took = await healthy
        self.record(fault.name, "healthz-ok-in-2s", took is not None and took <= HEALTHZ_WITHIN_S,
                    f"all ok after {took:.2f} s" if took is not None else f"not all ok within {HEALTHZ_WITHIN_S + 3} s")
        await self.check_converged(fault.name)
        phase_ops = [op for op in self.history.ops if op["phase"] == fault.name]
        counts = {k: sum(op["outcome"] == k for op in phase_ops) for k in ("ok", "refused", "failed", "unknown")}
        print(f"{fault.name:<12} {'(writes)':<22} {len(phase_ops)} ops: {counts}; all drained: {drained}", flush=True)
        await self.check_state(fault.name, base, since)
        self.check_rss(fault.name)

    async def check_converged(self, phase):
        """Now every server is back (or the check above failed) and the last
        write is answered: the truth must be on every subscriber within the
        push gap and one period, and 0.5 s for the relays and a
        subscriber's reconnect."""
        converge_s = PUSH_GAP_MS / 1000 + PERIOD_S + 0.5
        took, stale = await self.converged_within(converge_s)
        self.record(phase, "subscribers-converge", took is not None,
                    f"all show the truth after {took:.2f} s" if took is not None
                    else f"{len(stale)} stale after {converge_s:.1f} s: {stale[:3]}")

    async def check_state(self, phase, base, since):
        """The invariants of the history so far against the state now, and of
        the events since the phase began."""
        state, ops, events = await self.dump(), self.history.ops, self.events()
        for name, (passed, detail) in (("ok-writes-stored", checker.check_ok_stored(ops, state)),
                                       ("failed-not-stored", checker.check_none_stored(ops, state)),
                                       ("one-packet-each", checker.check_holdings(ops, state)),
                                       ("seats-within", checker.check_seats(state, base)),
                                       ("tallies-are-voters", checker.check_tallies(state)),
                                       ("versions-forward", checker.check_versions(events, since, self.malformed(since))),
                                       ("one-id-one-text", checker.check_same_bytes(events))):
            self.record(phase, name, passed, detail)

    def check_rss(self, phase):
        grown = {}
        for s in SERVERS:
            if s not in self.c.rss_start_kib:  # restarted: its start is now
                self.c.rss_start_kib[s] = self.c.rss_kib(s)
            grown[s] = (self.c.rss_kib(s) - self.c.rss_start_kib[s]) / 1024
        worst = max(grown.values())
        self.record(phase, "rss-within-50MB", worst <= 50,
                    "grown " + ", ".join(f"{s} {mb:+.1f} MB" for s, mb in grown.items()))

    async def main(self):
        took = await self.all_healthy_within(START_DEADLINE_S)
        if took is None:
            raise RuntimeError(f"the servers did not say ok on /healthz within {START_DEADLINE_S} s (logs in {self.c.tmp})")
        # Each way 1 ms less its jitter at the least: a relay that does not
        # delay would make every other figure here describe a LAN of zero.
        rtts = [await asyncio.to_thread(self.c.redis_rtt_ms, i) for i in range(1, len(SERVERS) + 1)]
        least = 2 * (LINK_DELAY[0] - LINK_DELAY[1])
        self.record("start", "redis-is-distant", min(rtts) >= least,
                    "median PING through each relay " + ", ".join(f"{r:.2f}" for r in rtts) + f" ms (at least {least:.1f})")
        showtimes = await self.add_showtimes()
        sub_tasks = [asyncio.create_task(s.follow()) for s in self.subscribers]
        await self.until_subscribed()
        base = await self.dump()
        for s in SERVERS:
            self.c.rss_start_kib[s] = self.c.rss_kib(s)
        writers = workload.Writers(self.history, self.servers, showtimes, base["poll"]["options"])
        writer_tasks = writers.start()
        try:
            for fault in self.plan:
                if fault.name.startswith("kill-s2"):
                    self.c.rss_start_kib.pop("s2", None)
                await self.phase(fault, writers, base)
        finally:
            await writers.stop(writer_tasks)
            for s in self.subscribers:
                s.stopped = True
            for t in sub_tasks:
                t.cancel()
            await asyncio.gather(*sub_tasks, return_exceptions=True)
        with open(os.path.join(self.c.tmp, "history.json"), "w") as f:
            json.dump({"ops": self.history.ops, "events": self.events()}, f)


def fault_plan(c, spec):
    """The faults to run: all of them in order, or --faults NAME[:HOLD_S],...
    (a name may repeat; a phase with its own hold is named NAME@HOLD_S)."""
    catalogue = {f.name: f for f in faults(c)}
    if not spec:
        return list(catalogue.values())
    plan = []
    for item in spec.split(","):
        name, _, hold = item.partition(":")
        if name not in catalogue:
            raise SystemExit(f"cluster: no fault {name!r}; the faults: {', '.join(catalogue)}")
        f = catalogue[name]
        plan.append(Fault(f"{name}@{hold}s", f.begin, float(hold), f.heal) if hold else f)
    return plan


def on_stop_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default=os.path.join(ROOT, "sse-server"))
    ap.add_argument("--relay", default=os.path.join(ROOT, "build", "cluster-relay"))
    ap.add_argument("--keep-logs", action="store_true", help="keep the temp dir (logs, history.json)")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--faults", default="", help="NAME[:HOLD_S],... instead of every fault in turn")
    args = ap.parse_args()
    if args.selftest:
        missed = checker.selftest()
        print(f"{len(checker.doctorings()) - missed} passed, {missed} failed")
        return 1 if missed else 0
    if not have_net_admin():
        print("cluster: needs CAP_NET_ADMIN (run as root) to make network namespaces; nothing was tested")
        return 1
    for binary in (args.server, args.relay):
        if not os.access(binary, os.X_OK):
            print(f"cluster: {binary} is missing: make sse-server build/cluster-relay")
            return 1
    remove_leftovers()
    # Ctrl-C is KeyboardInterrupt even where our parent ignored SIGINT (a
    # shell's background job), so that it always ends in the clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGHUP, on_stop_signal)
    tmp = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")  # named as the namespaces: see remove_leftovers
    c = Cluster(os.path.abspath(args.server), os.path.abspath(args.relay), tmp)
    run = Run(c, fault_plan(c, args.faults))
    started = time.monotonic()
    error = None
    try:
        c.up()
        asyncio.run(asyncio.wait_for(run.main(), RUN_DEADLINE_S - (time.monotonic() - started)))
    except KeyboardInterrupt as e:
        error = e
    except Exception as e:  # a broken run is a failure with its traceback, never a silent pass
        traceback.print_exc()
        error = e
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        c.down()
        if args.keep_logs or error:
            print(f"cluster: logs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(r[2] for r in run.results)
    failed = len(run.results) - passed + (error is not None)
    if error:
        print(f"cluster: stopped: {error!r}")
    print(f"cluster: {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
