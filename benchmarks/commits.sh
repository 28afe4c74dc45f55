#!/usr/bin/env bash
# What each change bought: atkproxy at several commits side by side, one process per commit, in
# front of the fixed-JSON nginx backend, loaded in turn (the order rotating each round) with the
# same wrk POST, so every commit sees the same machine. Prints the proxy CPU per request (user +
# system, from /proc) and req/s of each round, and the medians.
#
#   bash benchmarks/commits.sh 78c2c73 21ade6b HEAD         # 3 rounds x 5 s each
#   COMMITS_ROUNDS=5 COMMITS_DURATION=10 bash benchmarks/commits.sh main perf
#
# Settings: COMMITS_ROUNDS (3), COMMITS_DURATION (5 s), COMMITS_CONNECTIONS (64),
# COMMITS_PORT_BASE (18280: the backend, then one port per commit), PYTHON (python3).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=nginx_json.sh
source "$HERE/nginx_json.sh"
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${COMMITS_ROUNDS:-3}
DURATION=${COMMITS_DURATION:-5}
CONNECTIONS=${COMMITS_CONNECTIONS:-64}
BASE=${COMMITS_PORT_BASE:-18280}
PY=${PYTHON:-python3}
(($# > 0)) || { echo "usage: $0 COMMIT..." >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/atkcommits.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # wait_port PORT: poll with a deadline until it accepts
  local deadline=$((SECONDS + 20))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "nothing listening on $1" >&2; exit 1; }
    sleep 0.1
  done
}

json_nginx_conf "$WORK/nginx" "$BASE"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
wait_port "$BASE"

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"name":"Ada Lovelace","email":"ada@example.org","age":36,"approval":false}'
wrk.headers["Content-Type"] = "application/json"
EOF

NAMES=() PORTS=() ATK=()
for commit in "$@"; do
  i=${#NAMES[@]}
  dir="$WORK/c$i"
  mkdir -p "$dir"
  git -C "$ROOT" archive "$commit" atkproxy | tar -x -C "$dir"
  port=$((BASE + 1 + i))
  # run from its own directory: `python -m atkproxy` takes the package from there first
  (cd "$dir" && PYTHONPATH=$dir exec "$PY" -m atkproxy serve \
    --config "$ROOT/atkproxy/presets/automatiko.yaml" -D listen.host=127.0.0.1 \
    -D "listen.port=$port" -D "upstream.url=http://127.0.0.1:$BASE" \
    -D "store.url=sqlite:///$dir/jobs.db" -D logging.level=warning >"$dir/log" 2>&1) &
  PIDS+=($!) ATK+=($!) NAMES+=("$(git -C "$ROOT" rev-parse --short "$commit")") PORTS+=("$port")
done
for port in "${PORTS[@]}"; do
  wait_port "$port"
  wrk -t1 "-c$CONNECTIONS" -d1s -s "$WORK/post.lua" "http://127.0.0.1:$port/registrations" >/dev/null
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A CPU=() RPS=()
for ((round = 0; round < ROUNDS; round++)); do
  for ((j = 0; j < ${#NAMES[@]}; j++)); do
    k=$(((j + round) % ${#NAMES[@]}))
    before=$(ticks "${ATK[k]}")
    out=$(wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" -s "$WORK/post.lua" \
      "http://127.0.0.1:${PORTS[k]}/registrations")
    after=$(ticks "${ATK[k]}")
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    CPU[$k]+=" $(awk -v t=$((after - before)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')"
    RPS[$k]+=" $(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")"
  done
done

med() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "| commit | proxy CPU µs/req (median; each round) | req/s (median; each round) |"
echo "|---|--:|--:|"
for ((k = 0; k < ${#NAMES[@]}; k++)); do
  echo "| ${NAMES[k]} | $(med <<<"${CPU[$k]}") (${CPU[$k]# }) | $(med <<<"${RPS[$k]}") (${RPS[$k]# }) |"
done
echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s POST, $ROUNDS rounds, fixed-JSON nginx backend, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
