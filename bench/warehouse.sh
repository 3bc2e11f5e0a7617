#!/usr/bin/env bash
# Loss ratio by carrier x line x month over N generated claim-transaction rows (and N/10
# premium transactions), in the warehouse's own layout: `carrierhub query` (DataFusion)
# against DuckDB on the same Parquet files, in the same run. Prints both times and the ratio.
#
#   bash bench/warehouse.sh                        # 10,000,000 claim transactions
#   BENCH_ROWS=1000000 bash bench/warehouse.sh     # smaller
#   BENCH_RUNS=5 bash bench/warehouse.sh           # best of 5 (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROWS=${BENCH_ROWS:-10000000}
RUNS=${BENCH_RUNS:-3}
OUT=${BENCH_OUT:-bench/out/warehouse-$ROWS}

log "building target/release/carrierhub"
nice -n 19 cargo build --release -p carrierhub >/dev/null 2>&1 || cargo build --release -p carrierhub
BIN=target/release/carrierhub
bash .ci/warehouse-python.sh >/dev/null
PY=.ci/venv/bin/python

if [[ ! -f "$OUT/.complete" ]]; then
    rm -rf "$OUT"
    log "generating $ROWS claim transactions into $OUT"
    "$BIN" warehouse gen-bench --out "$OUT" --claim-transactions "$ROWS"
    touch "$OUT/.complete"
fi

SQL="WITH premium AS (
    SELECT carrier, line_of_business, month, SUM(amount) AS premium
    FROM premium_transactions GROUP BY carrier, line_of_business, month),
  losses AS (
    SELECT carrier, line_of_business, month, SUM(amount) AS incurred, COUNT(*) AS transactions
    FROM claim_transactions GROUP BY carrier, line_of_business, month)
SELECT l.carrier, l.line_of_business, l.month, l.transactions,
       CAST(l.incurred AS DOUBLE) / CAST(p.premium AS DOUBLE) AS loss_ratio
FROM losses l JOIN premium p
  ON p.carrier = l.carrier AND p.line_of_business = l.line_of_business AND p.month = l.month
ORDER BY l.carrier, l.line_of_business, l.month"

best() { sort -n | head -1; }

log "carrierhub query (DataFusion), best of $RUNS"
ours=$(for _ in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    "$BIN" --warehouse "$OUT" query --format csv --query-timeout-secs 600 --query-memory-mib 4096 "$SQL" > "$OUT.ours.csv"
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
done | best)

log "DuckDB, best of $RUNS"
theirs=$("$PY" - "$OUT" "$RUNS" "$SQL" <<'PY'
import duckdb, sys, time, csv
out, runs, sql = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
for t in ["premium_transactions", "claim_transactions"]:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{out}/{t}/*/*/*.parquet', hive_partitioning = true)")
best = None
for _ in range(runs):
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
with open(out + ".duckdb.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    for r in rows:
        w.writerow(r)
print(f"{best:.3f}")
PY
)

# Both answered the same groups with the same transaction counts.
ours_groups=$(tail -n +2 "$OUT.ours.csv" | cut -d, -f1-4 | sort | md5sum)
their_groups=$(cut -d, -f1-4 "$OUT.duckdb.csv" | sort | md5sum)
[[ "$ours_groups" == "$their_groups" ]] || die "the two answers differ ($OUT.ours.csv, $OUT.duckdb.csv)"

groups=$(tail -n +2 "$OUT.ours.csv" | wc -l)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
printf 'rows %s  groups %s  carrierhub %ss (whole process)  duckdb %ss (query only)  ratio %sx\n' \
    "$ROWS" "$groups" "$ours" "$theirs" "$ratio"
