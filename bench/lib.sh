# Helpers shared by the benchmark scripts: logging, timing under `time -v`, JSON fields.
# Sourced, not run. Expects TIME (the GNU time binary) to be set by the caller.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

# Installs GNU time when it is missing (the benchmarks need its peak RSS).
require_time() {
    if [[ ! -x "$TIME" ]]; then
        log "$TIME missing; installing the 'time' package"
        if [[ $(id -u) -eq 0 ]]; then
            apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
        else
            sudo apt-get install -y time >/dev/null
        fi
    fi
    [[ -x "$TIME" ]] || die "$TIME not available"
}

# JSON field extraction: jq if present, python3 otherwise.
json_get() { # json_get FILE .counts.inserted
    if command -v jq >/dev/null 2>&1; then
        jq -er "$2" "$1"
    else
        python3 - "$1" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].strip('.').split('.'):
    v = v[k]
print(v)
PY
    fi
}

wall_secs() { cat "$1.wall"; }
rss_mib() {
    awk -F': ' '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$1"
}
rate() { # rate ROWS SECS
    awk -v n="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.01; printf "%.0f", n / s }'
}
# median_index X...: the index (from 0) of the median of the numbers X (the lower middle
# one of an even count).
median_index() {
    printf '%s\n' "$@" | awk '{ print NR - 1, $1 }' | sort -k2,2g | awk -v n="$#" 'NR == int((n + 1) / 2) { print $1 }'
}
ratio() { # ratio A B [DIGITS]: A / B, to DIGITS decimals (default 2)
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.*f", d, a / b }'
}
# timed TIMEFILE CMD...: runs CMD under `time -v`; wall seconds (from
# $EPOCHREALTIME, finer than time's centiseconds) go to TIMEFILE.wall.
timed() {
    local tf=$1; shift
    local t0=$EPOCHREALTIME
    "$TIME" -v -o "$tf" "$@" || true
    local t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }' >"$tf.wall"
}
check_exit() { # check_exit TIMEFILE LABEL
    local st
    st=$(awk -F': ' '/Exit status/ { print $NF }' "$1")
    [[ "$st" == 0 ]] || die "$2 exited with status ${st:-?} (see $1)"
}

# CPU seconds used so far by the PostgreSQL server on this machine: every `postgres`
# process, plus the exited backends (counted in the postmaster's children's time). Empty when
# no server runs here (a remote BENCH_PG_URL).
pg_server_cpu() {
    local pids
    pids=$(ps -C postgres -o pid= 2>/dev/null) || true
    [[ -n "$pids" ]] || { echo ""; return; }
    local p
    for p in $pids; do cat "/proc/$p/stat" 2>/dev/null; done |
        awk -v hz="$(getconf CLK_TCK)" '
            { sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 }   # utime stime cutime cstime
            END { printf "%.1f", t / hz }'
}
# cpu_secs TIMEFILE: user + system CPU seconds of a command timed with `timed`.
cpu_secs() {
    awk -F': ' '/User time/ { u = $NF } /System time/ { s = $NF } END { printf "%.1f", u + s }' "$1"
}
# diff_secs A B: B - A, or "n/a" when either is empty.
diff_secs() {
    if [[ -z "$1" || -z "$2" ]]; then echo "n/a"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; fi
}
