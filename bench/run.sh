#!/usr/bin/env bash
# Benchmarks authkit-broker against the Node backend of Pica's AuthKit
# guide (bench/node-peer) and writes bench/RESULTS.md.
#
#   bench/run.sh [--quick]
#
# Builds the broker in Release, installs the Node peer, starts a sandbox
# Pica for each peer on free loopback ports, and drives both with wrk,
# same load, A B A B for several rounds. It reports; it never fails on a
# result (it exits non-zero only when it cannot build or start). Set
# BENCH_KEEP=1 to keep the servers' logs. See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
BUILD_DIR=$ROOT/build-release
PEER_DIR=$BENCH_DIR/node-peer
WRK_SCRIPT=$BENCH_DIR/lib/wrk-case.lua
SECRET=sk_test_1_benchmark
IDENTITY=alice
PASS_PATH=bench/echo
THREADS=2
HOLD_CONNS=1000
CLK_TCK=$(getconf CLK_TCK)

ROUNDS=3
DURATION=10
WARMUP=3
case "${1:-}" in
  --quick) ROUNDS=1 DURATION=1 WARMUP=1 ;;
  '') ;;
  *)
    echo "usage: bench/run.sh [--quick]" >&2
    exit 2
    ;;
esac
COMMAND="bench/run.sh${1:+ $1}"

# The rows of the table.
TOKEN_32="token endpoint, sandbox 0 ms, 32 connections"
TOKEN_256="token endpoint, sandbox 0 ms, 256 connections"
TOKEN_SLOW="token endpoint, sandbox 20 ms, 32 connections"
TOKEN_SLOW_1="token endpoint, sandbox 20 ms, 1 connection"
PASSTHROUGH_1="passthrough GET, 1 connection"
PASSTHROUGH_4="passthrough GET, 4 connections"
UPSERT="POST /api/connections (upsert), 32 connections"
MEM_IDLE="resident memory, idle"
MEM_OPEN="resident memory, $HOLD_CONNS open connections (one preflight each)"
MEM_BURST="resident memory, $HOLD_CONNS open connections (one token request each, all at once)"
MEM_PEAK="peak resident memory over the run"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/authkit-bench.XXXXXX")
RESULTS=$WORK/results.tsv
# The build is installed here, Lua runtime and plugins included, so that
# every server of the run uses the same code even if the tree changes.
INSTALL=$WORK/install
BROKER=$INSTALL/bin/authkit-broker
PLUGINS=$INSTALL/share/authkit-broker/plugins
export AUTHKIT_BROKER_LUA_DIR=$INSTALL/share/authkit-broker/lua
declare -A PID=() URL=() KEY=() NA=()
ROUND=0
WARMING=0
STAT_START=

say() {
  printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
  say "error: $*"
  exit 1
}

# Stops every process this script started, then drops the work folder
# (kept with BENCH_KEEP=1, for its logs).
cleanup() {
  local name
  for name in "${!PID[@]}"; do
    kill "${PID[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    say "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}

stop() {
  local name
  for name in "$@"; do
    if [[ -n ${PID[$name]:-} ]]; then
      kill "${PID[$name]}" 2>/dev/null || true
      wait "${PID[$name]}" 2>/dev/null || true
      unset "PID[$name]"
    fi
  done
}

build_broker() {
  say "building the broker (Release)"
  {
    bash "$ROOT/scripts/build.sh" "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release &&
      cmake --install "$BUILD_DIR" --prefix "$INSTALL"
  } >"$WORK/build.log" 2>&1 || {
    tail -n 30 "$WORK/build.log" >&2
    die "the Release build failed"
  }
}

# npm ci, unless node_modules was installed from the current lock file.
install_peer() {
  local stamp=$PEER_DIR/node_modules/.package-lock.json
  if [[ $stamp -nt $PEER_DIR/package-lock.json &&
    $stamp -nt $PEER_DIR/package.json ]]; then
    say "Node peer already installed from its lock file"
    return
  fi
  say "installing the Node peer (npm ci)"
  (cd "$PEER_DIR" && npm ci --no-audit --no-fund) >"$WORK/npm.log" 2>&1 || {
    tail -n 30 "$WORK/npm.log" >&2
    die "npm ci failed"
  }
}

free_port() {
  node -e 'const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# wait_ready NAME URL [CURL_ARG...]: waits (10 s at most) until URL
# answers 2xx while the process NAME still runs.
wait_ready() {
  local name=$1 url=$2 i
  shift 2
  for ((i = 0; i < 100; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || break
    if curl -fs -o /dev/null --max-time 1 "$@" "$url"; then
      return
    fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "$name did not start"
}

# launch NAME COMMAND...: runs COMMAND in the background, its output in
# $WORK/NAME.log; it must exec into the server so its pid is the server's.
launch() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

# start_sandbox NAME LATENCY_MS
start_sandbox() {
  local name=$1 port
  port=$(free_port)
  URL[$name]=http://127.0.0.1:$port
  launch "$name" "$BROKER" sandbox --listen "127.0.0.1:$port" \
    --latency-ms "$2"
  wait_ready "$name" "${URL[$name]}/sandbox/stats"
}

# start_broker SANDBOX
start_broker() {
  local port admin config=$WORK/broker.conf.lua
  port=$(free_port)
  admin=$(free_port)
  mkdir -p "$WORK/data"
  printf 'return {allow_header_identity = true, log_level = "warn",\n  data_dir = "%s"}\n' \
    "$WORK/data" >"$config"
  URL[broker]=http://127.0.0.1:$port
  launch broker env PICA_SECRET_KEY="$SECRET" "$BROKER" --config "$config" \
    --plugins "$PLUGINS" --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$admin" --pica-url "${URL[$1]}"
  wait_ready broker "http://127.0.0.1:$admin/readyz"
}

# start_node SANDBOX
start_node() {
  local port
  port=$(free_port)
  URL[node]=http://127.0.0.1:$port
  launch node env PICA_SECRET_KEY="$SECRET" PICA_URL="${URL[$1]}" \
    PORT="$port" NODE_ENV=production node "$PEER_DIR/server.js"
  wait_ready node "${URL[node]}/api/authkit/token" -X OPTIONS
}

# start_peers LATENCY_MS: a sandbox of its own for each peer.
start_peers() {
  say "starting sandboxes (latency $1 ms), the broker and the Node peer"
  start_sandbox sandbox_broker "$1"
  start_sandbox sandbox_node "$1"
  start_broker sandbox_broker
  start_node sandbox_node
}

stop_peers() {
  stop broker node sandbox_broker sandbox_node
}

# The vault connection the passthrough and upsert cases use, created in
# each sandbox as if the user had finished the widget.
create_connections() {
  local peer sandbox
  for peer in broker node; do
    sandbox=sandbox_$peer
    KEY[$peer]=$(curl -fsS -X POST "${URL[$sandbox]}/sandbox/connections" \
      -d "{\"platform\":\"gmail\",\"identity\":\"$IDENTITY\",\"identityType\":\"user\"}" |
      node -e 'let s = ""; process.stdin.on("data", (d) => { s += d; })
        .on("end", () => console.log(JSON.parse(s).key));') ||
      die "could not create a connection in $sandbox"
  done
}

connection_body() {
  printf '{"connection_key":"%s","platform":"gmail","environment":"test"}' \
    "${KEY[$1]}"
}

# note_route CASE PEER STATUS: marks CASE not available for PEER unless
# the probe answered 2xx.
note_route() {
  case $3 in
    2??) ;;
    404) NA[$1:$2]="route not available" ;;
    *) NA[$1:$2]="HTTP $3 at the probe" ;;
  esac
}

# Asks each route once before it is measured: a 404 from a route not
# built yet shows as n/a in the table instead of failing the run. The
# first POST /api/connections also stores the key for the passthrough.
probe_routes() {
  local peer status
  for peer in broker node; do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST \
      -H "x-user-id: $IDENTITY" -H 'content-type: application/json' \
      -d "$(connection_body "$peer")" "${URL[$peer]}/api/connections")
    note_route connections "$peer" "$status"
    status=$(curl -s -o /dev/null -w '%{http_code}' \
      -H "x-user-id: $IDENTITY" -H "x-connection-key: ${KEY[$peer]}" \
      "${URL[$peer]}/api/passthrough/$PASS_PATH")
    note_route passthrough "$peer" "$status"
  done
  status=$(curl -s -o /dev/null -w '%{http_code}' \
    -H "x-pica-secret: $SECRET" -H "x-pica-connection-key: ${KEY[broker]}" \
    "${URL[sandbox_broker]}/v1/passthrough/$PASS_PATH")
  note_route passthrough direct "$status"
  for peer in "${!NA[@]}"; do
    say "n/a: ${peer/:/ for } (${NA[$peer]})"
  done
}

# cpu_ticks NAME...: CPU time the processes have used, in clock ticks.
cpu_ticks() {
  local name sum=0
  for name in "$@"; do
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/${PID[$name]}/stat")))
  done
  echo "$sum"
}

# settle NAME...: waits (10 s at most) until the processes are idle, so
# that work left over from one run (requests wrk gave up on) does not
# load the next.
settle() {
  local i before
  for ((i = 0; i < 100; i++)); do
    before=$(cpu_ticks "$@")
    sleep 0.1
    if (($(cpu_ticks "$@") - before <= 1)); then
      return
    fi
  done
}

# record LABEL METRIC PEER VALUE [NOTE]: one row of results.tsv.
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$ROUND" "$4" \
    "${5:-}" >>"$RESULTS"
}

# record_na LABEL PEER REASON: a wrk case that could not run.
record_na() {
  local metric
  for metric in rps p50_ms p99_ms cpu_ms sandbox_cpu_ms; do
    record "$1" "$metric" "$2" na "$3"
  done
}

# drive SECONDS CONNS METHOD URL [HEADER...]: one bounded wrk run
# (BENCH_BODY in the environment is its body); prints its BENCH line.
drive() {
  local seconds=$1 conns=$2 method=$3 url=$4 args=() header
  local threads=$((conns < THREADS ? conns : THREADS))
  shift 4
  for header in "$@"; do
    args+=(-H "$header")
  done
  BENCH_METHOD=$method wrk -t"$threads" -c"$conns" -d"${seconds}s" \
    --timeout 10s -s "$WRK_SCRIPT" "${args[@]}" "$url" 2>&1 |
    grep '^BENCH ' || true
}

# measure LABEL CASE PEER SERVER CONNS METHOD URL [HEADER...]: one wrk
# run against PEER, whose process is SERVER; records requests/s, p50,
# p99, and the CPU time per request of the server and of its sandbox.
# While warming up it only drives the load (the sandbox alone needs no
# warming).
measure() {
  local label=$1 case=$2 peer=$3 server=$4 conns=$5 line ticks sandbox_ticks
  local sandbox=sandbox_${3/direct/broker} note=''
  shift 5
  if [[ -n ${NA[$case:$peer]:-} ]]; then
    ((WARMING)) || record_na "$label" "$peer" "${NA[$case:$peer]}"
    return
  fi
  if ((WARMING)); then
    [[ $peer == direct ]] || drive "$WARMUP" "$conns" "$@" >/dev/null
    return
  fi
  settle "$server" "$sandbox"
  ticks=$(cpu_ticks "$server")
  sandbox_ticks=$(cpu_ticks "$sandbox")
  line=$(drive "$DURATION" "$conns" "$@")
  ticks=$(($(cpu_ticks "$server") - ticks))
  sandbox_ticks=$(($(cpu_ticks "$sandbox") - sandbox_ticks))
  if [[ -z $line ]]; then
    record_na "$label" "$peer" "wrk failed"
    return
  fi
  local rps p50 p99 requests status_errors socket_errors
  read -r rps p50 p99 requests status_errors socket_errors < <(
    sed -E 's/^BENCH //; s/[a-z0-9_]+=//g' <<<"$line")
  if ((status_errors + socket_errors > 0)); then
    note="$status_errors non-2xx and $socket_errors socket errors in $requests requests"
  fi
  # More than 1 % failed: the numbers would describe the failures.
  if ((100 * (status_errors + socket_errors) > requests)); then
    record_na "$label" "$peer" "$note"
    return
  fi
  record "$label" rps "$peer" "$rps" "$note"
  record "$label" p50_ms "$peer" "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$note"
  record "$label" p99_ms "$peer" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$note"
  record "$label" cpu_ms "$peer" "$(per_request "$ticks" "$requests")"
  record "$label" sandbox_cpu_ms "$peer" \
    "$(per_request "$sandbox_ticks" "$requests")"
}

# per_request TICKS REQUESTS: milliseconds of CPU per request.
per_request() {
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" \
    'BEGIN { print n ? t * 1000 / hz / n : 0 }'
}

# token_case LABEL CONNS
token_case() {
  local peer
  for peer in broker node; do
    measure "$1" token "$peer" "$peer" "$2" POST \
      "${URL[$peer]}/api/authkit/token" "x-user-id: $IDENTITY"
  done
}

# passthrough_case LABEL CONNS: through each peer, then straight at the
# broker's sandbox.
passthrough_case() {
  local peer
  for peer in broker node; do
    measure "$1" passthrough "$peer" "$peer" "$2" GET \
      "${URL[$peer]}/api/passthrough/$PASS_PATH" \
      "x-user-id: $IDENTITY" "x-connection-key: ${KEY[$peer]}"
  done
  measure "$1" passthrough direct sandbox_broker "$2" GET \
    "${URL[sandbox_broker]}/v1/passthrough/$PASS_PATH" \
    "x-pica-secret: $SECRET" "x-pica-connection-key: ${KEY[broker]}"
}

# connections_case LABEL CONNS: the same key posted over and over, an
# upsert after the first.
connections_case() {
  local peer
  for peer in broker node; do
    BENCH_BODY=$(connection_body "$peer") measure "$1" connections \
      "$peer" "$peer" "$2" POST "${URL[$peer]}/api/connections" \
      "x-user-id: $IDENTITY" "content-type: application/json"
  done
}

rss_mib() {
  awk "/^$2:/"' { printf "%.1f", $2 / 1024 }' "/proc/${PID[$1]}/status"
}

# hold LABEL METHOD: resident memory of each peer while HOLD_CONNS
# keep-alive connections are open, each having sent one METHOD request
# to the token endpoint (POST: a token request; OPTIONS: a preflight).
hold() {
  local peer holder i line note
  for peer in broker node; do
    settle "$peer" "sandbox_$peer"
    holder=hold_$peer
    launch "$holder" node "$BENCH_DIR/lib/hold.js" \
      "${URL[$peer]}/api/authkit/token" "$HOLD_CONNS" 90 "$2" \
      "x-user-id: $IDENTITY"
    line=''
    for ((i = 0; i < 600 && ${#line} == 0; i++)); do
      sleep 0.1
      line=$(grep '^HOLD ' "$WORK/$holder.log" || true)
    done
    note=''
    if [[ $line != "HOLD open=$HOLD_CONNS ok=$HOLD_CONNS failed=0" ]]; then
      note=${line:-the connections never all answered}
      note=${note#HOLD }
    fi
    record "$1" rss_mib "$peer" "$(rss_mib "$peer" VmRSS)" "$note"
    stop "$holder"
  done
}

# Resident memory idle (after one token request), with open connections
# that cost next to no work, then after a burst of token requests.
memory_case() {
  local peer
  say "memory: idle and with $HOLD_CONNS open connections"
  for peer in broker node; do
    curl -fs -o /dev/null -X POST -H "x-user-id: $IDENTITY" \
      "${URL[$peer]}/api/authkit/token" || true
    record "$MEM_IDLE" rss_mib "$peer" "$(rss_mib "$peer" VmRSS)"
  done
  hold "$MEM_OPEN" OPTIONS
  hold "$MEM_BURST" POST
}

# Sandbox latency 0 ms: throughput, passthrough, upserts and memory.
phase_fast() {
  local peer
  start_peers 0
  create_connections
  probe_routes
  memory_case
  say "warming up every route"
  WARMING=1
  token_case "" 32
  passthrough_case "" 4
  connections_case "" 32
  WARMING=0
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    say "round $ROUND/$ROUNDS at sandbox latency 0 ms"
    token_case "$TOKEN_32" 32
    token_case "$TOKEN_256" 256
    passthrough_case "$PASSTHROUGH_1" 1
    passthrough_case "$PASSTHROUGH_4" 4
    connections_case "$UPSERT" 32
  done
  ROUND=0
  for peer in broker node; do
    record "$MEM_PEAK" rss_mib "$peer" "$(rss_mib "$peer" VmHWM)"
  done
  stop_peers
}

# Sandbox latency 20 ms: what round trips to Pica cost.
phase_slow() {
  start_peers 20
  WARMING=1
  token_case "" 32
  WARMING=0
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    say "round $ROUND/$ROUNDS at sandbox latency 20 ms"
    token_case "$TOKEN_SLOW_1" 1
    token_case "$TOKEN_SLOW" 32
  done
  ROUND=0
  stop_peers
}

# row LABEL METRIC [RULE]: one row of the table, with the project's
# target for it (see lib/report.js for the rules).
row() {
  printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$WORK/rows.tsv"
}

write_rows() {
  row "$TOKEN_32" rps 'ratio>=10'
  row "$TOKEN_32" cpu_ms
  row "$TOKEN_32" sandbox_cpu_ms
  row "$TOKEN_256" rps 'ratio>=10'
  row "$TOKEN_SLOW" p50_ms 'broker<30 & node>=60'
  row "$TOKEN_SLOW" p99_ms
  row "$TOKEN_SLOW_1" p50_ms 'broker<30 & node>=60'
  row "$PASSTHROUGH_1" p50_ms 'added<0.3'
  row "$PASSTHROUGH_1" p99_ms
  row "$PASSTHROUGH_4" p50_ms 'added<0.3'
  row "$PASSTHROUGH_4" p99_ms
  row "$PASSTHROUGH_4" cpu_ms
  row "$UPSERT" rps
  row "$UPSERT" cpu_ms
  row "$UPSERT" sandbox_cpu_ms
  row "$MEM_IDLE" rss_mib
  row "$MEM_OPEN" rss_mib 'broker<25'
  row "$MEM_BURST" rss_mib
  row "$MEM_PEAK" rss_mib
}

# Share of the machine's CPU time stolen by the hypervisor since
# STAT_START (a line of /proc/stat), and the share left idle.
cpu_share() {
  awk -v start="$STAT_START" '/^cpu / {
    split(start, a)
    for (i = 2; i <= 9; i++) { d[i] = $i - a[i]; total += d[i] }
    printf "%.0f %% stolen, %.0f %% idle", 100 * d[9] / total, 100 * d[5] / total
  }' /proc/stat
}

write_meta() {
  {
    printf 'command\t%s\n' "$COMMAND"
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'cpus\t%s\n' "$(nproc)"
    printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'loadavg\t%s\n' "$1"
    printf 'cpushare\t%s\n' "$(cpu_share)"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'threads\t%s\n' "$THREADS"
    printf 'broker\t%s\n' "$("$BROKER" --version 2>&1 | head -n 1)"
    printf 'commit\t%s\n' "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    printf 'node\t%s\n' "$(node --version)"
    printf 'wrk\t%s\n' "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  } >"$WORK/meta.tsv"
}

main() {
  local loadavg
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  (($(ulimit -n) >= 2 * HOLD_CONNS + 100)) ||
    say "warning: ulimit -n is $(ulimit -n); the memory case needs more"
  build_broker
  install_peer
  loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
  STAT_START=$(head -n 1 /proc/stat)
  phase_fast
  phase_slow
  write_meta "$loadavg"
  write_rows
  node "$BENCH_DIR/lib/report.js" "$WORK/meta.tsv" "$WORK/rows.tsv" \
    "$RESULTS" >"$BENCH_DIR/RESULTS.md"
  say "wrote bench/RESULTS.md"
  cat "$BENCH_DIR/RESULTS.md"
}

main
