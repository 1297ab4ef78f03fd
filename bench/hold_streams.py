#!/usr/bin/env python3
"""hold_streams.py — what N idle SSE subscribers cost the server in memory.

Protocol: opens N connections to http://HOST:PORT/PATH (in order, blocking
connects), sends one GET each, and waits until every one has received its
first `data:` line (the snapshot a new subscriber gets at once). It reads the
server's VmRSS from /proc/PID/status before the first connection and again
half a second after the last snapshot, and prints both and the growth per
subscriber. Then it closes everything. Bounded: every read has a 10 s timeout.

Usage: bench/hold_streams.py --port P --pid PID [--streams 1000] [--path /sse]
"""
import argparse
import resource
import socket
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for pid %d" % pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--path", default="/sse")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    before = rss_kib(a.pid)
    request = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    socks = []
    for _ in range(a.streams):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.sendall(request)
        socks.append(s)
    for s in socks:
        got = b""
        while b"data:" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("a stream closed before its first event")
            got += chunk
    time.sleep(0.5)
    after = rss_kib(a.pid)
    print(f"streams={a.streams} rss_before_kib={before} rss_after_kib={after} "
          f"per_stream_bytes={(after - before) * 1024 / a.streams:.0f}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
