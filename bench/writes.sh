#!/usr/bin/env bash
# writes.sh — durable writes (grabs, votes, bookings) against the cheapest request, in one run,
# and the same writes through Redis (--redis) against the SQLite mode.
#
# Protocol: starts three servers on 127.0.0.1: one on a fresh SQLite file,
# one on :memory:, and one with --redis on its own redis-server (a unix
# socket in a temp dir, appendonly with fsync every second, as make
# run-cluster runs it). The servers and redis-server run on CPU 1 and wrk on
# CPU 0 (taskset), so the two do not trade places on the cores mid-run, and
# a write through Redis has only the core a write through SQLite has. Then,
# RUNS times, interleaved so drift hits every server alike: start a fresh
# 1,000,000-packet round, a new poll and 20 showtimes of 10,000 seats 30
# days ahead on each (no run ever finds the round empty, the poll full or
# the seats sold), run
#   wrk -t1 -c50 -d$DURATION -s bench/wrk/grab.lua   against each,
#   wrk -t1 -c50 -d$DURATION -s bench/wrk/vote.lua   against each,
#   wrk -t1 -c50 -d$DURATION -s bench/wrk/book.lua   against each (a new user a seat), and
#   wrk -t1 -c50 -d$DURATION                          on GET /healthz.
# Each figure is printed with the server's CPU use during it (100% = the
# whole of CPU 1: below that, the client was the limit, not the server),
# and for the Redis mode with Redis's after it. Checks that each write run
# really wrote (the SQLite store's row counter, or the Redis commands the
# server sent, grew by at least 90% of the requests wrk counted). Prints the
# medians, the ratios to healthz and Redis ÷ file, each computed run by run.
# Stops every server by PID.
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

start() {  # start NAME DB [flags]: runs a server; sets PORT_<NAME> and PID_<NAME>
  local name=$1 db=$2; shift 2
  taskset -c 1 ./sse-server --port 0 --quiet --db "$db" --admin-token bench "$@" >"$dir/$name.out" 2>&1 &
  pids+=($!)
  printf -v "PID_$name" '%s' "$!"
  for _ in $(seq 100); do grep -q listening "$dir/$name.out" 2>/dev/null && break; sleep 0.05; done
  printf -v "PORT_$name" '%s' "$(head -1 "$dir/$name.out" | grep -o '[0-9]*$')"
}
start_redis() {  # sets REDIS_SOCK and REDIS_PID
  taskset -c 1 redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --dir "$dir" \
    --appendonly yes --appendfsync everysec --save '' >"$dir/redis.log" 2>&1 &
  REDIS_PID=$!; pids+=("$REDIS_PID"); REDIS_SOCK=$dir/redis.sock
  for _ in $(seq 200); do [ -S "$REDIS_SOCK" ] && return 0; sleep 0.05; done
  echo "writes.sh: redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 1
}
# What a write moved: the SQLite store's rows, or the script calls sent to Redis.
rows() { curl -s "127.0.0.1:$1/metrics" | awk '/^sse_store_rows_written_total|^sse_redis_script_calls_total/ {n += $2} END {print n}'; }
# utime + stime, with reaped children's: Redis's AOF rewrites are its cost too.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
load() {  # load PORT PID [wrk args]: prints "<requests/s> <server CPU %> <Redis CPU %>"
  local port=$1 pid=$2 t0 t1 r0 r1 s0 s1 out n before after; shift 2
  before=$(rows "$port")
  t0=$(cpu_ticks "$pid"); r0=$(cpu_ticks "$REDIS_PID"); s0=$(date +%s.%N)
  out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" "$@")
  t1=$(cpu_ticks "$pid"); r1=$(cpu_ticks "$REDIS_PID"); s1=$(date +%s.%N)
  after=$(rows "$port")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  if [[ "$*" == *.lua* ]] && [ $((after - before)) -lt $((n * 9 / 10)) ]; then
    echo "only $((after - before)) rows written for $n requests" >&2; exit 1
  fi
  awk -v d=$((t1 - t0)) -v r=$((r1 - r0)) -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" \
    '/Requests\/sec/ {printf "%s %.0f %.0f\n", $2, 100 * d / hz / (b - a), 100 * r / hz / (b - a)}' <<<"$out"
}
new_round() { curl -sf -o /dev/null -d 'total_cents=100000000&count=1000000&token=bench' "127.0.0.1:$1/redpacket/rounds"; }
new_poll() { curl -sf -o /dev/null -d 'question=Bench&options=Stock+ticker,Chat+room,Live+scores,Auction&token=bench' "127.0.0.1:$1/vote/polls"; }
new_showtimes() {  # new_showtimes PORT: 20 showtimes of 10,000 seats; prints the first one's id
  local starts i
  starts=$(date -u -d '+30 days' +%FT%TZ)
  for i in $(seq 20); do
    [ "$i" = 1 ] || echo next
    printf 'url = "http://127.0.0.1:%s/cinema/showtimes"\nheader = "Authorization: Bearer bench"\n' "$1"
    printf 'data = "movie=Bench&hall=Bench+%s&starts_at=%s&seats=10000"\n' "$i" "$starts"
  done >"$dir/showtimes.curl"
  curl -s -K "$dir/showtimes.curl" | grep -o '"showtime":{"id":[0-9]*' | grep -o '[0-9]*$' | head -1
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start file "$dir/bench.db"
start mem ":memory:"
start_redis
start redis "$dir/redis-mode.db" --redis "$REDIS_SOCK"
for _ in $(seq 100); do [ "$(curl -s "127.0.0.1:$PORT_redis/healthz")" = ok ] && break; sleep 0.05; done
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, kernel $(uname -r), $(redis-server --version | grep -o 'v=[0-9.]*'), $(date -u +%FT%TZ)"
names=(grab_file grab_mem grab_redis vote_file vote_mem vote_redis book_file book_mem book_redis healthz)
ports=("$PORT_file" "$PORT_mem" "$PORT_redis" "$PORT_file" "$PORT_mem" "$PORT_redis" "$PORT_file" "$PORT_mem" "$PORT_redis" "$PORT_file")
owners=("$PID_file" "$PID_mem" "$PID_redis" "$PID_file" "$PID_mem" "$PID_redis" "$PID_file" "$PID_mem" "$PID_redis" "$PID_file")
h=9
for r in $(seq "$RUNS"); do
  for i in "${!names[@]}"; do
    case ${names[$i]} in
      grab_*) new_round "${ports[$i]}"; args=(-s bench/wrk/grab.lua "http://127.0.0.1:${ports[$i]}/redpacket/grab") ;;
      vote_*) new_poll "${ports[$i]}"; args=(-s bench/wrk/vote.lua "http://127.0.0.1:${ports[$i]}/vote") ;;
      book_*) args=(-s bench/wrk/book.lua "http://127.0.0.1:${ports[$i]}/cinema/showtimes" -- "$(new_showtimes "${ports[$i]}")" 20) ;;
      *)      args=("http://127.0.0.1:${ports[$i]}/healthz") ;;
    esac
    read -r v[i] c[i] rc[i] < <(load "${ports[$i]}" "${owners[$i]}" "${args[@]}")
  done
  line="run $r:"
  for i in "${!names[@]}"; do
    cpu="cpu ${c[$i]}%"; [[ ${names[$i]} == *_redis ]] && cpu+=", redis ${rc[$i]}%"
    line+="  ${names[$i]} ${v[$i]} ($cpu)"
    echo "${v[$i]}" >>"$dir/${names[$i]}"
    [ "$i" -lt $h ] && awk -v a="${v[$i]}" -v h="${v[$h]}" 'BEGIN {print a/h}' >>"$dir/ratio_${names[$i]}"
  done
  awk -v a="${v[2]}" -v b="${v[0]}" 'BEGIN {print a/b}' >>"$dir/redis_grab"
  awk -v a="${v[5]}" -v b="${v[3]}" 'BEGIN {print a/b}' >>"$dir/redis_vote"
  awk -v a="${v[8]}" -v b="${v[6]}" 'BEGIN {print a/b}' >>"$dir/redis_book"
  echo "$line"
done
for i in "${!names[@]}"; do
  printf 'median %-10s %10s req/s' "${names[$i]}" "$(median <"$dir/${names[$i]}")"
  [ "$i" -lt $h ] && printf '   ratio to healthz %.2f' "$(median <"$dir/ratio_${names[$i]}")"
  echo
done
printf 'median Redis ÷ file: grab %.2f, vote %.2f (goal of #17: at least 0.5), book %.2f (goal of #27: at least 0.6)\n' \
  "$(median <"$dir/redis_grab")" "$(median <"$dir/redis_vote")" "$(median <"$dir/redis_book")"
