#!/usr/bin/env bash
# instructions.sh — instructions the server spends per request, by callgrind.
#
# Protocol: for each server binary given (default ./sse-server), and for
# each of GET /healthz, a grab (a new user each time) and a vote (a new
# voter each time): starts the binary under `valgrind --tool=callgrind` on
# 127.0.0.1 with a fresh database file, sends 1,000 warm-up requests, zeroes
# the counters (callgrind_control), sends N more, dumps, and prints the
# server's instructions (Ir) per request. One keep-alive connection sends
# one request at a time, so every grab and vote is a loop turn and a commit
# of its own: the worst case for group commit, and the same every run.
# Instruction counts do not depend on how busy the machine is, so binaries
# can be compared from one run of this script. Stops each server by PID.
#
# The loop's thread only: the WAL checkpointer's thread is left out.
#
#   bench/instructions.sh [N=20000] [BINARY...]     (KEEP=dir keeps the profiles)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
shift || true
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=(./sse-server)
command -v valgrind >/dev/null || { echo "needs valgrind (make deps-bench)" >&2; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# send PORT KIND COUNT FROM: COUNT requests of KIND, one at a time; exits non-zero on an unexpected status.
send() {
  python3 - "$@" <<'EOF'
import socket, sys
port, kind, count, start = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def request(i):
    if kind == "healthz":
        return b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n", 200
    form = (f"user=u{i}" if kind == "grab" else f"voter=v{i}&option=Auction").encode()
    path = b"/redpacket/grab" if kind == "grab" else b"/vote"
    return (b"POST " + path + b" HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form), 200
buf = b""
for i in range(start, start + count):
    wire, want = request(i)
    s.sendall(wire)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buf) < n:
        buf += s.recv(65536)
    buf = buf[n:]
    if int(head[9:12]) != want:
        sys.exit(f"{kind} {i}: status {head[9:12].decode()}")
EOF
}

for bin in "${binaries[@]}"; do
  extra=()  # binaries from before --max-voters did not have it
  "$bin" --help | grep -q -- --max-voters && extra=(--max-voters 10000000)
  for kind in healthz grab vote; do
    rm -f "$dir"/*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.%p" "$bin" --port 0 --quiet --db "$dir/i.db" \
      --redpacket-count 1000000 --redpacket-total 100000000 "${extra[@]}" >"$dir/out" 2>"$dir/err" &
    pid=$!
    for _ in $(seq 200); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.05; done
    port=$(head -1 "$dir/out" | grep -o '[0-9]*$')
    [ -n "$port" ] || { echo "$bin did not start:" >&2; cat "$dir/err" >&2; exit 1; }
    send "$port" "$kind" 1000 0
    callgrind_control --zero "$pid" >/dev/null 2>&1
    send "$port" "$kind" "$N" 1000
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    # The dump asked for after zeroing holds only the N requests, one file per
    # thread; the loop's thread is -01 (the other is the WAL checkpointer,
    # whose work follows the WAL's size, not the requests). "totals:" is the sum.
    ir=$(awk '/^totals:/ {print $2}' "$dir"/cg.*.1-01)
    [ -z "${KEEP:-}" ] || cp "$dir"/cg.*.1-01 "$KEEP/$(basename "$bin").$kind.callgrind"
    printf '%-28s %-8s %8d Ir per request\n' "$bin" "$kind" $((ir / N))
  done
done
