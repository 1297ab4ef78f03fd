#!/usr/bin/env python3
"""faults.py — what a locked database, closed big requests and many voters cost.

The three figures issue #13 asks for, each from a fresh server on
127.0.0.1 (--port 0, a database in a temporary directory), stopped by PID:

1. Locked database. Another connection (this script's, Python's sqlite3)
   holds the write lock (BEGIN IMMEDIATE) while 3 threads grab red packets
   as fast as they are answered, each on a new connection; meanwhile one
   keep-alive client sends GET /healthz 200 times, one at a time. Prints
   the /healthz p50 and p99 in ms, and how the grabs were answered.
2. Closed connections. 300 connections are open at once, each sends a POST
   with a 64 KiB body (the body limit) and reads its answer; then all close.
   Prints the server's VmRSS before, with all 300 open, and once the
   server reports them closed (/metrics), in KiB.
3. Voters. Votes under N new names of 32 characters (the size of a uid
   cookie) and of 64 (the longest name allowed), pipelined 500 at a time;
   prints the RSS growth per voter for each, after the votes are stored.
   The database's own page cache is bounded (SQLite's default, ~2 MiB),
   so the growth is the poll's memory.

Usage: bench/faults.py [--server ./sse-server] [--voters 200000]
"""
import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


class Server:
    def __init__(self, binary, *args):
        self.dir = tempfile.TemporaryDirectory()
        self.db = os.path.join(self.dir.name, "faults.db")
        self.proc = subprocess.Popen([binary, "--port", "0", "--bind", "127.0.0.1", "--quiet", "--db", self.db,
                                      "--admin-token", "bench", *args], stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        m = re.search(r":(\d+)$", line.strip())
        if not m:
            raise SystemExit(f"server did not start: {line!r}")
        self.port = int(m.group(1))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self.dir.cleanup()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s, buf=b""):
    """Reads one response with a Content-Length body; returns (status, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return 0, b"", b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: (\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head[9:12]), rest[:n], rest[n:]


def post(path, form):
    return (f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n{form}").encode()


def metric(port, name):
    s = connect(port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n")
    _, body, _ = read_response(s)
    s.close()
    m = re.search(rb"\n" + re.escape(name.encode()) + rb" ([0-9.e+]+)", body)
    return float(m.group(1)) if m else -1


def locked(binary):
    srv = Server(binary)
    other = sqlite3.connect(srv.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    stop = threading.Event()
    answers = {}

    def grab(k):
        for i in range(100000):
            if stop.is_set():
                return
            s = connect(srv.port)
            s.sendall(post("/redpacket/grab", f"user=g{k}-{i}"))
            status = read_response(s)[0]
            answers[status] = answers.get(status, 0) + 1
            s.close()

    threads = [threading.Thread(target=grab, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    probe = connect(srv.port)
    waits = []
    for _ in range(200):
        t0 = time.perf_counter()
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
        status = read_response(probe)[0]
        waits.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    stop.set()
    for t in threads:
        t.join()
    other.execute("ROLLBACK")
    srv.stop()
    waits.sort()
    print(f"locked database: /healthz p50 {statistics.median(waits):.2f} ms, p99 {waits[int(len(waits) * 0.99)]:.2f} ms"
          f" (200 probes); grabs answered {dict(sorted(answers.items()))}")


def closed_connections(binary):
    srv = Server(binary)
    before = rss_kib(srv.proc.pid)
    body = "option=" + "x" * (65536 - 7)
    socks = []
    for _ in range(300):
        s = connect(srv.port)
        s.sendall(post("/vote", body))
        socks.append(s)
    for s in socks:
        read_response(s)
    held = rss_kib(srv.proc.pid)
    for s in socks:
        s.close()
    deadline = time.time() + 10
    while metric(srv.port, "sse_connections_open") > 1 and time.time() < deadline:
        time.sleep(0.05)
    after = rss_kib(srv.proc.pid)
    srv.stop()
    print(f"300 closed 64 KiB-body connections: RSS {before} KiB at start, {held} KiB with all open, {after} KiB after"
          f" (+{after - before} KiB)")


def voters(binary, n, name_len):
    has_cap = b"--max-voters" in subprocess.run([binary, "--help"], capture_output=True).stdout  # older binaries: no cap
    srv = Server(binary, *(["--max-voters", str(n + 1)] if has_cap else []))
    s = connect(srv.port)
    before = rss_kib(srv.proc.pid)
    batch = 500
    for start in range(0, n, batch):
        wire = b"".join(post("/vote", f"voter={str(v).zfill(name_len)}&option=Auction") for v in range(start, min(n, start + batch)))
        s.sendall(wire)
        rest = b""
        for _ in range(min(n, start + batch) - start):
            status, _, rest = read_response(s, rest)
            assert status == 200, status
    after = rss_kib(srv.proc.pid)
    s.close()
    srv.stop()
    print(f"{n} voters with {name_len}-byte names: RSS +{after - before} KiB, {(after - before) * 1024 / n:.0f} B per voter")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="./sse-server")
    ap.add_argument("--voters", type=int, default=200000)
    a = ap.parse_args()
    print(f"server {a.server}; kernel {os.uname().release}")
    locked(a.server)
    closed_connections(a.server)
    voters(a.server, a.voters, 32)
    voters(a.server, a.voters, 64)


if __name__ == "__main__":
    main()
