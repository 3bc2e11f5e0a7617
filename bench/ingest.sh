#!/usr/bin/env bash
# Embedded-mode ingestion benchmark (not a test).
#
# For each size N in $BENCH_SIZES (default "100000 1000000"):
#   * generates N northwind policy rows with `carrierhub gen`,
#   * times `carrierhub ingest` into a fresh data directory (wall time, peak RSS)
#     and checks that counts.inserted == N,
#   * times a second ingest of the identical file into the same data directory
#     (the re-send path: every row unchanged) and checks counts.unchanged == N,
#   * times the sqlite3 CLI bulk-loading the same CSV into a fresh database
#     (`.import` in one transaction, WAL, synchronous=NORMAL): the ceiling for
#     "raw bulk load, no parsing / validation / versioning".
# Prints a markdown table and writes it to bench/out/ingest-results.md.
#
# Usage: bash bench/ingest.sh
#   BENCH_SIZES="100000 1000000"   row counts to benchmark
#   BENCH_OUT=bench/out            working directory (gitignored)
#   BENCH_KEEP=1                   keep generated files and data dirs afterwards
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SIZES="${BENCH_SIZES:-100000 1000000}"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
KEEP="${BENCH_KEEP:-0}"
CARRIER=northwind
BIN="$ROOT/target/release/carrierhub"
SQLITE=/usr/bin/sqlite3
TIME=/usr/bin/time
RESULTS="$OUT/ingest-results.md"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# --- prerequisites -----------------------------------------------------------
require_time
[[ -x "$SQLITE" ]] || die "$SQLITE not available (needed for the baseline)"

# --- build -------------------------------------------------------------------
log "building release binary"
cargo build --release -p carrierhub
[[ -x "$BIN" ]] || die "$BIN not found after build"

mkdir -p "$OUT"

rows_md=()
for N in $SIZES; do
    [[ "$N" =~ ^[0-9]+$ ]] || die "bad size '$N' in BENCH_SIZES"
    W="$OUT/ingest-$N"
    rm -rf "$W"
    mkdir -p "$W"
    GEN="$W/gen"
    DATA="$W/data"
    DB="$W/sqlite-baseline.db"
    CSV="$GEN/$CARRIER-policies.csv"
    MAP="$GEN/$CARRIER-policies.toml"

    # --- generate --------------------------------------------------------------
    log "N=$N: generating feed"
    "$BIN" --log-format json gen --out "$GEN" --policies "$N" --carrier "$CARRIER" \
        >"$W/gen.out" 2>"$W/gen.log" || die "gen failed (see $W/gen.log)"
    [[ -f "$CSV" && -f "$MAP" ]] || die "gen did not write $CSV and $MAP"
    lines=$(wc -l <"$CSV")
    [[ "$lines" -eq $((N + 1)) ]] || die "$CSV has $lines lines, expected $((N + 1))"
    csv_mib=$(awk -v b="$(stat -c %s "$CSV")" 'BEGIN { printf "%.1f", b / 1048576 }')

    # --- CarrierHub: first ingest into a fresh data directory ------------------
    log "N=$N: carrierhub ingest (fresh data dir)"
    timed "$W/ingest.time" \
        "$BIN" --log-format json --data-dir "$DATA" ingest --carrier "$CARRIER" \
        --mapping "$MAP" --json "$CSV" >"$W/ingest.json" 2>"$W/ingest.log"
    check_exit "$W/ingest.time" "carrierhub ingest"
    status=$(json_get "$W/ingest.json" .status)
    inserted=$(json_get "$W/ingest.json" .counts.inserted)
    [[ "$status" == completed ]] || die "ingest status '$status', expected 'completed'"
    [[ "$inserted" -eq "$N" ]] || die "ingest inserted $inserted rows, expected $N"
    ch_s=$(wall_secs "$W/ingest.time")
    ch_rss=$(rss_mib "$W/ingest.time")

    # --- CarrierHub: re-send of the identical file -----------------------------
    log "N=$N: carrierhub ingest (re-send, same data dir)"
    timed "$W/resend.time" \
        "$BIN" --log-format json --data-dir "$DATA" ingest --carrier "$CARRIER" \
        --mapping "$MAP" --json "$CSV" >"$W/resend.json" 2>"$W/resend.log"
    check_exit "$W/resend.time" "carrierhub ingest (re-send)"
    unchanged=$(json_get "$W/resend.json" .counts.unchanged)
    r_inserted=$(json_get "$W/resend.json" .counts.inserted)
    [[ "$unchanged" -eq "$N" && "$r_inserted" -eq 0 ]] ||
        die "re-send: unchanged=$unchanged inserted=$r_inserted, expected unchanged=$N inserted=0"
    rs_s=$(wall_secs "$W/resend.time")
    rs_rss=$(rss_mib "$W/resend.time")
    data_mib=$(du -sm "$DATA" | cut -f1)

    # --- baseline: sqlite3 .import into a fresh database -----------------------
    log "N=$N: sqlite3 .import baseline"
    rm -f "$DB" "$DB-wal" "$DB-shm"
    cat >"$W/import.sql" <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
BEGIN;
.mode csv
.import '$CSV' policies_raw
COMMIT;
SQL
    timed "$W/sqlite.time" \
        "$SQLITE" -bail "$DB" <"$W/import.sql" >"$W/sqlite.out" 2>&1
    check_exit "$W/sqlite.time" "sqlite3 .import"
    sq_rows=$("$SQLITE" "$DB" 'SELECT count(*) FROM policies_raw;')
    [[ "$sq_rows" -eq "$N" ]] || die "sqlite3 imported $sq_rows rows, expected $N"
    sq_s=$(wall_secs "$W/sqlite.time")
    sq_rss=$(rss_mib "$W/sqlite.time")

    ch_rate=$(rate "$N" "$ch_s")
    rs_rate=$(rate "$N" "$rs_s")
    sq_rate=$(rate "$N" "$sq_s")
    rows_md+=("| $N | $csv_mib | $ch_s | $ch_rate | $ch_rss | $rs_s | $rs_rate | $rs_rss | $sq_s | $sq_rate | $sq_rss | $(ratio "$ch_rate" "$sq_rate") | $data_mib |")
    log "N=$N: carrierhub ${ch_rate} rows/s (${ch_rss} MiB), re-send ${rs_rate} rows/s, sqlite3 ${sq_rate} rows/s"

    if [[ "$KEEP" != 1 ]]; then
        rm -rf "$DATA" "$DB" "$DB-wal" "$DB-shm" "$GEN"
    fi
done

# --- report ------------------------------------------------------------------
{
    echo "## Embedded ingestion benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)'), $(nproc) cores, $("$SQLITE" --version | cut -d' ' -f1)"
    echo
    echo "| rows | CSV MiB | CarrierHub s | CarrierHub rows/s | peak RSS MiB | resend s | resend rows/s | resend RSS MiB | sqlite3 .import s | sqlite3 .import rows/s | sqlite3 RSS MiB | ratio CarrierHub/sqlite3 | data dir MiB |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows_md[@]}"
    echo
    echo "CarrierHub: \`carrierhub ingest\` into a fresh data dir; resend: same file again into the same data dir (all rows unchanged);"
    echo "sqlite3: \`.import\` of the same CSV in one transaction (WAL, synchronous=NORMAL), no parsing/validation/versioning."
    echo "Peak RSS from \`/usr/bin/time -v\`, wall time around it; data dir size measured after the re-send."
} | tee "$RESULTS"
log "results written to $RESULTS"
