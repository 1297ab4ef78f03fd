#!/usr/bin/env bash
# live.sh — what following four streams on one /live connection costs, next
# to following one stream on its own route, in the same run (issue #26).
#
# Each run starts a fresh sse-server (SQLite file, CPU 1) for each kind of
# subscriber and points bench/ssefan (CPU 0) at it:
#   single  $SUBSCRIBERS subscribers of /vote/result-sse;
#   live    $SUBSCRIBERS subscribers of /live with all four streams (clock,
#           red packets, poll, cinema): each gets every stream's snapshot
#           on connecting; the clock ticks once a minute (--clock-interval
#           60), so what is timed is one change's fan-out alone;
#   ticking the same with the clock's default tick, once a second: 10,000
#           more writes a second, which a vote may find the loop busy with.
# Then $CHANGES votes, 300 ms apart; ssefan times each vote's tally
# reaching every subscriber and reads the server's RSS before the first
# connection and with all subscribed and idle. Runs alternate (single,
# live, ticking, single, ...) so drift hits all alike; each ratio is taken
# within a run, and the medians of $RUNS runs are printed:
#   rss_per_sub_bytes   the server's RSS growth per subscriber
#   max_ms, p99_ms      a vote's fan-out: until the last / the 99th
#                       percentile subscriber has it (the spread)
# Every server is stopped by PID; every wait is bounded.
#
#   bench/live.sh                       # RUNS=3 SUBSCRIBERS=10000 CHANGES=10
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
CHANGES=${CHANGES:-10}
LIVE_PATH='/live?stream=clock&stream=redpacket&stream=poll&stream=cinema'

make -s sse-server bench/ssefan
dir=$(mktemp -d /tmp/sse-live-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

# one KIND RUN: a fresh server, ssefan against it; prints ssefan's RESULT line.
one() {
  local kind=$1 run=$2 path=/vote/result-sse out clock=(--clock-interval 60)
  [ "$kind" != single ] && path=$LIVE_PATH
  [ "$kind" = ticking ] && clock=()
  taskset -c 1 ./sse-server --port 0 --quiet --db "$dir/$kind-$run.db" --max-voters 1000000000 "${clock[@]}" >"$dir/$kind-$run.out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$dir/$kind-$run.out" && break; sleep 0.05; done
  local port; port=$(head -1 "$dir/$kind-$run.out" | grep -o '[0-9]*$')
  out=$(taskset -c 0 ./bench/ssefan --port "$port" --path "$path" --subscribers "$SUBSCRIBERS" --changes "$CHANGES" \
          --gap-ms 300 --timeout-ms 15000 --pid "$pid" --trigger-body 'voter=fan{k}&option=Auction' --match '"total":{k}}' |
        grep '^RESULT' || echo "RESULT failed")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "$out"
}

get() { grep -o "$1=[^ ]*" <<<"$2" | cut -d= -f2; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "kernel $(uname -r), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo +changes), $SUBSCRIBERS subscribers, $CHANGES votes, $RUNS runs"
rows=()
for run in $(seq "$RUNS"); do
  s=$(one single "$run"); l=$(one live "$run"); t=$(one ticking "$run")
  echo "  run $run single:  ${s#RESULT }"
  echo "  run $run live:    ${l#RESULT }"
  echo "  run $run ticking: ${t#RESULT }"
  rows+=("$(get rss_per_sub_bytes "$s") $(get rss_per_sub_bytes "$l") $(get max_ms "$s") $(get max_ms "$l") $(get p99_ms "$s") $(get p99_ms "$l") $(get delivered_pct "$l") $(get max_ms "$t") $(get p99_ms "$t") $(get delivered_pct "$t")")
done
col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{print $c}' | median; }
ratio() { printf '%s\n' "${rows[@]}" | awk -v a="$1" -v b="$2" '{printf "%.3f\n", $b / $a}' | median; }
printf '\n%-44s %10s %10s %8s\n' "median of $RUNS runs" single live ratio
printf '%-44s %10s %10s %8s\n' "RSS per subscriber (bytes)" "$(col 1)" "$(col 2)" "$(ratio 1 2)"
printf '%-44s %10s %10s %8s\n' "a vote to every subscriber, max (ms)" "$(col 3)" "$(col 4)" "$(ratio 3 4)"
printf '%-44s %10s %10s %8s\n' "a vote to every subscriber, p99 (ms)" "$(col 5)" "$(col 6)" "$(ratio 5 6)"
printf '%-44s %10s %10s %8s\n' "ticking: a vote to every subscriber, max (ms)" "$(col 3)" "$(col 8)" "$(ratio 3 8)"
printf '%-44s %10s %10s %8s\n' "ticking: a vote to every subscriber, p99 (ms)" "$(col 5)" "$(col 9)" "$(ratio 5 9)"
printf '%-44s %10s %10s\n' "votes delivered (%): live, ticking" "$(col 7)" "$(col 10)"
