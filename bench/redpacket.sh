#!/usr/bin/env bash
# redpacket.sh — durable grabs against the cheapest request, in one run.
#
# Protocol: starts two servers on 127.0.0.1, one on a fresh SQLite file and
# one on :memory:. Then, RUNS times, interleaved so drift hits all three:
# start a fresh 1,000,000-packet round on each (so no run ever finds it
# empty), run `taskset -c 0 wrk -t1 -c50 -d10s -s bench/wrk/grab.lua` against each, and
# `taskset -c 0 wrk -t1 -c50 -d10s` on GET /healthz. Prints every figure, the medians,
# and the ratios grab/healthz computed run by run (median of those). Checks
# that each grab run really granted packets (the store's row counter grew by
# at least 90% of the requests wrk counted). Stops both servers by PID.
#
#   bench/redpacket.sh [RUNS=3] [DURATION=10s]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-10s}
make -s sse-server
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

start() {  # start NAME DB: runs a server, sets PORT_<NAME>
  taskset -c 1 ./sse-server --port 0 --quiet --db "$2" --admin-token bench >"$dir/$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$dir/$1.out" 2>/dev/null && break; sleep 0.05; done
  printf -v "PORT_$1" '%s' "$(head -1 "$dir/$1.out" | grep -o '[0-9]*$')"
}
rps() { awk '/Requests\/sec/ {print $2}'; }
rows() { curl -s "127.0.0.1:$1/metrics" | awk '/^sse_store_rows_written_total/ {print $2}'; }
new_round() { curl -sf -o /dev/null -d 'total_cents=100000000&count=1000000&token=bench' "127.0.0.1:$1/redpacket/rounds"; }
grab() {  # grab PORT: prints requests/s after checking the grants were real
  local before after out n
  new_round "$1"
  before=$(rows "$1")
  out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" -s bench/wrk/grab.lua "http://127.0.0.1:$1/redpacket/grab")
  after=$(rows "$1")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ $((after - before)) -lt $((n * 9 / 10)) ]; then echo "only $((after - before)) grants for $n requests" >&2; exit 1; fi
  rps <<<"$out"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start file "$dir/bench.db"
start mem ":memory:"
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq "$RUNS"); do
  f=$(grab "$PORT_file"); m=$(grab "$PORT_mem")
  h=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" "http://127.0.0.1:$PORT_file/healthz" | rps)
  echo "run $r: grab(file) $f  grab(:memory:) $m  healthz $h  ratios $(awk -v a="$f" -v b="$m" -v h="$h" 'BEGIN {printf "%.2f %.2f", a/h, b/h}')"
  echo "$f" >>"$dir/f"; echo "$m" >>"$dir/m"; echo "$h" >>"$dir/h"
  awk -v a="$f" -v h="$h" 'BEGIN {print a/h}' >>"$dir/rf"; awk -v a="$m" -v h="$h" 'BEGIN {print a/h}' >>"$dir/rm"
done
echo "median req/s: grab(file) $(median <"$dir/f")  grab(:memory:) $(median <"$dir/m")  healthz $(median <"$dir/h")"
echo "median ratio to healthz: file $(median <"$dir/rf")  :memory: $(median <"$dir/rm")"
