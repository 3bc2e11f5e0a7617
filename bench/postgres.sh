#!/usr/bin/env bash
# PostgreSQL ingestion benchmark (not a test).
#
# For each size N in $BENCH_SIZES (default "1000000"):
#   * generates N northwind policy rows with `carrierhub gen`,
#   * creates a fresh database and times `carrierhub --database-url … ingest` of the feed
#     into it (wall time, peak RSS); checks counts.inserted == N,
#   * times a re-send of the identical file into the same database; checks
#     counts.unchanged == N,
#   * baseline: exports CarrierHub's own `policies` rows (the normalised values it stored:
#     canonical codes, ISO dates, plain decimals, ids, hashes, timestamps, and the canonical
#     record with its coverages, insured and extras, and its lineage) to CSV, and times
#     `psql \copy … FROM … WITH (FORMAT csv)` of that CSV, in one transaction, into a table
#     created `(LIKE policies INCLUDING ALL)` in a fresh database migrated by
#     `carrierhub migrate` (same column types, constraints and indexes, so index maintenance
#     is paid as CarrierHub pays it). Checks that the copy holds exactly CarrierHub's rows,
#   * times the SQLite ingest of the same file into a fresh data directory (as
#     bench/ingest.sh does); checks counts.inserted == N.
# Prints a markdown table and writes it to bench/out/postgres-results.md. Every temporary
# database is dropped at the end, also when the run fails.
#
# Usage: bash bench/postgres.sh
#   BENCH_SIZES="1000000"                          row counts to benchmark
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432  the server (no database name)
#   BENCH_OUT=bench/out                            working directory (gitignored)
#   BENCH_KEEP=1                                   keep feeds, data dirs, CSV and databases
#   BENCH_RUNS=3                                   timed runs of each side (the median is reported)
#   BENCH_NO_BUILD=1                               use target/release/carrierhub as it is
#   BENCH_BIN=path/to/carrierhub                   another binary (no build)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SIZES="${BENCH_SIZES:-1000000}"
PG_SERVER="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_SERVER="${PG_SERVER%/}"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
KEEP="${BENCH_KEEP:-0}"
RUNS="${BENCH_RUNS:-3}"
CARRIER=northwind
BIN="${BENCH_BIN:-$ROOT/target/release/carrierhub}"
PSQL=psql
TIME=/usr/bin/time
RESULTS="$OUT/postgres-results.md"
# Database names: unique per run, so that two runs (or a leftover) never collide.
DB_PREFIX="chbench_$$"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"

# The store's URL must not leak into the SQLite run, nor a log filter into the timings.
unset CARRIERHUB_DATABASE_URL CARRIERHUB_DATA_DIR CARRIERHUB_NO_MIGRATE CARRIERHUB_LOG RUST_LOG

# --- prerequisites -----------------------------------------------------------
require_time
command -v "$PSQL" >/dev/null 2>&1 || die "psql not available (needed for the baseline)"

db_url() { printf '%s/%s' "$PG_SERVER" "$1"; }
# Before each timed step: the files just written (a feed, an exported CSV) are flushed to disk
# and the server checkpointed, so that no step pays for the previous one's writeback.
quiesce() {
    sync
    sql postgres 'CHECKPOINT' >/dev/null
}
# sql DB STATEMENT...: runs statements in DB, unaligned, tuples only; fails on error.
sql() {
    local db=$1; shift
    local args=()
    for s in "$@"; do args+=(-c "$s"); done
    PGOPTIONS='-c client_min_messages=warning' \
        "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$(db_url "$db")" "${args[@]}"
}
sql postgres 'SELECT 1' >/dev/null ||
    die "no PostgreSQL server answers at $PG_SERVER (set BENCH_PG_URL)"
PG_VERSION=$(sql postgres 'SHOW server_version')

# --- temporary databases: created here, dropped on exit ------------------------
CREATED_DBS=()
create_db() {
    sql postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" "CREATE DATABASE $1" >/dev/null
    CREATED_DBS+=("$1")
}
drop_dbs() {
    local rc=$?
    if [[ "$KEEP" == 1 ]]; then
        [[ ${#CREATED_DBS[@]} -gt 0 ]] && log "kept databases: ${CREATED_DBS[*]}"
    else
        for db in "${CREATED_DBS[@]}"; do
            sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null ||
                log "could not drop database $db"
        done
    fi
    exit "$rc"
}
trap drop_dbs EXIT

# --- build -------------------------------------------------------------------
if [[ "${BENCH_NO_BUILD:-0}" != 1 && -z "${BENCH_BIN:-}" ]]; then
    log "building release binary"
    cargo build --release -p carrierhub
fi
[[ -x "$BIN" ]] || die "$BIN not found after build"

mkdir -p "$OUT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

rows_md=()
cpu_md=()
sizes_md=()
runs_md=()
ALL_TABLES="carriers mappings documents submissions policies policy_history premium_transactions outbox"
for N in $SIZES; do
    [[ "$N" =~ ^[0-9]+$ ]] || die "bad size '$N' in BENCH_SIZES"
    W="$OUT/postgres-$N"
    rm -rf "$W"
    mkdir -p "$W"
    GEN="$W/gen"
    CSV="$GEN/$CARRIER-policies.csv"
    MAP="$GEN/$CARRIER-policies.toml"
    NORM="$W/policies-normalised.csv"
    CH_DB="${DB_PREFIX}_${N}_carrierhub"
    COPY_DB="${DB_PREFIX}_${N}_copy"
    ALL_DB="${DB_PREFIX}_${N}_all"

    # --- generate --------------------------------------------------------------
    log "N=$N: generating feed"
    "$BIN" --log-format json gen --out "$GEN" --policies "$N" --carrier "$CARRIER" --no-claims \
        >"$W/gen.out" 2>"$W/gen.log" || die "gen failed (see $W/gen.log)"
    [[ -f "$CSV" && -f "$MAP" ]] || die "gen did not write $CSV and $MAP"
    lines=$(wc -l <"$CSV")
    [[ "$lines" -eq $((N + 1)) ]] || die "$CSV has $lines lines, expected $((N + 1))"
    csv_mib=$(awk -v b="$(stat -c %s "$CSV")" 'BEGIN { printf "%.1f", b / 1048576 }')

    # --- the timed runs: CarrierHub, then each baseline, $RUNS times over -------------
    # Interleaved, so that every side meets the same state of the machine (the server's
    # checkpoints and the page cache vary from one minute to the next); each side is reported
    # by its median run. The first run's database is kept for the re-send and the exports.
    ch_walls=(); ch_cpus=(); ch_srvs=(); ch_rsss=()
    cp_walls=(); cp_srvs=()
    all_walls=(); all_srvs=()
    for ((r = 1; r <= RUNS; r++)); do
        # --- CarrierHub → PostgreSQL: first ingest into a fresh database --------------
        db="$CH_DB"; [[ $r -gt 1 ]] && db="${CH_DB}_r$r"
        log "N=$N: run $r/$RUNS: carrierhub ingest into PostgreSQL (fresh database $db)"
        create_db "$db"
        rm -rf "$W/pg-data-$r"
        quiesce
        srv0=$(pg_server_cpu)
        timed "$W/pg-ingest-$r.time" \
            "$BIN" --log-format json --database-url "$(db_url "$db")" --data-dir "$W/pg-data-$r" \
            ingest --carrier "$CARRIER" --mapping "$MAP" --json "$CSV" \
            >"$W/pg-ingest-$r.json" 2>"$W/pg-ingest-$r.log"
        ch_srvs+=("$(diff_secs "$srv0" "$(pg_server_cpu)")")
        check_exit "$W/pg-ingest-$r.time" "carrierhub ingest (PostgreSQL)"
        status=$(json_get "$W/pg-ingest-$r.json" .status)
        inserted=$(json_get "$W/pg-ingest-$r.json" .counts.inserted)
        [[ "$status" == completed ]] || die "ingest status '$status', expected 'completed'"
        [[ "$inserted" -eq "$N" ]] || die "PostgreSQL ingest inserted $inserted rows, expected $N"
        stored=$(sql "$db" 'SELECT count(*) FROM policies')
        [[ "$stored" -eq "$N" ]] || die "policies holds $stored rows after the ingest, expected $N"
        ch_walls+=("$(wall_secs "$W/pg-ingest-$r.time")")
        ch_cpus+=("$(cpu_secs "$W/pg-ingest-$r.time")")
        ch_rsss+=("$(rss_mib "$W/pg-ingest-$r.time")")
        if [[ $r -gt 1 && "$KEEP" != 1 ]]; then
            sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
            rm -rf "$W/pg-data-$r"
        fi

        if [[ $r -eq 1 ]]; then
            # What the ingest wrote, per table (for the notes under the table).
            sql "$CH_DB" "SELECT string_agg(format('%s %s MiB', relname,
                              round(pg_total_relation_size(relid) / 1048576.0)), ', ' ORDER BY relname)
                          FROM pg_stat_user_tables
                          WHERE relname IN ('policies', 'policy_history', 'premium_transactions', 'outbox')" \
                >"$W/pg-sizes.txt"

            # --- CarrierHub → PostgreSQL: re-send of the identical file ---------------
            log "N=$N: carrierhub ingest into PostgreSQL (re-send, same database)"
            quiesce
            timed "$W/pg-resend.time" \
                "$BIN" --log-format json --database-url "$(db_url "$CH_DB")" --data-dir "$W/pg-data-1" \
                ingest --carrier "$CARRIER" --mapping "$MAP" --json "$CSV" \
                >"$W/pg-resend.json" 2>"$W/pg-resend.log"
            check_exit "$W/pg-resend.time" "carrierhub ingest (PostgreSQL re-send)"
            unchanged=$(json_get "$W/pg-resend.json" .counts.unchanged)
            r_inserted=$(json_get "$W/pg-resend.json" .counts.inserted)
            r_updated=$(json_get "$W/pg-resend.json" .counts.updated)
            [[ "$unchanged" -eq "$N" && "$r_inserted" -eq 0 && "$r_updated" -eq 0 ]] ||
                die "re-send: unchanged=$unchanged inserted=$r_inserted updated=$r_updated, expected unchanged=$N"
            rs_s=$(wall_secs "$W/pg-resend.time")
            rs_rss=$(rss_mib "$W/pg-resend.time")

            # --- the baselines' input: CarrierHub's own normalised rows ----------------
            # Every column of `policies`, in table order, exactly as CarrierHub stored them;
            # the copy therefore gets the same values (ids and timestamps included), and
            # nothing is parsed, mapped or validated.
            log "N=$N: exporting CarrierHub's normalised policies rows to CSV"
            sql "$CH_DB" "\\copy (SELECT * FROM policies ORDER BY id) TO '$NORM' WITH (FORMAT csv)"
            norm_lines=$(wc -l <"$NORM")
            [[ "$norm_lines" -eq "$N" ]] || die "$NORM has $norm_lines lines, expected $N"
            norm_mib=$(awk -v b="$(stat -c %s "$NORM")" 'BEGIN { printf "%.1f", b / 1048576 }')
            # CarrierHub keeps more than the policies: the superseded versions (none on a
            # first load), the premium transactions and the change events. COPYing all of
            # those rows, as stored, into the same migrated schema (constraints and indexes
            # included) shows what the write path costs against a bulk load of the same data.
            copy_args=(-c 'BEGIN')
            for t in $ALL_TABLES; do
                sql "$CH_DB" "\\copy (SELECT * FROM $t) TO '$W/all-$t.csv' WITH (FORMAT csv)"
                copy_args+=(-c "\\copy $t FROM '$W/all-$t.csv' WITH (FORMAT csv)")
            done
            copy_args+=(-c 'COMMIT')
        fi

        # --- baseline: COPY of CarrierHub's normalised policies rows --------------------
        log "N=$N: run $r/$RUNS: COPY baseline into (LIKE policies INCLUDING ALL) in fresh database $COPY_DB"
        create_db "$COPY_DB"
        "$BIN" --log-format json --database-url "$(db_url "$COPY_DB")" --data-dir "$W/copy-data" \
            migrate >"$W/copy-migrate.out" 2>"$W/copy-migrate.log" ||
            die "carrierhub migrate failed (see $W/copy-migrate.log)"
        # Created before the timed transaction (as CarrierHub's table is), so COPY cannot
        # take the WAL-skipping path of a table created in its own transaction.
        sql "$COPY_DB" 'CREATE TABLE policies_copy (LIKE policies INCLUDING ALL)' >/dev/null
        quiesce
        srv0=$(pg_server_cpu)
        timed "$W/copy-$r.time" \
            "$PSQL" -X -q -v ON_ERROR_STOP=1 "$(db_url "$COPY_DB")" \
            -c 'BEGIN' \
            -c "\\copy policies_copy FROM '$NORM' WITH (FORMAT csv)" \
            -c 'COMMIT' \
            >"$W/copy-$r.out" 2>&1
        cp_srvs+=("$(diff_secs "$srv0" "$(pg_server_cpu)")")
        check_exit "$W/copy-$r.time" "psql \\copy"
        copied=$(sql "$COPY_DB" 'SELECT count(*) FROM policies_copy')
        [[ "$copied" -eq "$N" ]] || die "COPY loaded $copied rows, expected $N"
        if [[ $r -eq 1 ]]; then
            # Same rows, value for value, as CarrierHub's table.
            digest='SELECT md5(string_agg(md5(t::text), $$$$ ORDER BY id))'
            ch_digest=$(sql "$CH_DB" "$digest FROM policies t")
            copy_digest=$(sql "$COPY_DB" "$digest FROM policies_copy t")
            [[ "$ch_digest" == "$copy_digest" ]] ||
                die "policies_copy differs from CarrierHub's policies ($copy_digest vs $ch_digest)"
        fi
        cp_walls+=("$(wall_secs "$W/copy-$r.time")")

        # --- second baseline: COPY of every row CarrierHub wrote ------------------------
        log "N=$N: run $r/$RUNS: COPY of every table CarrierHub wrote into fresh database $ALL_DB"
        create_db "$ALL_DB"
        "$BIN" --log-format json --database-url "$(db_url "$ALL_DB")" --data-dir "$W/all-data" \
            migrate >"$W/all-migrate.out" 2>"$W/all-migrate.log" ||
            die "carrierhub migrate failed (see $W/all-migrate.log)"
        quiesce
        srv0=$(pg_server_cpu)
        timed "$W/copy-all-$r.time" \
            "$PSQL" -X -q -v ON_ERROR_STOP=1 "$(db_url "$ALL_DB")" "${copy_args[@]}" \
            >"$W/copy-all-$r.out" 2>&1
        all_srvs+=("$(diff_secs "$srv0" "$(pg_server_cpu)")")
        check_exit "$W/copy-all-$r.time" "psql \\copy of every table"
        for t in $ALL_TABLES; do
            [[ "$(sql "$CH_DB" "SELECT count(*) FROM $t")" -eq "$(sql "$ALL_DB" "SELECT count(*) FROM $t")" ]] ||
                die "the COPY of $t does not hold CarrierHub's rows"
        done
        all_walls+=("$(wall_secs "$W/copy-all-$r.time")")
    done
    # Each side's median run (its CPU figures are that run's).
    m=$(median_index "${ch_walls[@]}")
    pg_s=${ch_walls[$m]}; pg_cpu=${ch_cpus[$m]}; pg_srv=${ch_srvs[$m]}; pg_rss=${ch_rsss[$m]}
    m=$(median_index "${cp_walls[@]}")
    cp_s=${cp_walls[$m]}; cp_srv=${cp_srvs[$m]}
    m=$(median_index "${all_walls[@]}")
    all_s=${all_walls[$m]}; all_srv=${all_srvs[$m]}
    runs_md+=("- N=$N, every run in order (s): CarrierHub→PG ${ch_walls[*]}; COPY ${cp_walls[*]}; COPY all tables ${all_walls[*]}")

    # --- SQLite: the same file into a fresh data directory -----------------------
    log "N=$N: carrierhub ingest into SQLite (fresh data dir)"
    timed "$W/sqlite-ingest.time" \
        "$BIN" --log-format json --data-dir "$W/sqlite-data" \
        ingest --carrier "$CARRIER" --mapping "$MAP" --json "$CSV" \
        >"$W/sqlite-ingest.json" 2>"$W/sqlite-ingest.log"
    check_exit "$W/sqlite-ingest.time" "carrierhub ingest (SQLite)"
    sq_status=$(json_get "$W/sqlite-ingest.json" .status)
    sq_inserted=$(json_get "$W/sqlite-ingest.json" .counts.inserted)
    [[ "$sq_status" == completed ]] || die "SQLite ingest status '$sq_status', expected 'completed'"
    [[ "$sq_inserted" -eq "$N" ]] || die "SQLite ingest inserted $sq_inserted rows, expected $N"
    sq_s=$(wall_secs "$W/sqlite-ingest.time")
    sq_rss=$(rss_mib "$W/sqlite-ingest.time")

    pg_rate=$(rate "$N" "$pg_s")
    rs_rate=$(rate "$N" "$rs_s")
    cp_rate=$(rate "$N" "$cp_s")
    sq_rate=$(rate "$N" "$sq_s")
    all_rate=$(rate "$N" "$all_s")
    rows_md+=("| $N | $csv_mib | $pg_s | $pg_rate | $pg_rss | $rs_s | $rs_rate | $rs_rss | $norm_mib | $cp_s | $cp_rate | $(ratio "$pg_rate" "$cp_rate" 3) | $all_s | $(ratio "$pg_rate" "$all_rate" 3) | $sq_s | $sq_rate | $sq_rss |")
    cpu_md+=("| $N | $pg_cpu | $pg_srv | $cp_srv | $all_srv |")
    sizes_md+=("- N=$N: CarrierHub's tables after the ingest (with indexes): $(cat "$W/pg-sizes.txt")")
    log "N=$N: PostgreSQL ${pg_rate} rows/s (${pg_rss} MiB), re-send ${rs_rate} rows/s, COPY ${cp_rate} rows/s, SQLite ${sq_rate} rows/s"

    if [[ "$KEEP" != 1 ]]; then
        for db in "$CH_DB" "$COPY_DB" "$ALL_DB"; do
            sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
        done
        rm -rf "$GEN" "$W"/pg-data-* "$W/copy-data" "$W/all-data" "$W/sqlite-data" "$NORM" "$W"/all-*.csv
    fi
done

# --- report ------------------------------------------------------------------
{
    echo "## PostgreSQL ingestion benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')${BENCH_BIN:+, binary $BENCH_BIN}, $(nproc) cores, load average $LOAD_BEFORE at start, PostgreSQL $PG_VERSION"
    echo
    echo "| rows | CSV MiB | CarrierHub→PG s | CarrierHub→PG rows/s | peak RSS MiB | re-send s | re-send rows/s | re-send RSS MiB | normalised CSV MiB | COPY s | COPY rows/s | ratio CarrierHub/COPY | COPY all tables s | ratio CarrierHub/COPY all | SQLite s | SQLite rows/s | SQLite RSS MiB |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows_md[@]}"
    echo
    echo "CarrierHub→PG, COPY and COPY all tables: each the median of $RUNS runs (BENCH_RUNS), interleaved in that order; the re-send and SQLite run once."
    echo "CarrierHub→PG: \`carrierhub --database-url … ingest\` into a fresh database; re-send: the same file again (all rows unchanged)."
    echo "COPY: \`psql \\copy … FROM … WITH (FORMAT csv)\` in one transaction of CarrierHub's own \`policies\` rows (every column, as stored),"
    echo "into \`(LIKE policies INCLUDING ALL)\` in a fresh database migrated by \`carrierhub migrate\`; checked equal to CarrierHub's table."
    echo "COPY all tables: the same, for every row CarrierHub wrote (carriers, mappings, documents, submissions, policies, policy_history,"
    echo "premium_transactions, outbox) into a fresh migrated database, constraints and indexes included, in one transaction."
    echo "SQLite: \`carrierhub --data-dir … ingest\` of the same file into a fresh data dir. Issue target: ratio CarrierHub/COPY >= 0.5."
    echo "The issue's baseline (\"COPY the same rows, already normalised, into an identical table\") read literally is COPY (one"
    echo "table, \`policies\`); COPY all tables is the like-for-like one (every row a policy lands in). Both ratios are reported."
    echo
    echo "CPU seconds (where the time goes): the carrierhub process (user + system), and the PostgreSQL server on this machine"
    echo "(every postgres process, exited backends included) over the same interval; n/a for a remote server."
    echo
    echo "| rows | CarrierHub→PG: carrierhub CPU s | CarrierHub→PG: server CPU s | COPY: server CPU s | COPY all: server CPU s |"
    echo "|---:|---:|---:|---:|---:|"
    printf '%s\n' "${cpu_md[@]}"
    echo
    printf '%s\n' "${sizes_md[@]}"
    printf '%s\n' "${runs_md[@]}"
} | tee "$RESULTS"
log "results written to $RESULTS"
