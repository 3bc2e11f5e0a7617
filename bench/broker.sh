#!/usr/bin/env bash
# Broker benchmark (not a test): end-to-end records per second through the broker, with 1
# and 2 worker processes, and the latency from a change's commit to a subscriber receiving
# its event.
#
#   * generates $BENCH_POLICIES policy rows per carrier for the seven synthetic carriers, with
#     their claim feeds (`carrierhub gen`),
#   * baseline: the same files through `carrierhub ingest` one after another, in one process,
#     into a fresh PostgreSQL database (no broker, no HTTP),
#   * for WORKERS in 1 2: a fresh database and a private NATS server (JetStream in a temporary
#     directory); one process with `--role api,relay`, WORKERS processes with `--role worker`,
#     and a subscriber (crates/cli/examples/event_latency.rs) on every change event. All files
#     are uploaded through the API; the time runs from the first upload until every
#     submission is finished. Checks the counts equal the baseline's.
#   * the same in embedded mode: one `serve` process, SQLite and the embedded broker.
# Prints a markdown table and writes it to bench/out/broker-results.md.
#
# Usage: bash bench/broker.sh
#   BENCH_POLICIES=20000                          policy rows per carrier
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432  the server (no database name)
#   NATS_SERVER=/usr/sbin/nats-server             the NATS server binary
#   BENCH_OUT=bench/out                           working directory (gitignored)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

POLICIES="${BENCH_POLICIES:-20000}"
PG_SERVER="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_SERVER="${PG_SERVER%/}"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
BIN="$ROOT/target/release/carrierhub"
LATENCY="$ROOT/target/release/examples/event_latency"
TIME=/usr/bin/time
RESULTS="$OUT/broker-results.md"
DB_PREFIX="chbroker_$$"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
unset CARRIERHUB_DATABASE_URL CARRIERHUB_DATA_DIR CARRIERHUB_BROKER_URL CARRIERHUB_LOG RUST_LOG

command -v psql >/dev/null 2>&1 || die "psql not available"
[[ -x "$NATS_SERVER" ]] || die "nats-server not found (set NATS_SERVER)"
command -v curl >/dev/null 2>&1 || die "curl not available"

db_url() { printf '%s/%s' "$PG_SERVER" "$1"; }
sql() {
    local db=$1; shift
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -A -t -v ON_ERROR_STOP=1 "$(db_url "$db")" -c "$1"
}
sql postgres 'SELECT 1' >/dev/null || die "no PostgreSQL server answers at $PG_SERVER"

CREATED_DBS=()
PIDS=()
create_db() {
    sql postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
    sql postgres "CREATE DATABASE $1" >/dev/null
    CREATED_DBS+=("$1")
}
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "${CREATED_DBS[@]}"; do
        sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT

log "building release binary and the latency subscriber"
cargo build --release -p carrierhub --bins --example event_latency
mkdir -p "$OUT"
W="$OUT/broker"
rm -rf "$W"
mkdir -p "$W"

log "generating $POLICIES policies per carrier"
"$BIN" gen --out "$W/gen" --policies "$POLICIES" >"$W/gen.out" 2>&1 || die "gen failed"
# Per carrier: policies, then claims (which refer to them).
FILES=()
for map in "$W"/gen/*-policies.toml; do
    carrier=$(basename "$map" -policies.toml)
    for kind in policies claims; do
        f=$(ls "$W"/gen/"$carrier-$kind".* | grep -v '\.toml$' | head -1)
        FILES+=("$carrier|$W/gen/$carrier-$kind.toml|$f")
    done
done

# --- baseline: carrierhub ingest, one process, no broker -------------------------
BASE_DB="${DB_PREFIX}_base"
create_db "$BASE_DB"
log "baseline: carrierhub ingest of ${#FILES[@]} files into $BASE_DB"
t0=$EPOCHREALTIME
records=0
for entry in "${FILES[@]}"; do
    IFS='|' read -r carrier map file <<<"$entry"
    "$BIN" --database-url "$(db_url "$BASE_DB")" --data-dir "$W/base-data" \
        ingest --carrier "$carrier" --mapping "$map" --json "$file" >"$W/base.json" 2>>"$W/base.log" ||
        die "ingest of $file failed"
    n=$(json_get "$W/base.json" .counts.received)
    records=$((records + n))
done
base_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
base_events=$(sql "$BASE_DB" "SELECT count(*) FROM outbox WHERE event_type NOT LIKE 'submission.%'")
log "baseline: $records records in ${base_s}s"

# wait_port LOGFILE: the address a process printed ("… http://ADDR").
wait_addr() {
    for _ in $(seq 1 200); do
        a=$(grep -o 'http://[0-9.:]*' "$1" | head -1 || true)
        [[ -n "$a" ]] && { echo "$a"; return; }
        sleep 0.05
    done
    die "no address in $1"
}

upload_all() { # upload_all BASE
    for entry in "${FILES[@]}"; do
        IFS='|' read -r carrier map file <<<"$entry"
        curl -sf -o /dev/null -F "file=@$file" -F "mapping_file=@$map" \
            "$1/v1/carriers/$carrier/submissions" || die "upload of $file failed"
    done
}

# wait_done COUNT_SQL_COMMAND...: polls until no submission is unfinished.
unfinished_pg() { sql "$1" "SELECT count(*) FROM submissions WHERE status IN ('received','processing')"; }

# lat_cells JSON: "p50 | p99 | events" from the subscriber's report.
lat_cells() {
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.1f | %.1f | %d" % (d["p50_ms"], d["p99_ms"], d["events"]))' "$1"
}

rows_md=()
run_distributed() { # run_distributed WORKERS
    local workers=$1 db="${DB_PREFIX}_w$1" dir="$W/w$1"
    mkdir -p "$dir"
    create_db "$db"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
    PIDS+=($!)
    local nats_pid=$!
    for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    local broker="nats://127.0.0.1:$port"
    "$BIN" --database-url "$(db_url "$db")" --data-dir "$dir/data" --broker "$broker" \
        serve --bind 127.0.0.1:0 --role api,relay >"$dir/api.out" 2>"$dir/api.log" &
    PIDS+=($!)
    local base
    base=$(wait_addr "$dir/api.out")
    for i in $(seq 1 "$workers"); do
        "$BIN" --database-url "$(db_url "$db")" --data-dir "$dir/data" --broker "$broker" \
            serve --role worker --admin-bind 127.0.0.1:0 >"$dir/worker$i.out" 2>"$dir/worker$i.log" &
        PIDS+=($!)
    done
    "$LATENCY" "$broker" "$(db_url "$db")" $((base_events + ${#FILES[@]} * 2)) 15 >"$dir/latency.out" 2>"$dir/latency.log" &
    local lat_pid=$!
    PIDS+=($lat_pid)
    for _ in $(seq 1 200); do grep -q ready "$dir/latency.out" 2>/dev/null && break; sleep 0.05; done
    log "$workers worker(s): uploading ${#FILES[@]} files"
    local t0=$EPOCHREALTIME
    upload_all "$base"
    while [[ $(unfinished_pg "$db") -ne 0 ]]; do sleep 0.1; done
    local secs
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    local got
    got=$(sql "$db" "SELECT sum(records) FROM submissions")
    [[ "$got" -eq "$records" ]] || die "$workers worker(s): $got records processed, expected $records"
    local events
    events=$(sql "$db" "SELECT count(*) FROM outbox WHERE event_type NOT LIKE 'submission.%'")
    [[ "$events" -eq "$base_events" ]] || die "$workers worker(s): $events change events, the baseline wrote $base_events"
    wait "$lat_pid" || true
    local lat
    lat=$(tail -1 "$dir/latency.out")
    log "$workers worker(s): $records records in ${secs}s; latency $lat"
    rows_md+=("| NATS + PostgreSQL, $workers worker process(es) | $secs | $(rate "$records" "$secs") | $(ratio "$base_s" "$secs") | $(lat_cells "$lat") |")
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

run_embedded() {
    local dir="$W/embedded"
    mkdir -p "$dir"
    "$BIN" --data-dir "$dir/data" serve --bind 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.log" &
    PIDS+=($!)
    local base
    base=$(wait_addr "$dir/serve.out")
    local store="$dir/data/carrierhub.db"
    "$LATENCY" embedded "$store" $((base_events + ${#FILES[@]} * 2)) 15 >"$dir/latency.out" 2>"$dir/latency.log" &
    local lat_pid=$!
    PIDS+=($lat_pid)
    for _ in $(seq 1 200); do grep -q ready "$dir/latency.out" 2>/dev/null && break; sleep 0.05; done
    log "embedded: uploading ${#FILES[@]} files"
    local t0=$EPOCHREALTIME
    upload_all "$base"
    while [[ $(curl -sf "$base/v1/submissions?limit=1000" | python3 -c 'import json,sys; print(sum(s["status"] in ("received","processing") for s in json.load(sys.stdin)["items"]))') -ne 0 ]]; do
        sleep 0.1
    done
    local secs
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    wait "$lat_pid" || true
    local lat
    lat=$(tail -1 "$dir/latency.out")
    log "embedded: $records records in ${secs}s; latency $lat"
    rows_md+=("| embedded (SQLite), 1 process | $secs | $(rate "$records" "$secs") | $(ratio "$base_s" "$secs") | $(lat_cells "$lat") |")
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

run_distributed 1
run_distributed 2
run_embedded

{
    echo "# Broker benchmark: $records records ($POLICIES policies per carrier, 7 carriers, with claims)"
    echo
    echo "Machine: $(nproc) cores; PostgreSQL $(sql postgres 'SHOW server_version'); $("$NATS_SERVER" --version)."
    echo "Baseline: the same files through \`carrierhub ingest\`, one after another, into PostgreSQL:"
    echo "$records records in ${base_s}s ($(rate "$records" "$base_s") records/s)."
    echo
    echo "| mode | seconds | records/s | × baseline | commit→subscriber p50 ms | p99 ms | events |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows_md[@]}"
} | tee "$RESULTS"
