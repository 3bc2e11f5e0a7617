#!/usr/bin/env bash
# Reader and mapping throughput per feed format (not a test).
#
# Generates BENCH_ROWS policy records for each synthetic carrier with `carrierhub gen` (one
# carrier per format: CSV in three conventions, XLSX, NDJSON, XML, fixed-width), then times:
#   * bare reader:      `carrierhub mapping check --count-only`: the carrier's mapping's
#                       reader yields every record, nothing is mapped;
#   * reader + mapping: `carrierhub mapping check --json`: every record read, mapped and
#                       validated exactly as ingestion does (no store);
#   * baseline (CSV):   the `csv` crate alone counting ByteRecords of the same file
#                       (`count_records --baseline`), the floor of any CSV reader.
# Each run is checked: the record counts must equal the generator's ground truth.
# Prints a markdown table and writes it to bench/out/readers-results.md.
#
# Usage: bash bench/readers.sh
#   BENCH_ROWS=1000000   records per carrier
#   BENCH_OUT=bench/out  working directory (gitignored)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROWS="${BENCH_ROWS:-1000000}"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
FEEDS="$OUT/readers-feeds"
BIN="$ROOT/target/release/carrierhub"
COUNT="$ROOT/target/release/examples/count_records"
TIME=/usr/bin/time
RESULTS="$OUT/readers-results.md"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

if [[ ! -x "$TIME" ]]; then
    log "$TIME missing; installing the 'time' package"
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y time >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y time >/dev/null; }
fi

log "building release binaries"
cargo build --release -q -p carrierhub -p carrierhub-formats --examples --bins

mkdir -p "$OUT"
if [[ ! -f "$FEEDS/truth.json" ]] || [[ "$(python3 -c "import json;print(json.load(open('$FEEDS/truth.json'))['policies'])")" != "$ROWS" ]]; then
    log "generating $ROWS policy records per carrier in $FEEDS"
    rm -rf "$FEEDS"
    "$BIN" gen --out "$FEEDS" --policies "$ROWS" --no-claims >/dev/null
fi

# run LABEL CMD...: runs CMD under /usr/bin/time; sets SECONDS_TAKEN, RSS_MIB; stdout to
# $OUT/LABEL.out. The exit status is not checked (a dry run exits 1 when it rejects records);
# the callers check the output's record counts instead.
run() {
    local label="$1"; shift
    "$TIME" -v -o "$OUT/$label.time" "$@" >"$OUT/$label.out" || true
    SECONDS_TAKEN=$(python3 - "$OUT/$label.time" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
h, mi, s = m.groups()
print((int(h) if h else 0) * 3600 + int(mi) * 60 + float(s))
PY
)
    RSS_MIB=$(awk '/Maximum resident set size/ {printf "%.1f", $6/1024}' "$OUT/$label.time")
}

rate() { python3 -c "print(f'{$1/$2:,.0f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

{
    echo "| carrier | format | file MiB | records | bare reader rec/s (RSS) | reader + mapping rec/s (RSS) | mapping / bare | csv crate rec/s | bare / csv crate |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$RESULTS"

python3 - "$FEEDS/truth.json" <<'PY' >"$OUT/readers-carriers.tsv"
import json, sys
t = json.load(open(sys.argv[1]))
for c in t["carriers"]:
    p = c["policies"]
    print("\t".join([c["id"], c["policy_format"], c["policy_file"], c["policy_mapping"],
                     str(p["rows"] + p.get("skipped", 0))]))
PY

while IFS=$'\t' read -r id format file mapping expected; do
    data="$FEEDS/$file"
    map="$FEEDS/$mapping"
    mib=$(python3 -c "import os;print(f'{os.path.getsize(\"$data\")/2**20:.0f}')")
    log "$id ($format): bare reader"
    run "readers-$id-bare" "$BIN" mapping check --count-only --mapping "$map" "$data"
    read -r n_bare < <(python3 -c "import json;d=json.load(open('$OUT/readers-$id-bare.out'));print(d['records']+d['unreadable'])")
    [[ "$n_bare" == "$expected" ]] || die "$id: the bare reader yielded $n_bare records, the truth says $expected"
    t_bare=$SECONDS_TAKEN; rss_bare=$RSS_MIB
    log "$id ($format): reader + mapping"
    run "readers-$id-map" "$BIN" mapping check --json --sample 0 --mapping "$map" "$data"
    read -r n_map < <(python3 -c "import json;print(json.load(open('$OUT/readers-$id-map.out'))['records'])")
    [[ "$n_map" == "$expected" ]] || die "$id: the dry run read $n_map records, the truth says $expected"
    t_map=$SECONDS_TAKEN; rss_map=$RSS_MIB
    baseline="–"; vs="–"
    if [[ "$format" == "csv" ]]; then
        delim=$(python3 -c "import tomllib;print(tomllib.load(open('$map','rb')).get('source',{}).get('delimiter',','))")
        [[ "$delim" == "tab" ]] && delim=tab
        log "$id ($format): csv crate baseline"
        run "readers-$id-csv" "$COUNT" --format csv --baseline --delimiter "$delim" "$data"
        t_csv=$SECONDS_TAKEN
        baseline=$(rate "$expected" "$t_csv")
        vs=$(ratio "$t_csv" "$t_bare")
    fi
    echo "| $id | $format | $mib | $expected | $(rate "$expected" "$t_bare") ($rss_bare MiB) | $(rate "$expected" "$t_map") ($rss_map MiB) | $(ratio "$t_bare" "$t_map") | $baseline | $vs |" >>"$RESULTS"
done <"$OUT/readers-carriers.tsv"

cat "$RESULTS"
