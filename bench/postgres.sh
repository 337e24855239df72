#!/usr/bin/env bash
# POST /api/connections with the PostgreSQL store, and the token
# endpoint, at 1 and 2 workers: a throwaway PostgreSQL 15 server, the
# sandbox Pica and the broker on loopback, wrk for 8 s per case.
# Usage: bash bench/postgres.sh [BINARY]   (run as root: it uses runuser)
# Ports are fixed below the ephemeral range (a client connecting to a
# port in that range that nobody listens on can connect to itself).
set -u
cd "$(dirname "$0")/.."
BIN=${1:-build/authkit-broker}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
W=$(mktemp -d /tmp/pg-bench.XXXXXX)
chmod 755 "$W"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/db" stop -m fast \
    >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

mkdir "$W/db" && chown postgres "$W/db"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/db" -A trust -U postgres \
  >/dev/null
runuser -u postgres -- "$PGBIN/postgres" -D "$W/db" -p 25432 -k "$W/db" \
  -c listen_addresses=127.0.0.1 >"$W/pg.log" 2>&1 &
for _ in $(seq 100); do
  pg_isready -h 127.0.0.1 -p 25432 >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN" sandbox --listen 127.0.0.1:25090 >"$W/sandbox.log" 2>&1 &
pids+=($!)
sleep 0.5
curl -s -X POST 127.0.0.1:25090/sandbox/connections \
  -d '{"platform":"gmail","identity":"alice","identityType":"user"}' \
  >"$W/record.json"
cat >"$W/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["x-user-id"] = "alice"
wrk.headers["content-type"] = "application/json"
local f = io.open("$W/record.json"); wrk.body = f:read("a"); f:close()
LUA
printf 'wrk.method = "POST"\nwrk.headers["x-user-id"] = "alice"\n' \
  >"$W/token.lua"
cat >"$W/config.lua" <<LUA
return {allow_header_identity = true, log_level = "warn",
        store = "postgres", postgres_pool_size = 4, data_dir = "$W/data",
        postgres_url = "host=127.0.0.1 port=25432 dbname=postgres user=postgres"}
LUA

for n in 1 2; do
  PICA_SECRET_KEY=sk_test_1_bench "$BIN" --config "$W/config.lua" \
    --plugins plugins --workers "$n" --listen 127.0.0.1:25080 \
    --admin-listen 127.0.0.1:25081 --pica-url http://127.0.0.1:25090 \
    >"$W/broker-$n.log" 2>&1 &
  broker=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null 127.0.0.1:25081/healthz && break
    sleep 0.1
  done
  echo "workers=$n, POST /api/connections (postgres store):"
  wrk -t2 -c32 -d8s -s "$W/post.lua" http://127.0.0.1:25080/api/connections |
    grep -E "Requests/sec|Non-2xx"
  echo "workers=$n, token endpoint:"
  wrk -t2 -c32 -d8s -s "$W/token.lua" \
    http://127.0.0.1:25080/api/authkit/token | grep -E "Requests/sec|Non-2xx"
  kill "$broker"
  wait "$broker" 2>/dev/null
done
echo "rows: $(psql -h 127.0.0.1 -p 25432 -U postgres -tAc \
  'SELECT count(*) FROM user_connections')"
