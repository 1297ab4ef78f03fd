#!/usr/bin/env bash
# redis_ab.sh — two builds of the server in the Redis mode, side by side in
# one run: what a change to the Redis path costs or saves, per write.
#
# Protocol: for each of OLD and NEW (two sse-server binaries), a
# redis-server of its own (unix socket in a temp dir, appendonly with fsync
# every second, as make run-cluster runs it) and the server with --redis,
# both on CPU 1; wrk on CPU 0. RUNS times, interleaved (old, new, old, ...)
# so drift hits both alike: a fresh round of a million packets (grab), a
# new poll (vote) or 20 new showtimes of 10,000 seats (book), then
# `wrk -t1 -c50 -d$DURATION` with bench/wrk/grab.lua, vote.lua or book.lua. Prints per run: requests/s, the server's and Redis's CPU per
# request (Redis's with its reaped children: AOF rewrites), the bytes the
# append-only dir grew per request (negative when a rewrite shrank it) and
# the rewrites Redis began; then the medians of requests/s. Stops every
# process by PID.
#
#   bench/redis_ab.sh OLD NEW [RUNS=5] [DURATION=5s] [grab|vote|book]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 RUNS=${3:-5} DURATION=${4:-5s} TARGET=${5:-grab}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
declare -A PORT SPID RPID SOCK
for n in old new; do
  mkdir "$dir/$n"
  SOCK[$n]=$dir/$n/redis.sock
  taskset -c 1 redis-server --port 0 --unixsocket "${SOCK[$n]}" --unixsocketperm 700 --dir "$dir/$n" \
    --appendonly yes --appendfsync everysec --save '' >"$dir/$n/redis.log" 2>&1 &
  RPID[$n]=$!; pids+=($!)
  for _ in $(seq 200); do [ -S "${SOCK[$n]}" ] && break; sleep 0.05; done
  bin=$OLD; [ $n = new ] && bin=$NEW
  taskset -c 1 "$bin" --port 0 --bind 127.0.0.1 --quiet --db "$dir/$n/x.db" --admin-token bench --redis "${SOCK[$n]}" >"$dir/$n/out" 2>&1 &
  SPID[$n]=$!; pids+=($!)
  for _ in $(seq 100); do grep -q listening "$dir/$n/out" 2>/dev/null && break; sleep 0.05; done
  PORT[$n]=$(head -1 "$dir/$n/out" | grep -o '[0-9]*$')
  for _ in $(seq 100); do [ "$(curl -s "127.0.0.1:${PORT[$n]}/healthz")" = ok ] && break; sleep 0.05; done
done
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }  # utime + stime, with reaped children's
aof() { du -sb "$dir/$1/appendonlydir" | cut -f1; }
rewrites() { redis-cli -s "${SOCK[$1]}" INFO persistence | tr -d '\r' | awk -F: '$1 == "aof_rewrites" {print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "old $OLD, new $NEW, $TARGET, $(nproc) cores, kernel $(uname -r), $(redis-server --version | grep -o 'v=[0-9.]*'), $(date -u +%FT%TZ)"
for r in $(seq "$RUNS"); do
  line="run $r"
  for n in old new; do
    p=${PORT[$n]}
    if [ "$TARGET" = grab ]; then
      curl -sf -o /dev/null -d 'total_cents=100000000&count=1000000&token=bench' "127.0.0.1:$p/redpacket/rounds"
      args=(-s bench/wrk/grab.lua "http://127.0.0.1:$p/redpacket/grab")
    elif [ "$TARGET" = vote ]; then
      curl -sf -o /dev/null -d 'question=Bench&options=Stock+ticker,Chat+room,Live+scores,Auction&token=bench' "127.0.0.1:$p/vote/polls"
      args=(-s bench/wrk/vote.lua "http://127.0.0.1:$p/vote")
    else  # book: 20 fresh showtimes of 10,000 seats each, 30 days ahead, taken in turn
      starts=$(date -u -d '+30 days' +%FT%TZ)
      for i in $(seq 20); do
        [ "$i" = 1 ] || echo next
        printf 'url = "http://127.0.0.1:%s/cinema/showtimes"\nheader = "Authorization: Bearer bench"\n' "$p"
        printf 'data = "movie=Bench&hall=Bench+%s&starts_at=%s&seats=10000"\n' "$i" "$starts"
      done >"$dir/showtimes.curl"
      first=$(curl -s -K "$dir/showtimes.curl" | grep -o '"showtime":{"id":[0-9]*' | grep -o '[0-9]*$' | head -1)
      args=(-s bench/wrk/book.lua "http://127.0.0.1:$p/cinema/showtimes" -- "$first" 20)
    fi
    s0=$(ticks "${SPID[$n]}"); r0=$(ticks "${RPID[$n]}"); a0=$(aof $n); w0=$(rewrites $n)
    out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" "${args[@]}")
    s1=$(ticks "${SPID[$n]}"); r1=$(ticks "${RPID[$n]}"); a1=$(aof $n); w1=$(rewrites $n)
    req=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    line+=$(awk -v n=$n -v rps="$rps" -v req="$req" -v s=$((s1 - s0)) -v rr=$((r1 - r0)) -v a=$((a1 - a0)) -v w=$((w1 - w0)) \
      -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "  %s %.0f/s server %.1f us, redis %.1f us, AOF %d B/req, rewrites %d", n, rps, s * 1e6 / hz / req, rr * 1e6 / hz / req, a / req, w}')
    echo "$rps" >>"$dir/rps_$n"
  done
  echo "$line"
done
echo "median requests/s: old $(median <"$dir/rps_old"), new $(median <"$dir/rps_new")"
