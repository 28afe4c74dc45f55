#!/usr/bin/env bash
# Load harness: the same small requests sent straight to a backend, through nginx (and haproxy)
# as reference proxies, and through atkproxy, side by side in one run, so ratios survive a noisy
# machine. Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
#
#   bash benchmarks/run.sh                       # full run: 3 rounds x 10 s per scenario
#   BENCH_DURATION=2 BENCH_ROUNDS=1 BENCH_WARMUP=1 bash benchmarks/run.sh    # smoke, < 1 min
#
# Settings (environment):
#   BENCH_DURATION=10        seconds per wrk run          BENCH_CONNECTIONS=32   wrk -c
#   BENCH_ROUNDS=3           rounds, scenarios rotated    BENCH_THREADS=2        wrk -t
#   BENCH_WARMUP=2           seconds of unrecorded load per scenario before round 1 (0: none)
#   BENCH_SCENARIOS="..."    subset/order of REQUEST-VIA: REQUEST get, post or async; VIA
#                            direct, nginx, haproxy, plain (benchmarks/plain_proxy.py), atk
#                            (atkproxy, log level warning), atkdef (atkproxy, logging at its
#                            default), atkbase (atkproxy from BENCH_ATK_BASELINE), floor
#                            (benchmarks/floor_server.py: aiohttp's server answering by itself)
#                            default: get-direct get-nginx get-haproxy get-atk
#                                     post-direct post-nginx post-atk async-atk
#   BENCH_PORT_BASE=18180    atkproxy on +0, backend +1, nginx +2, haproxy +3, plain +4,
#                            atkdef +5, atkbase +6, floor +7
#   BENCH_BACKEND_APP=minimal  or "example" (atkproxy's demo registrations workflow), or
#                            "nginx-json" (nginx answering every request with a fixed JSON body:
#                            a backend that costs next to nothing)
#   BENCH_ATK_BASELINE=DIR   a directory holding another atkproxy package (e.g. an export of
#                            main: git archive main | tar -x -C DIR) for the atkbase scenarios
#   BENCH_ATK_DEFINES="k=v ..."  extra -D overrides for atkproxy
#   BENCH_STORE_DIR=DIR      where atkproxy's SQLite store lives (default: the run's temp dir;
#                            its filesystem decides what a durable commit costs)
#   BENCH_COUNT_STATUS=1     count responses by status in wrk (a Lua call per response)
#   BENCH_WRK_CPUS / BENCH_SERVER_CPUS   taskset CPU lists to pin wrk / the servers (default none)
#   BENCH_DRAIN_TIMEOUT=300  seconds to wait for atkproxy's background jobs after an async run
#   BENCH_OUT=FILE           also write the Markdown report there
#   BENCH_KEEP=1             keep the temp dir (configs, logs, raw wrk output)
#   BENCH_PYSPY=PATH         after the rounds, one more (unrecorded) run of each atkproxy scenario
#                            with py-spy sampling atkproxy; the report adds where its time went
#   PYTHON=python3           the interpreter that has atkproxy's dependencies
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=nginx_json.sh
source "$HERE/nginx_json.sh"
ROOT=$(cd "$HERE/.." && pwd)

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
SCENARIOS=${BENCH_SCENARIOS:-get-direct get-nginx get-haproxy get-atk post-direct post-nginx post-atk async-atk}
PORT_BASE=${BENCH_PORT_BASE:-18180}
BACKEND_APP=${BENCH_BACKEND_APP:-minimal}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-300}
START_TIMEOUT=20

ATK_PORT=$PORT_BASE
BACKEND_PORT=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))
HAPROXY_PORT=$((PORT_BASE + 3))
PLAIN_PORT=$((PORT_BASE + 4))
ATKDEF_PORT=$((PORT_BASE + 5))
ATKBASE_PORT=$((PORT_BASE + 6))
FLOOR_PORT=$((PORT_BASE + 7))

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for n in "$DURATION" "$ROUNDS" "$WARMUP" "$CONNECTIONS" "$THREADS" "$PORT_BASE"; do
  [[ $n =~ ^[0-9]+$ ]] || die "durations, rounds, connections, threads and ports are whole numbers, got '$n'"
done
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v nginx >/dev/null || die "nginx not found (apt-get install nginx-light)"
command -v curl >/dev/null || die "curl not found (apt-get install curl)"
if ! command -v haproxy >/dev/null; then
  log "haproxy not found: skipping the haproxy scenarios"
  SCENARIOS=$(tr ' ' '\n' <<<"$SCENARIOS" | grep -v -- '-haproxy$' | tr '\n' ' ')
fi
PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)') || die "no Python"
"$PY" -c 'import aiohttp, atkproxy' 2>/dev/null \
  || PYTHONPATH="$ROOT" "$PY" -c 'import aiohttp, atkproxy' || die "$PY cannot import aiohttp and atkproxy"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

read -r -a LIST <<<"$SCENARIOS"
for scenario in "${LIST[@]}"; do
  case $scenario in
    get-* | post-* | async-*) ;;
    *) die "unknown scenario '$scenario'" ;;
  esac
  case ${scenario#*-} in
    direct | nginx | haproxy | plain | atk | atkdef | floor) ;;
    atkbase) [[ -d ${BENCH_ATK_BASELINE:-}/atkproxy ]] || die "$scenario needs BENCH_ATK_BASELINE=DIR holding atkproxy/" ;;
    *) die "unknown scenario '$scenario'" ;;
  esac
done
wants() { [[ " $SCENARIOS " == *"-$1 "* ]]; }  # wants VIA: some scenario goes through VIA
if [[ -n ${BENCH_STORE_DIR:-} && -e ${BENCH_STORE_DIR}/jobs.db ]]; then
  die "BENCH_STORE_DIR already holds a jobs.db; give an empty directory"
fi

# -- processes ---------------------------------------------------------------------

declare -A PID=()   # name -> pid of each process this script started
ORDER=()            # start order, stopped in reverse
WORK=""
JOBS_DB=""

cleanup() {
  local rc=$? name pid i
  trap - EXIT INT TERM
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
    name=${ORDER[i]}; pid=${PID[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
    name=${ORDER[i]}; pid=${PID[$name]}
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) did not stop on TERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $WORK"
  else
    if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
    if [[ -n ${BENCH_STORE_DIR:-} && -n $JOBS_DB ]]; then rm -f "$JOBS_DB" "$JOBS_DB-wal" "$JOBS_DB-shm"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# optional CPU pinning (taskset execs its command, so $! stays the server's pid)
SERVER_PIN=() WRK_PIN=()
if [[ -n ${BENCH_SERVER_CPUS:-} ]]; then SERVER_PIN=(taskset -c "$BENCH_SERVER_CPUS"); fi
if [[ -n ${BENCH_WRK_CPUS:-} ]]; then WRK_PIN=(taskset -c "$BENCH_WRK_CPUS"); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/atkbench.XXXXXX")
STORE_DIR=${BENCH_STORE_DIR:-$WORK/store}
mkdir -p "$WORK/runs" "$WORK/nginx" "$STORE_DIR"
JOBS_DB="$STORE_DIR/jobs.db"

start() { # start NAME CMD...: run CMD in the background, output to WORK/NAME.log
  local name=$1; shift
  "${SERVER_PIN[@]}" "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  ORDER+=("$name")
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # wait_port NAME PORT: poll until it accepts, the process dies, or the deadline
  local name=$1 port=$2 deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$port"; do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      tail -n 30 "$WORK/$name.log" >&2 || true
      die "$name exited before listening on 127.0.0.1:$port"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$WORK/$name.log" >&2 || true
      die "$name not listening on 127.0.0.1:$port after ${START_TIMEOUT}s"
    fi
    sleep 0.1
  done
}

child_of() { # the (first) child process of a pid: nginx's worker
  local kids
  kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
  echo "${kids%% *}"
}

cpu_ticks() { # utime + stime of a process (all its threads), in clock ticks
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  local -a f
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}

mem() { # mem PID FIELD: VmRSS or VmHWM in MiB
  awk -v k="$2:" '$1 == k { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "-"
}

for port in "$ATK_PORT" "$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$PLAIN_PORT" "$ATKDEF_PORT" "$ATKBASE_PORT" "$FLOOR_PORT"; do
  port_open "$port" && die "127.0.0.1:$port is already in use (set BENCH_PORT_BASE)"
done

# -- configs -----------------------------------------------------------------------

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend backend
backend backend
    http-reuse always
    server s1 127.0.0.1:$BACKEND_PORT
EOF

json_nginx_conf "$WORK/json" "$BACKEND_PORT"

atk_args() { # atk_args PORT STORE [ARGS...]: atkproxy's command line in ATK_ARGS
  local port=$1 store=$2; shift 2
  ATK_ARGS=(
    -m atkproxy serve --config "$ROOT/atkproxy/presets/automatiko.yaml"
    -D listen.host=127.0.0.1 -D "listen.port=$port"
    -D "upstream.url=http://127.0.0.1:$BACKEND_PORT"
    -D "store.url=sqlite:///$store" "$@"
  )
  for define in ${BENCH_ATK_DEFINES:-}; do ATK_ARGS+=(-D "$define"); done
}

# -- start -------------------------------------------------------------------------

log "work dir $WORK; ports atkproxy $ATK_PORT, backend $BACKEND_PORT, nginx $NGINX_PORT, haproxy $HAPROXY_PORT"
if [[ $BACKEND_APP == nginx-json ]]; then
  start backend nginx -p "$WORK/json" -c "$WORK/json/nginx.conf" -e "$WORK/json/error.log"
else
  start backend "$PY" "$HERE/backend.py" --port "$BACKEND_PORT" --app "$BACKEND_APP"
fi
wait_port backend "$BACKEND_PORT"
start nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_port nginx "$NGINX_PORT"
if wants haproxy; then
  start haproxy haproxy -db -f "$WORK/haproxy.cfg"
  wait_port haproxy "$HAPROXY_PORT"
fi
if wants plain; then
  start plain "$PY" "$HERE/plain_proxy.py" --port "$PLAIN_PORT" --upstream "http://127.0.0.1:$BACKEND_PORT"
  wait_port plain "$PLAIN_PORT"
fi
if wants floor; then
  start floor "$PY" "$HERE/floor_server.py" --port "$FLOOR_PORT"
  wait_port floor "$FLOOR_PORT"
fi
atk_args "$ATK_PORT" "$JOBS_DB" -D logging.level=warning -D logging.format=json
start atkproxy "$PY" "${ATK_ARGS[@]}"
wait_port atkproxy "$ATK_PORT"
if wants atkdef; then
  atk_args "$ATKDEF_PORT" "$STORE_DIR/jobs-atkdef.db" -D logging.format=json
  start atkdef "$PY" "${ATK_ARGS[@]}"
  wait_port atkdef "$ATKDEF_PORT"
fi
if wants atkbase; then
  atk_args "$ATKBASE_PORT" "$STORE_DIR/jobs-atkbase.db" -D logging.level=warning -D logging.format=json
  # `python -m atkproxy` takes the package from the working directory first: run it from there
  pushd "$BENCH_ATK_BASELINE" >/dev/null
  PYTHONPATH=$BENCH_ATK_BASELINE start atkbase "$PY" "${ATK_ARGS[@]}"
  popd >/dev/null
  wait_port atkbase "$ATKBASE_PORT"
fi

# processes whose CPU time is counted per run (nginx's work is done by its worker)
declare -A CPU_PID=([backend]=${PID[backend]} [atkproxy]=${PID[atkproxy]})
for name in plain atkdef atkbase floor; do
  if [[ -n ${PID[$name]:-} ]]; then CPU_PID[$name]=${PID[$name]}; fi
done
if [[ $BACKEND_APP == nginx-json ]]; then  # its worker does the work
  for _ in $(seq 50); do
    CPU_PID[backend]=$(child_of "${PID[backend]}")
    if [[ -n ${CPU_PID[backend]} ]]; then break; fi
    sleep 0.1
  done
fi
for _ in $(seq 50); do
  NGINX_WORKER=$(child_of "${PID[nginx]}")
  if [[ -n $NGINX_WORKER ]]; then break; fi
  sleep 0.1
done
[[ -n $NGINX_WORKER ]] || die "nginx started no worker"
CPU_PID[nginx]=$NGINX_WORKER
if [[ -n ${PID[haproxy]:-} ]]; then CPU_PID[haproxy]=${PID[haproxy]}; fi

META="$WORK/meta.env"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain -- atkproxy 2>/dev/null | grep -q . && echo ' (atkproxy/ has uncommitted changes)')"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "clk_tck=$(getconf CLK_TCK)"
  echo "python=$("$PY" -c 'import platform; print(platform.python_version())')"
  echo "aiohttp=$("$PY" -c 'import aiohttp; print(aiohttp.__version__)')"
  echo "uvloop=$("$PY" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo none)"
  echo "wrk=$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  if command -v haproxy >/dev/null; then echo "haproxy=$(haproxy -v | awk 'NR == 1 { print $3 }')"; fi
  if [[ -n ${BENCH_ATK_BASELINE:-} ]]; then echo "baseline=$(cat "$BENCH_ATK_BASELINE/COMMIT" 2>/dev/null || echo unknown)"; fi
  echo "store_fs=$(df -PT "$STORE_DIR" | awk 'NR == 2 { print $2 }')"
  echo "settings=wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, ${WARMUP}s warm-up, backend app $BACKEND_APP${BENCH_WRK_CPUS:+, wrk on CPUs $BENCH_WRK_CPUS}${BENCH_SERVER_CPUS:+, servers on CPUs $BENCH_SERVER_CPUS}"
  for name in atkproxy atkdef atkbase plain floor backend nginx haproxy; do
    if [[ -n ${CPU_PID[$name]:-} ]]; then echo "rss_idle_$name=$(mem "${CPU_PID[$name]}" VmRSS)"; fi
  done
} >"$META"

# -- smoke checks: each path answers what it should before any load ---------------

BODY='{"name":"Ada Lovelace","email":"ada@example.org","age":36,"approval":false}'
expect() { # expect STATUS DESCRIPTION CURL-ARGS...
  local want=$1 what=$2 got; shift 2
  got=$(curl -sS -o "$WORK/smoke.out" -D "$WORK/smoke.head" -w '%{http_code}' --max-time 10 "$@") || got="curl failed"
  if [[ $got != "$want" ]]; then
    cat "$WORK/smoke.head" "$WORK/smoke.out" >&2 2>/dev/null || true
    tail -n 20 "$WORK/atkproxy.log" >&2 || true
    die "smoke check '$what': expected $want, got $got"
  fi
}
expect 200 "GET direct" "http://127.0.0.1:$BACKEND_PORT/hello"
expect 200 "GET nginx" "http://127.0.0.1:$NGINX_PORT/hello"
if [[ -n ${PID[haproxy]:-} ]]; then expect 200 "GET haproxy" "http://127.0.0.1:$HAPROXY_PORT/hello"; fi
expect 200 "GET atkproxy" "http://127.0.0.1:$ATK_PORT/hello"
if [[ -n ${PID[plain]:-} ]]; then expect 200 "GET plain" "http://127.0.0.1:$PLAIN_PORT/hello"; fi
if [[ -n ${PID[atkdef]:-} ]]; then expect 200 "GET atkdef" "http://127.0.0.1:$ATKDEF_PORT/hello"; fi
if [[ -n ${PID[atkbase]:-} ]]; then expect 200 "GET atkbase" "http://127.0.0.1:$ATKBASE_PORT/hello"; fi
if [[ -n ${PID[floor]:-} ]]; then expect 200 "GET floor" "http://127.0.0.1:$FLOOR_PORT/hello"; fi
expect 200 "POST atkproxy" -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$ATK_PORT/registrations"
expect 202 "POST atkproxy async" -H 'Content-Type: application/json' -H 'X-ATK-Mode: async' \
  -d "$BODY" "http://127.0.0.1:$ATK_PORT/registrations"
grep -qi '^x-atk-job:' "$WORK/smoke.head" || die "the 202 has no X-ATK-Job header"
log "smoke checks passed"

# -- load --------------------------------------------------------------------------

target() { # scenario -> "KIND URL"
  local kind path port
  case $1 in
    get-*) kind=get path=/hello ;;
    post-*) kind=post path=/registrations ;;
    async-*) kind=async path=/registrations ;;
  esac
  case $1 in
    *-direct) port=$BACKEND_PORT ;;
    *-nginx) port=$NGINX_PORT ;;
    *-haproxy) port=$HAPROXY_PORT ;;
    *-atk) port=$ATK_PORT ;;
    *-plain) port=$PLAIN_PORT ;;
    *-atkdef) port=$ATKDEF_PORT ;;
    *-atkbase) port=$ATKBASE_PORT ;;
    *-floor) port=$FLOOR_PORT ;;
  esac
  echo "$kind http://127.0.0.1:$port$path"
}

store_of() { # the job store of the atkproxy a scenario goes through
  case $1 in
    *-atkdef) echo "$STORE_DIR/jobs-atkdef.db" ;;
    *-atkbase) echo "$STORE_DIR/jobs-atkbase.db" ;;
    *) echo "$JOBS_DB" ;;
  esac
}

run_one() { # run_one OUTFILE SECONDS SCENARIO
  local out=$1 seconds=$2 scenario=$3 kind url name t0 t1 drain log_before fresh
  read -r kind url <<<"$(target "$scenario")"
  declare -A before=()
  for name in "${!CPU_PID[@]}"; do before[$name]=$(cpu_ticks "${CPU_PID[$name]}"); done
  log_before=$(wc -l <"$WORK/atkproxy.log")
  t0=$(date +%s.%N)
  if ! BENCH_REQUEST=$kind timeout $((seconds + 30)) "${WRK_PIN[@]}" wrk "-t$THREADS" \
      "-c$CONNECTIONS" "-d${seconds}s" --latency -s "$HERE/bench.lua" "$url" >"$out" 2>&1; then
    cat "$out" >&2
    die "wrk failed for $scenario"
  fi
  # wrk stops with requests in flight: give the proxies a moment to finish (or fail) them
  sleep 0.5
  if [[ $kind == async ]]; then
    drain=$("$PY" "$HERE/report.py" wait "$(store_of "$scenario")" "$DRAIN_TIMEOUT") || die "atkproxy still had unsettled jobs ${DRAIN_TIMEOUT}s after the async run"
    echo "DRAIN $drain" >>"$out"
  fi
  t1=$(date +%s.%N)
  echo "WINDOW $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" >>"$out"
  for name in "${!CPU_PID[@]}"; do
    echo "CPU $name $(($(cpu_ticks "${CPU_PID[$name]}") - before[$name]))" >>"$out"
  done
  # what atkproxy logged meanwhile: unhandled exceptions (tracebacks) and rejections
  fresh=$(tail -n "+$((log_before + 1))" "$WORK/atkproxy.log")
  echo "ATKLOG $(grep -c '^Traceback' <<<"$fresh" || true) $(grep -c '"request rejected"' <<<"$fresh" || true)" >>"$out"
  for name in backend nginx haproxy plain floor atkproxy atkdef atkbase; do
    if [[ -n ${PID[$name]:-} ]] && ! kill -0 "${PID[$name]}" 2>/dev/null; then
      tail -n 30 "$WORK/$name.log" >&2
      die "$name died during $scenario"
    fi
  done
}

if ((WARMUP > 0)); then
  log "warm-up: ${WARMUP}s per scenario"
  for scenario in "${LIST[@]}"; do run_one "$WORK/runs/w-$scenario.txt" "$WARMUP" "$scenario"; done
fi
for ((round = 1; round <= ROUNDS; round++)); do
  for ((i = 0; i < ${#LIST[@]}; i++)); do  # rotate the order each round
    scenario=${LIST[(i + round - 1) % ${#LIST[@]}]}
    log "round $round/$ROUNDS: $scenario"
    run_one "$WORK/runs/r$round-$scenario.txt" "$DURATION" "$scenario"
    grep -E '^(Requests/sec|Non-2xx|  Socket errors)' "$WORK/runs/r$round-$scenario.txt" | sed 's/^/    /' >&2 || true
  done
done

if [[ -n ${BENCH_PYSPY:-} ]]; then
  for scenario in "${LIST[@]}"; do
    case $scenario in
      *-atk) target_pid=${PID[atkproxy]} ;;
      *-atkdef) target_pid=${PID[atkdef]} ;;
      *-atkbase) target_pid=${PID[atkbase]} ;;
      *) continue ;;
    esac
    log "profile: $scenario with py-spy"
    "$BENCH_PYSPY" record --nonblocking -r 200 -f raw -d "$((DURATION > 3 ? DURATION - 2 : 1))" \
      -o "$WORK/profile-$scenario.folded" -p "$target_pid" >"$WORK/pyspy-$scenario.log" 2>&1 &
    PID[pyspy-$scenario]=$!
    ORDER+=("pyspy-$scenario")
    sleep 1  # py-spy attaches before the load starts
    run_one "$WORK/runs/p-$scenario.txt" "$DURATION" "$scenario"
    wait "${PID[pyspy-$scenario]}" || log "py-spy failed: $(tail -n 3 "$WORK/pyspy-$scenario.log")"
  done
fi

sleep 1
{
  for name in atkproxy atkdef atkbase plain floor backend nginx haproxy; do
    if [[ -n ${CPU_PID[$name]:-} ]]; then
      echo "rss_after_$name=$(mem "${CPU_PID[$name]}" VmRSS)"
      echo "hwm_after_$name=$(mem "${CPU_PID[$name]}" VmHWM)"
    fi
  done
  echo "jobs=$("$PY" "$HERE/report.py" jobs "$JOBS_DB")"
  echo "atk_log=$(grep -c . "$WORK/atkproxy.log" || true) lines"
} >>"$META"

REPORT="$WORK/report.md"
"$PY" "$HERE/report.py" log "$WORK/atkproxy.log" >"$WORK/atkproxy-log.txt"
"$PY" "$HERE/report.py" table "$WORK" >"$REPORT"
cat "$REPORT"
if [[ -n ${BENCH_OUT:-} ]]; then cp "$REPORT" "$BENCH_OUT"; fi
log "done"
