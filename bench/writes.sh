#!/usr/bin/env bash
# writes.sh — durable writes (grabs, votes) against the cheapest request, in one run.
#
# Protocol: starts two servers on 127.0.0.1, one on a fresh SQLite file and
# one on :memory:. The servers run on CPU 1 and wrk on CPU 0 (taskset), so
# the two do not trade places on the cores mid-run. Then, RUNS times,
# interleaved so drift hits all five: start a fresh 1,000,000-packet round
# on each (no run ever finds it empty), run
#   wrk -t1 -c50 -d$DURATION -s bench/wrk/grab.lua   against each,
#   wrk -t1 -c50 -d$DURATION -s bench/wrk/vote.lua   against each, and
#   wrk -t1 -c50 -d$DURATION                          on GET /healthz.
# Each figure is printed with the server's CPU use during it (100% = the
# whole of CPU 1: below that, the client was the limit, not the server).
# Checks that each write run really wrote (the store's row counter grew by
# at least 90% of the requests wrk counted). Prints the medians and the
# ratios to healthz computed run by run. Stops both servers by PID.
#
#   bench/writes.sh [RUNS=3] [DURATION=10s]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-10s}
make -s sse-server
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

start() {  # start NAME DB: runs a server; sets PORT_<NAME> and PID_<NAME>
  taskset -c 1 ./sse-server --port 0 --quiet --db "$2" --admin-token bench >"$dir/$1.out" 2>&1 &
  pids+=($!)
  printf -v "PID_$1" '%s' "$!"
  for _ in $(seq 100); do grep -q listening "$dir/$1.out" 2>/dev/null && break; sleep 0.05; done
  printf -v "PORT_$1" '%s' "$(head -1 "$dir/$1.out" | grep -o '[0-9]*$')"
}
rows() { curl -s "127.0.0.1:$1/metrics" | awk '/^sse_store_rows_written_total/ {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # the server's utime + stime
load() {  # load PORT PID [wrk args]: prints "<requests/s> <server CPU %>"
  local port=$1 pid=$2 t0 t1 s0 s1 out n before after; shift 2
  before=$(rows "$port")
  t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
  out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" "$@")
  t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
  after=$(rows "$port")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  if [[ "$*" == *.lua* ]] && [ $((after - before)) -lt $((n * 9 / 10)) ]; then
    echo "only $((after - before)) rows written for $n requests" >&2; exit 1
  fi
  awk -v d=$((t1 - t0)) -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" \
    '/Requests\/sec/ {printf "%s %.0f\n", $2, 100 * d / hz / (b - a)}' <<<"$out"
}
new_round() { curl -sf -o /dev/null -d 'total_cents=100000000&count=1000000&token=bench' "127.0.0.1:$1/redpacket/rounds"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start file "$dir/bench.db"
start mem ":memory:"
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, kernel $(uname -r), $(date -u +%FT%TZ)"
names=(grab_file grab_mem vote_file vote_mem healthz)
for r in $(seq "$RUNS"); do
  new_round "$PORT_file"; read -r v[0] c[0] < <(load "$PORT_file" "$PID_file" -s bench/wrk/grab.lua "http://127.0.0.1:$PORT_file/redpacket/grab")
  new_round "$PORT_mem"; read -r v[1] c[1] < <(load "$PORT_mem" "$PID_mem" -s bench/wrk/grab.lua "http://127.0.0.1:$PORT_mem/redpacket/grab")
  read -r v[2] c[2] < <(load "$PORT_file" "$PID_file" -s bench/wrk/vote.lua "http://127.0.0.1:$PORT_file/vote")
  read -r v[3] c[3] < <(load "$PORT_mem" "$PID_mem" -s bench/wrk/vote.lua "http://127.0.0.1:$PORT_mem/vote")
  read -r v[4] c[4] < <(load "$PORT_file" "$PID_file" "http://127.0.0.1:$PORT_file/healthz")
  line="run $r:"
  for i in 0 1 2 3 4; do
    line+="  ${names[$i]} ${v[$i]} (cpu ${c[$i]}%)"
    echo "${v[$i]}" >>"$dir/${names[$i]}"
    [ "$i" -lt 4 ] && awk -v a="${v[$i]}" -v h="${v[4]}" 'BEGIN {print a/h}' >>"$dir/ratio_${names[$i]}"
  done
  echo "$line"
done
for i in 0 1 2 3 4; do printf 'median %-10s %10s req/s' "${names[$i]}" "$(median <"$dir/${names[$i]}")"; [ "$i" -lt 4 ] && printf '   ratio to healthz %.2f' "$(median <"$dir/ratio_${names[$i]}")"; echo; done
