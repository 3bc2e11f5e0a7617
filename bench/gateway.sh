#!/usr/bin/env bash
# API gateway benchmark (not a test): `GET /v1/policies/{id}` on PostgreSQL at 64 connections.
#
#   * creates a fresh database, generates $BENCH_POLICIES northwind policies (with claims) and
#     ingests them with `carrierhub ingest`,
#   * starts `carrierhub serve --role api` on that database four times and drives each with
#     `wrk` for $BENCH_SECS seconds, the requests spread over $BENCH_IDS policy ids:
#       open, uncached    development mode (no credentials, no rate limits), no read cache
#       open, cached      development mode, the read cache on (the default)
#       secured, uncached API keys required (an admin key sent with every request), rate
#                         limits on (in process; the key's budget is far above the load, so
#                         nothing is refused but every request is counted), no read cache
#       secured, cached   the same with the read cache on
#   * baseline in the same run: `pgbench -S` (a primary-key SELECT per transaction) on the same
#     server, in the same database, with 64 clients: the ceiling of one lookup per request
#     through PostgreSQL's own client.
# Every run checks its responses: wrk counts non-2xx answers, and the run fails on any.
# Prints a markdown table (requests/s, p50, p99, ratios) and writes it to
# bench/out/gateway-results.md. The database is dropped at the end, also when the run fails.
#
# The load generator and the server share this machine's cores: the figures are relative to
# each other and to pgbench, run the same way, not absolute capacities.
#
# Usage: bash bench/gateway.sh
#   BENCH_POLICIES=20000      policies in the database
#   BENCH_IDS=2000            distinct policy ids requested (round robin per connection)
#   BENCH_SECS=20             seconds per wrk run
#   BENCH_CONNECTIONS=64      connections (and pgbench clients)
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432  the server (no database name)
#   BENCH_OUT=bench/out       working directory (gitignored)
#   BENCH_KEEP=1              keep the database and the logs
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

POLICIES="${BENCH_POLICIES:-20000}"
IDS="${BENCH_IDS:-2000}"
SECS="${BENCH_SECS:-20}"
CONNS="${BENCH_CONNECTIONS:-64}"
PG_SERVER="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_SERVER="${PG_SERVER%/}"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
KEEP="${BENCH_KEEP:-0}"
CARRIER=northwind
BIN="$ROOT/target/release/carrierhub"
PSQL=psql
TIME=/usr/bin/time
RESULTS="$OUT/gateway-results.md"
DB="chbench_gw_$$"
PORT="${BENCH_PORT:-18480}"
W="$OUT/gateway"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

unset CARRIERHUB_DATABASE_URL CARRIERHUB_DATA_DIR CARRIERHUB_NO_MIGRATE CARRIERHUB_LOG RUST_LOG \
    CARRIERHUB_API_KEYS CARRIERHUB_CONFIG CARRIERHUB_REDIS_URL CARRIERHUB_READ_CACHE_ENTRIES

# --- prerequisites -----------------------------------------------------------
install_pkg() { # install_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "$1 missing; installing the '$2' package"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y "$2" >/dev/null ||
        { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y "$2" >/dev/null; }
    command -v "$1" >/dev/null 2>&1 || die "$1 not available"
}
install_pkg wrk wrk
command -v "$PSQL" >/dev/null 2>&1 || die "psql not available"
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1 || true)
[[ -x "$PGBENCH" ]] || die "pgbench not available (the postgresql-contrib or client package)"

db_url() { printf '%s/%s' "$PG_SERVER" "$1"; }
sql() {
    local db=$1; shift
    local args=()
    for s in "$@"; do args+=(-c "$s"); done
    PGOPTIONS='-c client_min_messages=warning' \
        "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$(db_url "$db")" "${args[@]}"
}
sql postgres 'SELECT 1' >/dev/null || die "no PostgreSQL server answers at $PG_SERVER"
PG_VERSION=$(sql postgres 'SHOW server_version')
PG_MAX_CONN=$(sql postgres 'SHOW max_connections')

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    local rc=$?
    stop_server
    if [[ "$KEEP" == 1 ]]; then
        log "kept database $DB"
    else
        sql postgres "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || log "could not drop $DB"
    fi
    exit "$rc"
}
trap cleanup EXIT

# --- build and data ------------------------------------------------------------
log "building release binary"
cargo build --release -p carrierhub
[[ -x "$BIN" ]] || die "$BIN not found after build"

rm -rf "$W"
mkdir -p "$W"
sql postgres "DROP DATABASE IF EXISTS $DB WITH (FORCE)" "CREATE DATABASE $DB" >/dev/null
URL="$(db_url "$DB")"
ch() { "$BIN" --log-format json --database-url "$URL" --data-dir "$W/data" "$@"; }

log "generating and ingesting $POLICIES policies"
ch gen --out "$W/gen" --policies "$POLICIES" --carrier "$CARRIER" >"$W/gen.out" 2>"$W/gen.log" ||
    die "gen failed (see $W/gen.log)"
ch ingest --carrier "$CARRIER" --mapping "$W/gen/$CARRIER-policies.toml" --json \
    "$W/gen/$CARRIER-policies.csv" >"$W/ingest.json" 2>"$W/ingest.log" ||
    die "ingest failed (see $W/ingest.log)"
inserted=$(json_get "$W/ingest.json" .counts.inserted)
[[ "$inserted" -eq "$POLICIES" ]] || die "ingest inserted $inserted policies, expected $POLICIES"
if [[ -f "$W/gen/$CARRIER-claims.csv" && -f "$W/gen/$CARRIER-claims.toml" ]]; then
    ch ingest --carrier "$CARRIER" --mapping "$W/gen/$CARRIER-claims.toml" --json \
        "$W/gen/$CARRIER-claims.csv" >"$W/ingest-claims.json" 2>"$W/ingest-claims.log" ||
        die "claims ingest failed (see $W/ingest-claims.log)"
fi
CLAIMS=$(sql "$DB" 'SELECT count(*) FROM claims')

# The ids requested: spread over the table, as a Lua array for wrk.
sql "$DB" "SELECT id FROM policies ORDER BY md5(id::text) LIMIT $IDS" >"$W/ids.txt"
n_ids=$(wc -l <"$W/ids.txt")
[[ "$n_ids" -ge 1 ]] || die "no policy ids"
{
    printf 'local ids = {%s}\n' "$(paste -sd, "$W/ids.txt")"
    cat <<'LUA'
local token = os.getenv("BENCH_TOKEN")
local counter = 0
setup = function(thread)
    thread:set("offset", counter * 7919)
    counter = counter + 1
end
local i = 0
request = function()
    i = i + 1
    local id = ids[((offset or 0) + i) % #ids + 1]
    local headers = {}
    if token and token ~= "" then
        headers["Authorization"] = "Bearer " .. token
    end
    return wrk.format("GET", "/v1/policies/" .. id, headers)
end
LUA
} >"$W/requests.lua"

# An admin key whose budget is far above what the run can send: every request is checked
# and counted, none refused.
ch keys create --role admin --limit "reads=100000000/60s" --description "gateway benchmark" \
    --json >"$W/key.json" 2>"$W/key.log" || die "keys create failed (see $W/key.log)"
TOKEN=$(json_get "$W/key.json" .token)
cat >"$W/open.toml" <<'TOML'
[rate_limits]
enabled = false
TOML
cat >"$W/secured.toml" <<'TOML'
[auth]
api_keys = true

[rate_limits]
enabled = true
TOML

# --- one wrk run against one server configuration ---------------------------------
# run NAME CONFIG CACHE_ENTRIES TOKEN → NAME.wrk
run() {
    local name=$1 config=$2 cache=$3 token=$4
    log "$name: serve (config $config, read cache $cache entries)"
    CARRIERHUB_LOG=warn "$BIN" --log-format json --database-url "$URL" --data-dir "$W/data" \
        serve --role api --bind "127.0.0.1:$PORT" --config "$config" \
        --read-cache-entries "$cache" >"$W/$name.serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || die "$name: the server did not start (see $W/$name.serve.log)"
    # One checked request first: the right policy, through the credentials given.
    local first auth=()
    first=$(head -1 "$W/ids.txt")
    [[ -n "$token" ]] && auth=(-H "Authorization: Bearer $token")
    curl -fsS "${auth[@]}" "http://127.0.0.1:$PORT/v1/policies/$first" >"$W/$name.first.json" ||
        die "$name: GET /v1/policies/$first failed"
    [[ "$(json_get "$W/$name.first.json" .id)" == "$first" ]] || die "$name: wrong policy returned"
    if [[ -n "$token" ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/policies/$first")
        [[ "$code" == 401 ]] || die "$name: a request without the key got $code, expected 401"
    fi
    # Warm-up (connections, caches, PostgreSQL's buffers), then the measured run.
    BENCH_TOKEN="$token" wrk -t2 -c"$CONNS" -d3s -s "$W/requests.lua" \
        "http://127.0.0.1:$PORT" >"$W/$name.warmup.wrk" 2>&1
    BENCH_TOKEN="$token" wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$W/requests.lua" \
        "http://127.0.0.1:$PORT" >"$W/$name.wrk" 2>&1 || die "$name: wrk failed"
    stop_server
    if grep -q 'Non-2xx or 3xx responses' "$W/$name.wrk"; then
        die "$name: some responses were errors (see $W/$name.wrk)"
    fi
    if grep -q 'Socket errors' "$W/$name.wrk"; then
        log "$name: $(grep 'Socket errors' "$W/$name.wrk")"
    fi
}
rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }
# latency FILE PERCENT → milliseconds
latency() {
    awk -v p="$2%" '$1 == p {
        v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v);
        if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000; else if (unit == "m") v *= 60000;
        printf "%.2f", v }' "$1"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run open-uncached "$W/open.toml" 0 ""
run open-cached "$W/open.toml" 10000 ""
run secured-uncached "$W/secured.toml" 0 "$TOKEN"
run secured-cached "$W/secured.toml" 10000 "$TOKEN"

# --- baseline: pgbench -S in the same database ------------------------------------
log "pgbench: initialising (scale 10) in $DB"
"$PGBENCH" -i -q -s 10 "$URL" >"$W/pgbench-init.log" 2>&1 || die "pgbench -i failed (see $W/pgbench-init.log)"
clients=$CONNS
[[ "$clients" -lt "$PG_MAX_CONN" ]] || clients=$((PG_MAX_CONN - 5))
"$PGBENCH" -S -n -c "$clients" -j 2 -T 3 "$URL" >/dev/null 2>&1 || true
"$PGBENCH" -S -n -c "$clients" -j 2 -T "$SECS" -r "$URL" >"$W/pgbench.log" 2>&1 ||
    die "pgbench -S failed (see $W/pgbench.log)"
# pgbench -S with -l would give percentiles; its average latency is what it prints.
pg_tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$W/pgbench.log" | tail -1)
pg_lat=$(awk '/^latency average = / { printf "%.2f", $4 }' "$W/pgbench.log")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------
ou=$(rps "$W/open-uncached.wrk"); oc=$(rps "$W/open-cached.wrk")
su=$(rps "$W/secured-uncached.wrk"); sc=$(rps "$W/secured-cached.wrk")
row() { # row LABEL NAME RPS
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$(latency "$W/$2.wrk" 50)" \
        "$(latency "$W/$2.wrk" 99)" "$(ratio "$3" "$ou")" "$(ratio "$3" "$pg_tps")"
}
{
    echo "# Gateway benchmark: GET /v1/policies/{id} on PostgreSQL"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) · $(nproc) cores · PostgreSQL $PG_VERSION · $POLICIES policies, $CLAIMS claims · $n_ids ids · $CONNS connections · ${SECS}s per run · wrk and the server on the same machine · load before $LOAD_BEFORE, after $LOAD_AFTER"
    echo
    echo "| configuration | requests/s | p50 ms | p99 ms | vs open uncached | vs pgbench -S |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "open (no auth, no limits), uncached" open-uncached "$ou"
    row "open, cached" open-cached "$oc"
    row "secured (API key, rate limits), uncached" secured-uncached "$su"
    row "secured, cached" secured-cached "$sc"
    printf '| pgbench -S (%s clients, ceiling) | %s | avg %s | | | 1.00 |\n' "$clients" "$pg_tps" "$pg_lat"
    echo
    echo "- secured / open throughput (the overhead of authentication and rate limits): uncached $(ratio "$su" "$ou"), cached $(ratio "$sc" "$oc")"
    echo "- the read cache: open $(ratio "$oc" "$ou")×, secured $(ratio "$sc" "$su")× the uncached throughput"
} | tee "$RESULTS"
