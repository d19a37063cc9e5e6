#!/usr/bin/env bash
# The authority's bulk import: rows per second, peak memory and bytes per
# number at rest, for the embedded store (redb) or PostgreSQL.
#
#   bench/import.sh                                   # N=1000000, redb
#   N=10000000 bench/import.sh                        # 10 M numbers (1.8 GB of CSV)
#   PG_URL=postgres://postgres@127.0.0.1:5432/bench bench/import.sh
#                                   # into that (empty) database instead
#   WORK=/var/tmp/imp N=10000000 bench/import.sh      # keep the CSV for reruns
#
# The file: N numbers +49151nnnnnnnn, one entry each (ott.example) and a
# second one for even n (rcs.example): 1.5 CSV rows per number, the
# generator of the authority's import notes. The import is the release
# binary's `signpost-authority import --quiet` under /usr/bin/time; with
# PG_URL the database's CPU time is read from its processes (the postgres
# user's, with the exited connections' time the postmaster collected)
# before and after. The figures are wall-clock: run it on a quiet
# machine, and compare CPU-seconds when it is not.
#
# Exit codes: 0 done; 64 a bad knob; 69 a tool is missing; 70 the build or
# the import failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-1000000}
BIN=${SIGNPOST_BIN:-${CARGO_TARGET_DIR:-target}/release}
die() { echo "import.sh: $2" >&2; exit "$1"; }
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -gt 0 ] && [ "$N" -le 100000000 ] || die 64 "N=$N: a number from 1 to 100000000"
[ -x /usr/bin/time ] || die 69 "needs /usr/bin/time (Debian: apt-get install time)"
if [ -n "${PG_URL:-}" ]; then command -v psql >/dev/null || die 69 "PG_URL needs psql (Debian: apt-get install postgresql-client)"; fi
if [ ! -x "$BIN/signpost-authority" ] || [ ! -x "$BIN/signpost-root" ]; then
  cargo build --release -q -p signpost-root -p signpost-authority || die 70 "cargo build --release failed"
fi
BIN=$(cd "$BIN" && pwd)
if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; work=$(cd "$WORK" && pwd); keep=1; else work=$(mktemp -d); keep=0; fi
cleanup() { rm -f "$work/authority.redb" "$work/time.out"; [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
if [ ! -s "numbers.$N.csv" ]; then
  awk -v n="$N" 'BEGIN {
    print "csi,state,tnsp,provider,uri,priority,tags,assurance,bound_to_tnsp,display_name"
    for (i = 0; i < n; i++) {
      printf "+49151%08d,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/%d,10,personal,msp-verified,false,User %d\n", i, i, i
      if (i % 2 == 0) printf "+49151%08d,assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/%d,20,,csip-attested,true,\n", i, i
    }
  }' >"numbers.$N.csv"
fi
rows=$(($(wc -l <"numbers.$N.csv") - 1))
rm -rf pki authority.redb
"$BIN/signpost-root" ca init --out pki/ca >/dev/null
"$BIN/signpost-root" ca issue --ca pki/ca --role authority --id dp.de.example --scope +49 --out pki/dp >/dev/null
store=
if [ -n "${PG_URL:-}" ]; then store="backend = \"postgres\"
url = \"$PG_URL\""; fi
authority_toml 127.0.0.1:0 127.0.0.1:0 "$store" >authority.toml
pg_ticks() { for p in $(pgrep -u postgres postgres 2>/dev/null); do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}'; done | awk '{s += $1} END {print s + 0}'; }
p0=$(pg_ticks)
load=$(cut -d' ' -f1 /proc/loadavg)
/usr/bin/time -f "%e %U %S %M" -o time.out "$BIN/signpost-authority" import --config authority.toml --quiet "numbers.$N.csv" >import.out 2>&1 || { cat import.out >&2; die 70 "the import failed"; }
p1=$(pg_ticks)
read -r wall user sys rss <time.out
if [ -n "${PG_URL:-}" ]; then
  bytes=$(psql "$PG_URL" -Atc "select pg_database_size(current_database())")
  db="PostgreSQL (server CPU $(awk -v t=$((p1 - p0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}') s)"
else
  bytes=$(stat -c %s authority.redb)
  db="redb"
fi
awk -v n="$N" -v rows="$rows" -v w="$wall" -v u="$user" -v s="$sys" -v rss="$rss" -v b="$bytes" -v db="$db" -v load="$load" 'BEGIN {
  printf "import of %d numbers (%d rows) into %s, load average %s at the start\n", n, rows, db, load
  printf "  wall %.1f s: %.0f rows/s, %.0f numbers/s\n", w, rows / w, n / w
  printf "  importer CPU %.1f s (user %.1f, sys %.1f): %.0f rows per CPU-second\n", u + s, u, s, rows / (u + s)
  printf "  peak RSS %.0f MiB\n", rss / 1024
  printf "  at rest %.0f B per number (%.0f MiB)\n", b / n, b / 1048576
}'
