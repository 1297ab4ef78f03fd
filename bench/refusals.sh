#!/usr/bin/env bash
# refusals.sh — a flash crowd on what is gone: refusals at 1, 64, 256 and 1,000 clients.
#
# What it measures: how fast, and how truly, the server says "no" when
# everyone asks for something there is none of. Three cases, each a write
# that must be refused, every request a real one:
#   book   POST /cinema/showtimes/<id>/book by a new user each time, on a
#          showtime of 10 seats that one person bought up: 409 sold out;
#   grab   POST /redpacket/grab by a new user each time, on a round of one
#          packet that is taken: 410 all taken;
#   revote POST /vote by the voter who has voted already: 409.
# A refusal changes nothing, so it should cost what a read costs at any
# crowd size: the rate at 256 clients at least the rate at 1, its p99 at
# most 50 ms, and no answer but the refusal (no 408 for a request that
# arrived whole, no 404 for a route that exists).
#
# Protocol: one server (SSE_SERVER, else ./sse-server) on a fresh SQLite
# file in a temp dir, on CPU 1, with the three states made through its API;
# wrk on CPU 0 (taskset), so the two never trade cores mid-run. Then RUNS
# times, the cases and client counts interleaved, so drift hits them alike:
#   wrk -t1 -c<C> -d$DURATION --timeout 10s --latency -s <script>
# Each line gives requests/s, p50 and p99 from wrk, wrk's timeouts, the
# server's CPU (100% = the whole of CPU 1) and what the server answered,
# from its /metrics (sse_http_requests_total by status) before and after:
# the refusals, 408s, 404s and anything else. Then, per case and client
# count, the medians, and the issue's goal lines. Stops the server by PID.
#
#   bench/refusals.sh [RUNS=1] [DURATION=10s] [CLIENTS="1 64 256 1000"]
#   SSE_SERVER=/path/to/other/sse-server bench/refusals.sh ...   (an older build, same run)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1}
DURATION=${2:-10s}
CLIENTS=${3:-1 64 256 1000}
SERVER=${SSE_SERVER:-./sse-server}
[ -n "${SSE_SERVER:-}" ] || make -s sse-server
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

taskset -c 1 "$SERVER" --port 0 --quiet --db "$dir/bench.db" --admin-token bench >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.05; done
port=$(head -1 "$dir/out" | grep -o '[0-9]*$')
url=http://127.0.0.1:$port

# The three states: a showtime bought up, a round emptied, a voter who voted.
starts=$(date -u -d '+30 days' +%FT%TZ)
show=$(curl -sf -d "movie=Sold+Out&hall=Bench&starts_at=$starts&seats=10&token=bench" "$url/cinema/showtimes" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
curl -sf -o /dev/null -d 'seats=10&user=buyer' "$url/cinema/showtimes/$show/book"
curl -sf -o /dev/null -d 'total_cents=100&count=1&token=bench' "$url/redpacket/rounds"
curl -sf -o /dev/null -d 'user=winner' "$url/redpacket/grab"
curl -sf -o /dev/null -d 'question=Bench&options=Yes,No&token=bench' "$url/vote/polls"
curl -sf -o /dev/null -d 'voter=again&option=Yes' "$url/vote"
for check in "book 409 $url/cinema/showtimes/$show/book user=probe" "grab 410 $url/redpacket/grab user=probe" "revote 409 $url/vote voter=again&option=Yes"; do
  read -r name want target form <<<"$check"
  got=$(curl -s -o /dev/null -w '%{http_code}' -d "$form" "$target")
  [ "$got" = "$want" ] || { echo "refusals.sh: $name answered $got, not $want: the state was not made" >&2; exit 1; }
done

statuses() { curl -s "$url/metrics" | awk -F'[{}" ]+' '/^sse_http_requests_total\{/ {print $3, $4}'; }  # "code count" lines
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
to_ms() { awk '{v = $1 + 0; if ($1 ~ /us$/) v /= 1000; else if ($1 ~ /[0-9]s$/ && $1 !~ /ms$/) v *= 1000; printf "%.2f", v}' <<<"$1"; }

# run CASE CLIENTS: one wrk run; prints "rate p50 p99 timeouts cpu refused 408s 404s others" (others: code:count,...)
run() {
  local name=$1 c=$2 want args before after out t0 t1 s0 s1
  case $name in
    book)   want=409; args=(-s bench/wrk/book.lua "$url/cinema/showtimes" -- "$show" 1) ;;
    grab)   want=410; args=(-s bench/wrk/grab.lua "$url/redpacket/grab") ;;
    revote) want=409; args=(-s bench/wrk/revote.lua "$url/vote" -- again Yes) ;;
  esac
  before=$(statuses)
  t0=$(cpu_ticks); s0=$(date +%s.%N)
  out=$(taskset -c 0 wrk -t1 -c"$c" -d"$DURATION" --timeout 10s --latency "${args[@]}")
  t1=$(cpu_ticks); s1=$(date +%s.%N)
  after=$(statuses)
  local rate p50 p99 timeouts cpu
  rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  timeouts=$(awk '/Socket errors/ {gsub(",", ""); print $NF}' <<<"$out"); timeouts=${timeouts:-0}
  cpu=$(awk -v d=$((t1 - t0)) -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", 100 * d / hz / (b - a)}')
  # The answers of this run, by status: after minus before (the /metrics requests themselves are 200s).
  awk -v want="$want" -v rate="$rate" -v p50="$p50" -v p99="$p99" -v t="$timeouts" -v cpu="$cpu" '
    NR == FNR { was[$1] = $2; next }
    { d = $2 - was[$1]; if ($1 == want) r += d; else if ($1 == 408) a += d; else if ($1 == 404) n += d; else if ($1 != 200 && d > 0) o = o (o == "" ? "" : ",") $1 ":" d }
    END { printf "%s %s %s %s %s %d %d %d %s\n", rate, p50, p99, t, cpu, r, a, n, (o == "" ? "-" : o) }' <(echo "$before") <(echo "$after")
}

echo "checkout $(git rev-parse --short HEAD), server ${SERVER}, $(nproc) cores, kernel $(uname -r), $(date -u +%FT%TZ)"
printf '%-7s %5s %9s %9s %9s %8s %5s %9s %6s %6s %6s\n' case clients req/s p50_ms p99_ms timeouts cpu% refused 408 404 other
for r in $(seq "$RUNS"); do
  for c in $CLIENTS; do
    for name in book grab revote; do
      read -r rate p50 p99 t cpu ref a n o < <(run "$name" "$c")
      printf '%-7s %5s %9s %9s %9s %8s %5s %9s %6s %6s %6s\n' "$name" "$c" "$rate" "$p50" "$p99" "$t" "$cpu" "$ref" "$a" "$n" "$o"
      echo "$rate $p99 $a $n" >>"$dir/$name-$c"
    done
  done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v k="$1" '{print $k}' "$2" | median; }
sum() { awk -v k="$1" '{s += $k} END {print s + 0}' "$2"; }
echo
echo "medians over $RUNS run(s):"
for name in book grab revote; do
  line="$name:"
  for c in $CLIENTS; do line+="  c=$c $(col 1 "$dir/$name-$c")/s p99 $(col 2 "$dir/$name-$c") ms"; done
  echo "$line"
done
first=${CLIENTS%% *}
if [[ " $CLIENTS " == *" 256 "* ]]; then
  echo
  for name in book grab revote; do
    one=$(col 1 "$dir/$name-$first"); many=$(col 1 "$dir/$name-256"); p99=$(col 2 "$dir/$name-256")
    bad=$(( $(sum 3 "$dir/$name-256") + $(sum 4 "$dir/$name-256") ))
    awk -v n="$name" -v one="$one" -v many="$many" -v p99="$p99" -v bad="$bad" -v first="$first" 'BEGIN {
      printf "%-6s at 256 clients >= the rate at %s client(s)   %s vs %s   %s\n", n, first, many, one, (many >= one ? "yes" : "no")
      printf "%-6s p99 at 256 clients <= 50 ms                   %s ms    %s\n", n, p99, (p99 <= 50 ? "yes" : "no")
      printf "%-6s no 408 or 404 at 256 clients                  %d       %s\n", n, bad, (bad == 0 ? "yes" : "no") }'
  done
fi
