#!/usr/bin/env bash
# Loss ratio by carrier x line x month over N generated claim-transaction rows (and N/10
# premium transactions), in the warehouse's own layout: `carrierhub query` (DataFusion)
# against DuckDB on the same Parquet files, in the same run. Prints the median times, peak
# memory and the ratios, and writes them to bench/out/warehouse-results.md.
#
#   bash bench/warehouse.sh                        # 10,000,000 claim transactions
#   BENCH_ROWS=1000000 bash bench/warehouse.sh     # smaller
#   BENCH_RUNS=7 bash bench/warehouse.sh           # warm runs per side (default 5)
#   BENCH_COLD_RUNS=0 bash bench/warehouse.sh      # no cold runs (default 3)
#   BENCH_NO_BUILD=1 bash bench/warehouse.sh       # use target/release/carrierhub as it is
#   BENCH_BIN=path/to/carrierhub bash bench/warehouse.sh   # another binary (no build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TIME=/usr/bin/time
# shellcheck source=bench/lib.sh
source bench/lib.sh

ROWS=${BENCH_ROWS:-10000000}
RUNS=${BENCH_RUNS:-5}
COLD_RUNS=${BENCH_COLD_RUNS:-3}
W=${BENCH_OUT:-$ROOT/bench/out}/warehouse-$ROWS
DATA=$W/data
RESULTS=$ROOT/bench/out/warehouse-results.md
DUCKDB_CLI_VERSION=1.5.6
BIN=${BENCH_BIN:-$ROOT/target/release/carrierhub}
[[ "$ROWS" =~ ^[0-9]+$ && "$RUNS" =~ ^[1-9][0-9]*$ && "$COLD_RUNS" =~ ^[0-9]+$ ]] \
    || die "BENCH_ROWS, BENCH_RUNS and BENCH_COLD_RUNS must be numbers (BENCH_RUNS at least 1)"

require_time
if [[ "${BENCH_NO_BUILD:-0}" != 1 && -z "${BENCH_BIN:-}" ]]; then
    log "building target/release/carrierhub"
    nice -n 19 cargo build --release -p carrierhub
fi
[[ -x "$BIN" ]] || die "$BIN not found"
# DuckDB's command-line shell, from PyPI into .ci/venv (which .ci/warehouse-python.sh makes).
bash .ci/warehouse-python.sh >/dev/null
PY=$ROOT/.ci/venv/bin/python
if ! "$PY" -c 'import duckdb_cli' 2>/dev/null; then
    log "installing duckdb-cli $DUCKDB_CLI_VERSION into .ci/venv"
    "$PY" -m pip install --quiet --disable-pip-version-check "duckdb-cli==$DUCKDB_CLI_VERSION"
fi
# The shell itself, not the Python wrapper that starts it.
DUCKDB=$("$PY" -c 'import duckdb_cli, os; print(os.path.join(os.path.dirname(duckdb_cli.__file__), "duckdb"))')
[[ -x "$DUCKDB" ]] || die "$DUCKDB not found"
duckdb_version=$("$DUCKDB" -version | cut -d' ' -f1)
CHECK=$ROOT/bench/warehouse_check.py

mkdir -p "$W"
if [[ ! -f "$DATA/.complete" ]]; then
    rm -rf "$DATA"
    log "generating $ROWS claim transactions into $DATA"
    timed "$W/gen.time" "$BIN" warehouse gen-bench --out "$DATA" --claim-transactions "$ROWS"
    check_exit "$W/gen.time" "carrierhub warehouse gen-bench"
    log "generated in $(wall_secs "$W/gen.time") s, peak RSS $(rss_mib "$W/gen.time") MiB"
    touch "$DATA/.complete"
fi
files=$(find "$DATA" -name '*.parquet' | wc -l)
size_mib=$(du -sm "$DATA" | cut -f1)

# Two aggregates joined on the three keys. The sums are exact decimals (the two answers must
# agree to the cent), the ratio a double.
SQL=$W/loss_ratio.sql
cat >"$SQL" <<'SQL'
WITH premium AS (
    SELECT carrier, line_of_business, month, SUM(amount) AS premium
    FROM premium_transactions GROUP BY carrier, line_of_business, month),
  losses AS (
    SELECT carrier, line_of_business, month, SUM(amount) AS incurred, COUNT(*) AS transactions
    FROM claim_transactions GROUP BY carrier, line_of_business, month)
SELECT l.carrier, l.line_of_business, l.month, l.transactions, l.incurred, p.premium,
       CAST(l.incurred AS DOUBLE) / CAST(p.premium AS DOUBLE) AS loss_ratio
FROM losses l JOIN premium p
  ON p.carrier = l.carrier AND p.line_of_business = l.line_of_business AND p.month = l.month
ORDER BY l.carrier, l.line_of_business, l.month
SQL
# DuckDB reads the same files through two views; the partition values are strings, as the
# warehouse declares them (no guessing of types from the directory names).
VIEWS=$W/duckdb-views.sql
: >"$VIEWS"
for t in premium_transactions claim_transactions; do
    echo "CREATE VIEW $t AS SELECT * FROM read_parquet('$DATA/$t/*/*/*.parquet'," \
        "hive_partitioning = true, hive_types = {'carrier': VARCHAR, 'month': VARCHAR});" >>"$VIEWS"
done
{ cat "$VIEWS" "$SQL"; echo ";"; } >"$W/duckdb-query.sql"
# One shell that runs the query RUNS + 1 times with `.timer on` (the first run is dropped).
{
    cat "$VIEWS"
    echo ".timer on"
    for _ in $(seq $((RUNS + 1))); do cat "$SQL"; echo ";"; done
} >"$W/duckdb-inprocess.sql"

# CPU seconds (user + system) of a run under `time -v`: on a loaded machine this moves far less
# than the wall time.
cpu_secs() {
    awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $NF } END { printf "%.2f", s }' "$1"
}
# One run of each side, each a whole process under `time -v`. Appends "wall rss query cpu" to
# $W/<side>-<kind>.runs (query: the time inside the process, without start and exit).
ours() { # ours KIND
    local tf=$W/ours-$1.time
    timed "$tf" "$BIN" --warehouse "$DATA" query --format csv --out "$W/ours.csv" --timing \
        --query-timeout-secs 600 --query-memory-mib 4096 "$(cat "$SQL")" 2>"$W/ours.err"
    check_exit "$tf" "carrierhub query (see $W/ours.err)"
    local q
    q=$(awk '/ rows in / { print $(NF-1) }' "$W/ours.err")
    echo "$(wall_secs "$tf") $(rss_mib "$tf") $q $(cpu_secs "$tf")" >>"$W/ours-$1.runs"
}
theirs() { # theirs KIND
    local tf=$W/duckdb-$1.time
    timed "$tf" "$DUCKDB" -no-init -bail -csv -f "$W/duckdb-query.sql" >"$W/duckdb.csv"
    check_exit "$tf" "duckdb"
    echo "$(wall_secs "$tf") $(rss_mib "$tf") - $(cpu_secs "$tf")" >>"$W/duckdb-$1.runs"
}
evict() { python3 "$CHECK" evict "$DATA"; }
# median FILE COLUMN
median() {
    awk -v c="$2" '{ print $c }' "$1" | sort -n \
        | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
maxcol() { awk -v c="$2" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$1"; }
spread() { # spread FILE COLUMN: min–max
    awk -v c="$2" 'NR == 1 { lo = hi = $c } $c < lo { lo = $c } $c > hi { hi = $c } END { printf "%s–%s", lo, hi }' "$1"
}

rm -f "$W"/*.runs
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Warm: the files are in the page cache (one unmeasured run of each side first). The two sides
# alternate, so that a change of load on the machine falls on both.
log "warm-up"
ours warmup
theirs warmup
log "warm: $RUNS runs of each side, alternating"
for _ in $(seq "$RUNS"); do
    ours warm
    theirs warm
done
groups=$(python3 "$CHECK" compare "$W/ours.csv" "$W/duckdb.csv") \
    || die "the two answers differ ($W/ours.csv, $W/duckdb.csv)"

# DuckDB's query alone, in one process that keeps its connection (and its caches) between runs.
log "DuckDB in one process: $RUNS runs after a warm-up"
"$DUCKDB" -no-init -bail -csv -f "$W/duckdb-inprocess.sql" >"$W/duckdb-inprocess.out" \
    || die "duckdb failed (see $W/duckdb-inprocess.out)"
awk '/^Run Time/ { n++; if (n > 1) print 0, 0, $5 }' "$W/duckdb-inprocess.out" >"$W/duckdb-inprocess.runs"
[[ $(wc -l <"$W/duckdb-inprocess.runs") -eq "$RUNS" ]] || die "no timings in $W/duckdb-inprocess.out"

# Cold: before each run the files are dropped from the page cache.
if ((COLD_RUNS > 0)); then
    log "cold: $COLD_RUNS runs of each side, page cache dropped before each"
    for _ in $(seq "$COLD_RUNS"); do
        evict
        ours cold
        evict
        theirs cold
    done
    python3 "$CHECK" compare "$W/ours.csv" "$W/duckdb.csv" >/dev/null \
        || die "the two cold answers differ ($W/ours.csv, $W/duckdb.csv)"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

row() { # row LABEL OURS_FILE OURS_COL THEIRS_FILE THEIRS_COL
    local a b
    a=$(median "$2" "$3")
    b=$(median "$4" "$5")
    printf '| %s | %s (%s) | %s (%s) | %s |\n' "$1" "$a" "$(spread "$2" "$3")" "$b" \
        "$(spread "$4" "$5")" "$(ratio "$a" "$b")"
}
{
    echo "Loss ratio by carrier × line × month: $ROWS claim transactions, $((ROWS / 10)) premium"
    echo "transactions, $files Parquet files ($size_mib MiB), $groups groups; both answers equal to"
    echo "the cent. $(nproc) cores, load average ${load_before// /, } before, ${load_after// /, } after;"
    echo "DuckDB $duckdb_version. Median seconds of the runs (min–max), wall time unless the row says"
    echo "CPU seconds (user + system, all threads); ratio = CarrierHub / DuckDB."
    echo
    echo "| runs | CarrierHub | DuckDB | ratio |"
    echo "| --- | --- | --- | --- |"
    row "warm, whole process × $RUNS" "$W/ours-warm.runs" 1 "$W/duckdb-warm.runs" 1
    row "warm, whole process, CPU seconds × $RUNS" "$W/ours-warm.runs" 4 "$W/duckdb-warm.runs" 4
    row "warm, query inside the process × $RUNS" "$W/ours-warm.runs" 3 "$W/duckdb-inprocess.runs" 3
    if ((COLD_RUNS > 0)); then
        row "cold, whole process × $COLD_RUNS" "$W/ours-cold.runs" 1 "$W/duckdb-cold.runs" 1
        row "cold, whole process, CPU seconds × $COLD_RUNS" "$W/ours-cold.runs" 4 "$W/duckdb-cold.runs" 4
    fi
    echo
    printf 'Peak RSS (MiB), warm: CarrierHub %s, DuckDB %s' \
        "$(maxcol "$W/ours-warm.runs" 2)" "$(maxcol "$W/duckdb-warm.runs" 2)"
    if ((COLD_RUNS > 0)); then
        printf '; cold: CarrierHub %s, DuckDB %s' \
            "$(maxcol "$W/ours-cold.runs" 2)" "$(maxcol "$W/duckdb-cold.runs" 2)"
    fi
    echo "."
    echo
    echo "Whole process: start, planning (listing the files, reading their footers), the query, and"
    echo "writing the answer as CSV (CarrierHub: \`carrierhub query --format csv\`; DuckDB: its shell,"
    echo "\`duckdb -csv -f\`, creating the two views first). Query inside the process: CarrierHub's"
    echo "\`--timing\` (a new session: listing, planning, the query and encoding), DuckDB's \`.timer on\`"
    echo "in one shell that ran the query once before (the views are planned, caches warm)."
} | tee "$RESULTS"
