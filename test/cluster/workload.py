"""workload.py — the cluster test's clients: writers that log every operation,
subscribers that log every event.

Runs on one asyncio loop in the client namespace (cluster.py puts the
process there before it starts this). Two kinds of client:

* Writers. Each one sends grabs, votes and bookings in turn to one server,
  paced (a fixed number of operations a second), each under a new name, on
  a connection of its own (Connection: close), so one operation is one
  connection and a reset names one operation. Every operation goes in the
  history with its server, start and end times and outcome:
    ok        2xx
    refused   4xx: the server decided and changed nothing
    failed    nothing happened for sure: a 503 that says "nothing was
              changed", or a connection that was never made (nothing sent)
    unknown   it may or may not have happened: any other 503 (the server's
              "may or may not have been made", "redis refused: ..."), a
              timeout, a reset or a close before the whole answer
  (the server's texts: engine/app.hpp, "With --redis: an answer from a script").
* Subscribers. One per stream route per server, and one /live of the three
  stateful streams per server, each logging every event (time, stream,
  version, data). A dropped stream is followed again after RECONNECT_S
  with Last-Event-ID, as a browser would (sooner than its 3 s retry: a test
  waits for nothing).

Shortcut: HTTP is spoken by hand, just enough for this server: a request
with Connection: close, an answer read to EOF; SSE read line by line. The
server is the thing under test, so nothing here tries to be lenient.
"""
import asyncio
import json
import random
import time
import urllib.parse

OP_TIMEOUT_S = 3.0  # well past --redis-timeout (1 s): a late answer is the server's, not ours
RECONNECT_S = 0.3
MAX_OPS = 50_000  # all writers together; a run at the set pace makes about 8,000
STREAM_ROUTES = {"redpacket": "/redpacket/events", "poll": "/vote/result-sse", "cinema": "/events"}
LIVE_ROUTE = "/live?stream=redpacket&stream=poll&stream=cinema"


class NotSent(Exception):
    """The connection was never made: the request did not leave."""


async def http_request(addr, method, path, form=None, headers=(), timeout_s=OP_TIMEOUT_S):
    """One request on a new connection. Returns (status, body text).
    Raises NotSent if it could not connect, asyncio.TimeoutError or an
    OSError (reset) after it may have been sent, ValueError on an answer
    that is not HTTP."""
    host, port = addr
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as e:
        raise NotSent(repr(e)) from e
    try:
        body = urllib.parse.urlencode(form).encode() if form is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        for h in headers:
            head += h + "\r\n"
        if form is not None:
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        raw = await asyncio.wait_for(reader.read(), timeout_s)  # to EOF: Connection: close
    finally:
        writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 "):
        raise ValueError(f"not an HTTP answer: {raw[:80]!r}")
    return int(head[9:12]), body.decode("utf-8", "replace")


def classify(status, body):
    """The outcome of an answered write (see the top of this file)."""
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "refused"
    if status == 503 and "nothing was changed" in body:
        return "failed"
    return "unknown"


class History:
    """Every operation, in the order they ended, and the phase each began in."""

    def __init__(self):
        self.ops = []
        self.phase = "start"
        self.in_flight = 0

    async def run(self, server, kind, who, addr, method, path, form):
        op = {"kind": kind, "who": who, "server": server, "phase": self.phase, "form": form,
              "start": time.time(), "end": None, "outcome": None, "status": None, "reply": None}
        self.in_flight += 1
        try:
            status, body = await http_request(addr, method, path, form)
            op["status"], op["outcome"] = status, classify(status, body)
            try:
                op["reply"] = json.loads(body)
            except ValueError:
                op["reply"] = body[:300]
        except NotSent as e:
            op["outcome"], op["reply"] = "failed", f"not sent: {e}"
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            op["outcome"], op["reply"] = "unknown", repr(e)
        finally:
            self.in_flight -= 1
        op["end"] = time.time()
        self.ops.append(op)
        return op


class Writers:
    """`count` writers per server, each `rate` operations a second: a grab,
    a vote and a booking in turn, each under a fresh name. They write while
    `writing` is set; drained() waits for the operations in flight."""

    def __init__(self, history, servers, showtimes, options, per_server=3, rate=25.0):
        self.history, self.servers, self.showtimes, self.options = history, servers, showtimes, options
        self.per_server, self.period_s = per_server, 1.0 / rate
        self.writing = asyncio.Event()
        self.stopped = False
        self.seq = 0
        self.rng = random.Random(1)

    def next_name(self, kind):
        self.seq += 1
        return f"{kind}-{self.seq}"

    def one_op(self, server, n):
        """The n-th operation of a writer on `server`: (kind, who, method, path, form)."""
        kind = ("grab", "vote", "book")[n % 3]
        who = self.next_name(kind)
        if kind == "grab":
            return kind, who, "POST", "/redpacket/grab", {"user": who}
        if kind == "vote":
            return kind, who, "POST", "/vote", {"voter": who, "option": self.rng.choice(self.options)}
        showtime = self.rng.choice(self.showtimes)
        seats = self.rng.randint(1, 3)
        return kind, who, "POST", f"/cinema/showtimes/{showtime}/book", {"user": who, "seats": str(seats)}

    async def writer(self, server, addr):
        n = 0
        next_at = time.monotonic()
        while not self.stopped and self.seq < MAX_OPS:
            await self.writing.wait()
            if self.stopped:
                break
            kind, who, method, path, form = self.one_op(server, n)
            n += 1
            await self.history.run(server, kind, who, addr, method, path, form)
            next_at = max(next_at + self.period_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())  # the pacing, not a wait for a condition

    def start(self):
        self.writing.set()
        return [asyncio.create_task(self.writer(name, addr))
                for name, addr in self.servers.items() for _ in range(self.per_server)]

    async def drained(self, deadline_s=OP_TIMEOUT_S * 2 + 1):
        """Stops new operations and waits (bounded) for those in flight."""
        self.writing.clear()
        end = time.monotonic() + deadline_s
        while self.history.in_flight and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return self.history.in_flight == 0

    async def stop(self, tasks):
        self.stopped = True
        self.writing.set()
        await asyncio.wait(tasks, timeout=OP_TIMEOUT_S * 2)


class Subscriber:
    """One stream route (or /live) on one server, followed until stop().
    events: (time, stream, version, data) for every event with an id;
    last: stream -> (version, data) of the newest; connects: how many times
    it connected; errors: (time, what) of events whose id names no version."""

    def __init__(self, server, addr, route):
        self.server, self.addr, self.route = server, addr, route
        self.name = f"{server} {route}"
        self.live = route.startswith("/live")
        self.stream = None if self.live else next(s for s, r in STREAM_ROUTES.items() if r == route)
        self.events, self.last, self.connects, self.errors = [], {}, 0, []
        self.last_id = None
        self.stopped = False

    def on_event(self, event_id, event_name, data):
        """One whole event. An id that does not name a version is the
        server's error: kept in `errors`, and the stream is followed anew."""
        if event_id is None:
            return
        try:
            if self.live:
                pairs = dict(p.split("=", 1) for p in event_id.split(","))
                stream, version = event_name, int(pairs[event_name])
            else:
                stream, version = self.stream, int(event_id)
        except (KeyError, ValueError) as e:
            self.errors.append((time.time(), f"id {event_id!r} event {event_name!r}: {e!r}"))
            raise ValueError(self.errors[-1][1]) from e
        self.last_id = event_id
        self.events.append((time.time(), stream, version, data))
        self.last[stream] = (version, data)

    async def follow_once(self):
        """One connection: the request, then events until it ends."""
        host, port = self.addr
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), OP_TIMEOUT_S)
        try:
            head = f"GET {self.route} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            if self.last_id is not None:
                head += f"Last-Event-ID: {self.last_id}\r\n"
            writer.write(head.encode() + b"\r\n")
            status = await asyncio.wait_for(reader.readline(), OP_TIMEOUT_S)
            if not status.startswith(b"HTTP/1.1 200"):
                raise ValueError(f"{self.name}: {status!r}")
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            self.connects += 1
            event_id, event_name, data = None, None, []
            while not self.stopped:
                line = (await reader.readline()).decode()
                if not line:
                    return  # the server closed the stream
                line = line.rstrip("\n")
                if line == "":
                    self.on_event(event_id, event_name, "\n".join(data))
                    event_id, event_name, data = None, None, []
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    event_name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        finally:
            writer.close()

    async def follow(self):
        while not self.stopped:
            try:
                await self.follow_once()
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
            if not self.stopped:
                await asyncio.sleep(RECONNECT_S)  # as a browser's retry, shorter


def subscribers_for(servers):
    return [Subscriber(name, addr, route) for name, addr in servers.items()
            for route in list(STREAM_ROUTES.values()) + [LIVE_ROUTE]]
