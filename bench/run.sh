#!/usr/bin/env bash
# run.sh — sse-server against the peers a user would pick instead, in one run.
#
# What it measures (all on 127.0.0.1, servers pinned to CPU 1 and the load
# clients to CPU 0 with taskset, so the two never trade cores mid-run):
#
# 1. Requests per second, `wrk -t1 -c{50,200} -d$DURATION`:
#      GET /healthz and GET / — sse-server (file db), the Node reference,
#        and nginx (worker_processes 1, access log off, `return 200` for
#        /healthz, public/ as its root for /): the ceiling for a tiny answer;
#      POST grab and POST vote (bench/wrk/grab.lua, vote.lua: a new user or
#        voter per request) — sse-server with a file database and with
#        :memory:, and the Node reference. Grab runs start a fresh
#        1,000,000-packet round first, so no run finds the round empty;
#      POST book (bench/wrk/book.lua: one seat per request for a new user,
#        round-robin over fresh showtimes) — sse-server only, file and
#        :memory: (the Node reference has no cinema). Each booking run first
#        makes 20 showtimes of 10,000 seats per second of $DURATION, seats
#        for 200,000 bookings a second (above the best /healthz rate logged
#        in bench/README.md, about 120,000), so no run sells out.
#    The same grabs, votes and bookings through one sse-server with --redis
#      ("sse-redis") and its own redis-server (appendonly, fsync every
#      second), both on CPU 1: the core the SQLite mode has alone. Redis's
#      CPU is recorded next to the server's.
#    Any 4xx or 5xx answer (a sold-out booking is a 409, an empty round a
#    410) is counted per run and listed in RESULTS.md.
#    Every figure comes with the server's CPU use (100% = its whole core:
#    below that the client was the limit, not the server).
# 2. SSE fan-out with bench/ssefan at each of $FAN_SIZES subscribers (up to
#    the fd limit): a fresh server each time; $FAN_CHANGES votes (or nchan
#    publishes) spaced 300 ms apart, wider than the push gap; the latency
#    from each change to each subscriber having it, and the server's RSS per
#    idle subscriber. Peers: the Node reference with --push-on-change (its
#    fastest form; the tutorials' own form waits for a 5 s timer), and nginx
#    with the nchan module (an EventSource subscriber location and a
#    publisher location, worker_processes 1). And, for the Redis mode (issue
#    #17): bench/floor, a plain C loop writing the same event bytes to every
#    subscriber (the kernel's own cost: ours ÷ floor is what the loop adds);
#    one process with --redis (the vote goes through Redis and comes back
#    published); two processes with --reuse-port on one port, one per CPU,
#    in front of one Redis, sharing the subscribers.
#
# Each figure is the median of $RUNS runs; runs are interleaved (A B C, A B
# C, ...) so drift hits every server alike, and each ratio is computed within
# a run, then the median of those taken. Writes bench/RESULTS.md (date,
# machine, versions, these commands, the tables) via bench/report.py, and
# keeps the raw figures in bench/results.tsv. Every server it starts is
# stopped by PID; every wait is bounded.
#
#   make bench                    # RUNS=3 DURATION=10s FAN_SIZES="1000 5000 10000 19000"
#   RUNS=1 DURATION=3s FAN_SIZES=1000 make bench    # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
FAN_SIZES=${FAN_SIZES:-"1000 5000 10000 19000"}
FAN_CHANGES=${FAN_CHANGES:-20}
TOKEN=bench-token

dir=$(mktemp -d /tmp/sse-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
tsv=bench/results.tsv
printf 'kind\tserver\ttarget\tload\trun\tvalue\tcpu_pct\textra\n' >"$tsv"

# ---- Starting and stopping peers ---------------------------------------------------

wait_line() {  # wait_line FILE REGEX: until FILE has a line matching REGEX (10 s)
  for _ in $(seq 200); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: gave up waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

# start_sse NAME DB [flags]: sets PORT and PID. On CPU $CPU (1 unless set),
# on port $ON_PORT (0, a free one, unless set: --reuse-port shares one).
start_sse() {
  local name=$1 db=$2; shift 2
  taskset -c "${CPU:-1}" ./sse-server --port "${ON_PORT:-0}" --quiet --db "$db" --admin-token "$TOKEN" "$@" >"$dir/$name.out" 2>&1 &
  PID=$!; pids+=("$PID")
  wait_line "$dir/$name.out" 'listening on'
  PORT=$(head -1 "$dir/$name.out" | grep -o '[0-9]*$')
  # With --redis, ready once /healthz no longer says "degraded" (10 s at most).
  if [ $# -gt 0 ]; then
    for _ in $(seq 200); do [ "$(curl -s "127.0.0.1:$PORT/healthz")" = ok ] && return 0; sleep 0.05; done
    echo "bench: $name never reached Redis" >&2; cat "$dir/$name.out" >&2; exit 1
  fi
}

# start_redis NAME: Debian's redis-server on a unix socket in the run's temp
# dir, pinned to CPU 1 with the servers (so a write through Redis has the
# core a write through SQLite has), appendonly with fsync every second, as
# make run-cluster runs it. Sets REDIS_SOCK and REDIS_PID.
start_redis() {
  local d="$dir/$1"
  mkdir -p "$d"
  taskset -c 1 redis-server --port 0 --unixsocket "$d/redis.sock" --unixsocketperm 700 --dir "$d" \
    --appendonly yes --appendfsync everysec --save '' >"$d/log" 2>&1 &
  REDIS_PID=$!; pids+=("$REDIS_PID"); REDIS_SOCK=$d/redis.sock
  for _ in $(seq 200); do [ -S "$REDIS_SOCK" ] && return 0; sleep 0.05; done
  echo "bench: redis-server did not start" >&2; cat "$d/log" >&2; exit 1
}

# start_floor NAME: bench/floor, the plain write loop (see bench/floor.c); sets PORT and PID
start_floor() {
  taskset -c 1 ./bench/floor --port 0 >"$dir/$1.out" 2>"$dir/$1.err" &
  PID=$!; pids+=("$PID")
  wait_line "$dir/$1.out" 'listening on'
  PORT=$(grep -o '[0-9]*$' "$dir/$1.out" | head -1)
}

start_node() {  # start_node NAME [flags]: sets PORT and PID
  local name=$1; shift
  taskset -c 1 node bench/node-reference/server.js --port 0 --redpacket-count 1000000 --redpacket-total 100000000 "$@" \
    >"$dir/$name.out" 2>&1 &
  PID=$!; pids+=("$PID")
  wait_line "$dir/$name.out" 'listening on'
  PORT=$(grep -o '[0-9]*$' "$dir/$name.out" | head -1)
}

# start_nginx NAME CONF_BODY: nginx with one worker; sets PORT and PID (the worker's).
# worker_connections is above the fd limit on purpose: nchan takes more than
# one of nginx's connection slots per subscriber, and with 20,000 slots it
# logged "worker_connections are not enough, reusing connections" and
# dropped subscribers at 19,000. The fd limit stays the real bound.
start_nginx() {
  local conf="$dir/$1.conf" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/$1"
  cat >"$conf" <<EOF
${3:-}
worker_processes 1;
worker_rlimit_nofile $(ulimit -Hn);
daemon off;
pid $dir/$1/nginx.pid;
error_log $dir/$1/error.log warn;
events { worker_connections 65536; }
http {
  access_log off;
  client_body_temp_path $dir/$1/body;
  proxy_temp_path $dir/$1/proxy;
  fastcgi_temp_path $dir/$1/fastcgi;
  uwsgi_temp_path $dir/$1/uwsgi;
  scgi_temp_path $dir/$1/scgi;
  types { text/html html; text/css css; text/javascript js; }
  server {
    listen 127.0.0.1:$port;
    $2
  }
}
EOF
  taskset -c 1 nginx -c "$conf" >"$dir/$1/stdout" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$dir/$1/nginx.pid" ] && break; sleep 0.05; done
  local master; master=$(cat "$dir/$1/nginx.pid"); pids+=("$master")
  for _ in $(seq 100); do PID=$(pgrep -P "$master" | head -1) && [ -n "$PID" ] && break; sleep 0.05; done
  PORT=$port
}

stop() { kill "$1" 2>/dev/null || true; for _ in $(seq 40); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; kill -9 "$1" 2>/dev/null || true; }

# ---- Measuring -----------------------------------------------------------------------

# A process's CPU ticks (utime + stime), with its reaped children's (cutime +
# cstime): Redis's AOF rewrites are forked children on its core, and their
# CPU is Redis's cost too. A child is counted once Redis has reaped it (within
# ~0.1 s of its end), so one still running as a run ends counts in the next.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }

# wrk_run SERVER TARGET CONC RUN PID URL [wrk args] [-- script args]: one wrk
# run, appended to the tsv with its count of 4xx/5xx answers (wrk's "Non-2xx
# or 3xx responses") and, for a server with --redis, Redis's own CPU.
# Script args go after the URL, where wrk takes them.
wrk_run() {
  local server=$1 target=$2 conc=$3 run=$4 pid=$5 url=$6 t0 t1 r0=0 r1=0 s0 s1 out rps cpu rcpu errors opts=(); shift 6
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  local redis=; [[ $server == *redis* ]] && redis=$REDIS_PID
  local w0=0 w1=0  # Redis's AOF rewrites: forked children on the same core, whose CPU the counts above miss
  [ -z "$redis" ] || w0=$(aof_rewrites)
  t0=$(cpu_ticks "$pid"); [ -z "$redis" ] || r0=$(cpu_ticks "$redis"); s0=$(date +%s.%N)
  out=$(taskset -c 0 wrk -t1 -c"$conc" -d"$DURATION" --timeout 5s "${opts[@]}" "$url" "$@")
  t1=$(cpu_ticks "$pid"); [ -z "$redis" ] || r1=$(cpu_ticks "$redis"); s1=$(date +%s.%N)
  [ -z "$redis" ] || w1=$(aof_rewrites)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  pct() { awk -v d="$1" -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", 100 * d / hz / (b - a)}'; }
  cpu=$(pct $((t1 - t0))); rcpu=$(pct $((r1 - r0)))
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); errors=${errors:-0}
  if [ "$errors" != 0 ]; then echo "bench: $server $target answered $errors errors (4xx/5xx)" >&2; fi
  printf 'http\t%s\t%s\t%s\t%s\t%s\t%s\tnon2xx=%s;redis_cpu_pct=%s;aof_rewrites=%s\n' "$server" "$target" "$conc" "$run" "$rps" "$cpu" "$errors" \
    "${redis:+$rcpu}" "${redis:+$((w1 - w0))}" >>"$tsv"
  printf '  %-14s %-9s c=%-4s %10s req/s  cpu %s%%%s\n' "$server" "$target" "$conc" "$rps" "$cpu" "${redis:+  redis cpu $rcpu%, AOF rewrites $((w1 - w0))}"
}

# How many AOF rewrites the Redis on $REDIS_SOCK has begun: those done, and one in progress.
aof_rewrites() {
  redis-cli -s "$REDIS_SOCK" INFO persistence | tr -d '\r' |
    awk -F: '$1 == "aof_rewrites" || $1 == "aof_rewrite_in_progress" {n += $2} END {print n + 0}'
}

new_round() { curl -sf -o /dev/null -d "total_cents=100000000&count=1000000&token=$TOKEN" "127.0.0.1:$1/redpacket/rounds"; }

# new_poll PORT: a fresh poll with vote.lua's options before each vote run.
# A poll holds at most --max-voters voters, and past that a vote is a 503
# answered without a write: the servers are started with 10^9 of them (at
# 170,000 votes a second, a 10 s run passed the default million).
new_poll() { curl -sf -o /dev/null -d "question=Bench&options=Stock+ticker,Chat+room,Live+scores,Auction&token=$TOKEN" "127.0.0.1:$1/vote/polls"; }

# new_showtimes PORT: fresh showtimes of 10,000 seats (the most one may have),
# starting in 30 days, for book.lua to spread its bookings over: 20 per
# second of $DURATION, seats for 200,000 bookings a second. One curl makes
# them all over one connection. Sets FIRST_ID and SHOWTIMES; the ids are
# consecutive (one writer: SQLite's next rowid, or with --redis one INCR), which this checks.
new_showtimes() {
  local port=$1 seconds starts conf="$dir/showtimes.curl" ids i
  seconds=$(awk -v d="$DURATION" 'BEGIN {n = d + 0; u = substr(d, length(d)); if (u == "m") n *= 60; if (u == "h") n *= 3600; print int(n + 0.999)}')
  SHOWTIMES=$((seconds > 0 ? 20 * seconds : 20))
  starts=$(date -u -d '+30 days' +%FT%TZ)
  for i in $(seq "$SHOWTIMES"); do
    [ "$i" = 1 ] || echo next
    printf 'url = "http://127.0.0.1:%s/cinema/showtimes"\nheader = "Authorization: Bearer %s"\n' "$port" "$TOKEN"
    printf 'data = "movie=Bench&hall=Bench+%s&starts_at=%s&seats=10000"\n' "$i" "$starts"
  done >"$conf"
  ids=$(curl -s -K "$conf" | grep -o '"showtime":{"id":[0-9]*' | grep -o '[0-9]*$' || true)
  FIRST_ID=$(head -1 <<<"$ids")
  if [ "$(grep -c . <<<"$ids")" != "$SHOWTIMES" ] || [ "$(tail -1 <<<"$ids")" != $((FIRST_ID + SHOWTIMES - 1)) ]; then
    echo "bench: could not make $SHOWTIMES showtimes with consecutive ids on port $port" >&2; exit 1
  fi
}

# fan SERVER SIZE RUN: a fresh server, ssefan against it, the result to the tsv.
#   sse-server    one process, SQLite (the default)
#   sse-redis     one process with --redis, its own fresh redis-server (CPU 1)
#   sse-redis-2   two processes with --reuse-port on one port, one on each
#                 CPU, one redis-server: the kernel spreads the subscribers
#                 between them, the vote lands on either, and the other hears
#                 of it through Redis (RSS is the two processes' sum)
#   floor         bench/floor: the same event, a plain write() per subscriber
#   nchan, node   the peers
fan() {
  local server=$1 size=$2 run=$3 args out owners=() pid_list extra=
  local vote=(--path /vote/result-sse --trigger-path /vote --trigger-body 'voter=fan{k}&option=Auction' --match '"total":{k}}')
  case $server in
    sse-server) start_sse "fan-$run-$size" "$dir/fan-$run-$size.db"
                args=("${vote[@]}"); owners=("$PID") ;;
    sse-redis)  start_redis "redis-fan-$run-$size"
                start_sse "fan-redis-$run-$size" "$dir/fan-redis-$run-$size.db" --redis "$REDIS_SOCK"
                args=("${vote[@]}"); owners=("$PID" "$REDIS_PID") ;;
    sse-redis-2) start_redis "redis-fan2-$run-$size"
                local port first
                port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
                ON_PORT=$port CPU=1 start_sse "fan-redis2a-$run-$size" "$dir/fan2a.db" --reuse-port --redis "$REDIS_SOCK"
                first=$PID
                ON_PORT=$port CPU=0 start_sse "fan-redis2b-$run-$size" "$dir/fan2b.db" --reuse-port --redis "$REDIS_SOCK"
                PID="$first,$PID"
                args=("${vote[@]}"); owners=("${PID%,*}" "${PID#*,}" "$REDIS_PID") ;;
    floor)      start_floor "floor-$run-$size"
                args=(--path /sub/bench --trigger-path /pub/bench --trigger-body "$FLOOR_EVENT" --match '"total":{k}}')
                owners=("$PID") ;;
    node)       start_node "fan-node-$run-$size" --push-on-change
                args=("${vote[@]}"); owners=("$PID") ;;
    nchan)      start_nginx "nchan-$run-$size" \
                  'location ~ ^/sub/(\w+)$ { nchan_subscriber eventsource; nchan_channel_id $1; }
                   location ~ ^/pub/(\w+)$ { nchan_publisher; nchan_channel_id $1; }' \
                  'load_module /usr/lib/nginx/modules/ngx_nchan_module.so;'
                args=(--path /sub/bench --trigger-path /pub/bench --trigger-body '{"total":{k}}' --match '"total":{k}}')
                owners=("$(cat "$dir/nchan-$run-$size/nginx.pid")") ;;  # its master: else it starts a new worker
  esac
  pid_list=$PID
  sleep 0.3
  out=$(taskset -c 0 ./bench/ssefan --port "$PORT" --subscribers "$size" --changes "$FAN_CHANGES" --gap-ms 300 \
          --timeout-ms 15000 --pid "$pid_list" "${args[@]}" 2>&1 | grep '^RESULT' || true)
  local o; for o in "${owners[@]}"; do stop "$o"; done
  # The floor's own write-loop time, the median of its changes (sse-server's
  # sse_last_broadcast_seconds is whichever stream pushed last: not comparable).
  if [ "$server" = floor ]; then
    extra=";loop_ms=$(grep -o 'loop_us_p50=[0-9]*' "$dir/floor-$run-$size.out" | awk -F= '{printf "%.2f", $2 / 1000}')"
  fi
  [ -n "$out" ] || out="RESULT delivered_pct=0 p50_ms=NA p99_ms=NA rss_per_sub_bytes=NA"
  local get; get() { grep -o "$1=[^ ]*" <<<"$out" | cut -d= -f2; }
  printf 'fanout\t%s\tvote\t%s\t%s\t%s\t\tp50_ms=%s;max_ms=%s;delivered_pct=%s;rss_per_sub_bytes=%s;connect_ms=%s%s\n' \
    "$server" "$size" "$run" "$(get p99_ms)" "$(get p50_ms)" "$(get max_ms)" "$(get delivered_pct)" \
    "$(get rss_per_sub_bytes)" "$(get connect_ms)" "$extra" >>"$tsv"
  printf '  %-11s %6s subscribers: %s%s\n' "$server" "$size" "${out#RESULT }" "${extra:+ ${extra#;}}"
}

# floor_event: the event the floor writes is the poll's own snapshot, as
# sse-server sends it, with the total a placeholder ssefan fills in, so both
# write the same bytes. Sets FLOOR_EVENT.
floor_event() {
  start_sse floor-event ":memory:"
  FLOOR_EVENT=$(curl -sN --max-time 1 "127.0.0.1:$PORT/vote/result-sse" | sed -n 's/^data: //p' | head -1 || true)
  stop "$PID"
  FLOOR_EVENT=${FLOOR_EVENT%\"total\":0\}}
  [ -n "$FLOOR_EVENT" ] || { echo "bench: could not read the poll's snapshot" >&2; exit 1; }
  FLOOR_EVENT="$FLOOR_EVENT\"total\":{k}}"
}

# ---- The run ---------------------------------------------------------------------------

make -s sse-server bench/ssefan bench/floor
[ -d bench/node-reference/node_modules ] || (cd bench/node-reference && npm ci --no-audit --no-fund >/dev/null)
echo "sse-server bench: commit $(git rev-parse --short HEAD), $(nproc) cores, kernel $(uname -r), $(date -u +%FT%TZ)"

start_sse sse-file "$dir/file.db" --max-voters 1000000000; SSE_FILE_PORT=$PORT; SSE_FILE_PID=$PID
start_sse sse-mem ":memory:" --max-voters 1000000000; SSE_MEM_PORT=$PORT; SSE_MEM_PID=$PID
start_node node; NODE_PORT=$PORT; NODE_PID=$PID
start_nginx nginx "location = /healthz { return 200 \"ok\n\"; } location / { root $PWD/public; index index.html; }"
NGINX_PORT=$PORT; NGINX_PID=$PID
start_redis redis; start_sse sse-redis "$dir/redis-mode.db" --redis "$REDIS_SOCK" --max-voters 1000000000; SSE_REDIS_PORT=$PORT; SSE_REDIS_PID=$PID

for run in $(seq "$RUNS"); do
  echo "http run $run of $RUNS"
  for conc in 50 200; do
    for target in healthz index; do
      path=/healthz; [ $target = index ] && path=/
      wrk_run sse-server "$target" "$conc" "$run" "$SSE_FILE_PID" "http://127.0.0.1:$SSE_FILE_PORT$path"
      wrk_run nginx "$target" "$conc" "$run" "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT$path"
      wrk_run node "$target" "$conc" "$run" "$NODE_PID" "http://127.0.0.1:$NODE_PORT$path"
    done
    new_round "$SSE_FILE_PORT"
    wrk_run sse-server "grab" "$conc" "$run" "$SSE_FILE_PID" "http://127.0.0.1:$SSE_FILE_PORT/redpacket/grab" -s bench/wrk/grab.lua -- "$TOKEN"
    new_round "$SSE_MEM_PORT"
    wrk_run sse-memory "grab" "$conc" "$run" "$SSE_MEM_PID" "http://127.0.0.1:$SSE_MEM_PORT/redpacket/grab" -s bench/wrk/grab.lua -- "$TOKEN"
    new_round "$SSE_REDIS_PORT"
    wrk_run sse-redis "grab" "$conc" "$run" "$SSE_REDIS_PID" "http://127.0.0.1:$SSE_REDIS_PORT/redpacket/grab" -s bench/wrk/grab.lua -- "$TOKEN"
    curl -sf -o /dev/null -d 'total_cents=100000000&count=1000000' "127.0.0.1:$NODE_PORT/redpacket/rounds"
    wrk_run node "grab" "$conc" "$run" "$NODE_PID" "http://127.0.0.1:$NODE_PORT/redpacket/grab" -s bench/wrk/grab.lua -- "$TOKEN"
    new_poll "$SSE_FILE_PORT"
    wrk_run sse-server "vote" "$conc" "$run" "$SSE_FILE_PID" "http://127.0.0.1:$SSE_FILE_PORT/vote" -s bench/wrk/vote.lua
    new_poll "$SSE_MEM_PORT"
    wrk_run sse-memory "vote" "$conc" "$run" "$SSE_MEM_PID" "http://127.0.0.1:$SSE_MEM_PORT/vote" -s bench/wrk/vote.lua
    new_poll "$SSE_REDIS_PORT"
    wrk_run sse-redis "vote" "$conc" "$run" "$SSE_REDIS_PID" "http://127.0.0.1:$SSE_REDIS_PORT/vote" -s bench/wrk/vote.lua
    wrk_run node "vote" "$conc" "$run" "$NODE_PID" "http://127.0.0.1:$NODE_PORT/vote" -s bench/wrk/vote.lua
    new_showtimes "$SSE_FILE_PORT"
    wrk_run sse-server "book" "$conc" "$run" "$SSE_FILE_PID" "http://127.0.0.1:$SSE_FILE_PORT/cinema/showtimes" \
      -s bench/wrk/book.lua -- "$FIRST_ID" "$SHOWTIMES"
    new_showtimes "$SSE_MEM_PORT"
    wrk_run sse-memory "book" "$conc" "$run" "$SSE_MEM_PID" "http://127.0.0.1:$SSE_MEM_PORT/cinema/showtimes" \
      -s bench/wrk/book.lua -- "$FIRST_ID" "$SHOWTIMES"
    new_showtimes "$SSE_REDIS_PORT"
    wrk_run sse-redis "book" "$conc" "$run" "$SSE_REDIS_PID" "http://127.0.0.1:$SSE_REDIS_PORT/cinema/showtimes" \
      -s bench/wrk/book.lua -- "$FIRST_ID" "$SHOWTIMES"
  done
done
stop "$SSE_FILE_PID"; stop "$SSE_MEM_PID"; stop "$SSE_REDIS_PID"; stop "$REDIS_PID"; stop "$NODE_PID"; stop "$(cat "$dir/nginx/nginx.pid")"

limit=$(ulimit -Hn)
floor_event
for size in $FAN_SIZES; do
  if [ $((size + 100)) -gt "$limit" ]; then echo "skipping $size subscribers: the fd limit is $limit"; continue; fi
  for run in $(seq "$RUNS"); do
    echo "fan-out run $run of $RUNS, $size subscribers"
    for server in sse-server floor sse-redis sse-redis-2 nchan node; do fan "$server" "$size" "$run"; done
  done
done

versions="sse-server $(git rev-parse --short HEAD); $(redis-server --version | awk '{print $1, $3}'); $(nginx -v 2>&1 | sed 's/.*: //'); nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null); node $(node --version); express $(node -p 'require("./bench/node-reference/node_modules/express/package.json").version'); $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
python3 bench/report.py "$tsv" "$versions" "RUNS=$RUNS DURATION=$DURATION FAN_SIZES=\"$FAN_SIZES\" FAN_CHANGES=$FAN_CHANGES" >bench/RESULTS.md
echo "wrote bench/RESULTS.md"
