#!/usr/bin/env bash
# Direct answers per server CPU-second: the Signpost authority (findService
# over mutually authenticated TLS 1.3 + HTTP/2, redb store) against NSD
# serving the same numbers as a private-ENUM zone (NAPTR over UDP).
# Loopback only; every run bounded in time or count.
#
#   bench/authority-compare.sh                  # N=100000, about 3 minutes
#   N=10000000 bench/authority-compare.sh       # 10 M numbers, about 20 minutes
#   WORK=/var/tmp/ac N=10000000 bench/authority-compare.sh   # keeps the data:
#                                               # a second run reuses it
#
# Method (see docs/benchmarks.md, "Authority against NSD"):
#   - N numbers +49151nnnnnnnn, n < N, generated as an import CSV (one
#     entry each, a second one for even n) and as an e164.arpa zone with the
#     same entries as NAPTRs (E2U+mimi, the same URIs, order = priority);
#     the CSV imported with `signpost-authority import` (release binary),
#     the zone served by NSD (server-count 1);
#   - a random set of SET numbers (the same for both) is asked once to warm
#     both servers (the authority signs on demand at the first answer);
#   - then ROUNDS interleaved runs of SECS seconds each: the authority under
#     authority/benches/lost_load.rs (CONNS connections x STREAMS streams,
#     a client certificate of the deployment CA, the canonical findService
#     of each number of the set in turn), NSD under dnsperf over UDP (the
#     set's NAPTR queries, CONNS x STREAMS in flight); servers pinned to
#     SERVER_CPU, load generators to LOAD_CPU;
#   - answers per server CPU-second = answers counted by the load tool /
#     the server processes' utime+stime delta (/proc/PID/stat; NSD: its
#     main process and its children);
#   - instructions per answer (CALLGRIND=1): the whole authority process
#     under callgrind, warmed over CG_SET numbers, counters zeroed, then
#     CG_N1 and CG_N2 requests each dumped: (I2 - I1) / (A2 - A1), so
#     start-up, handshakes and first answers cancel out.
#
# Knobs (environment): N=100000 SET=100000 SECS=20 ROUNDS=3 CONNS=4
# STREAMS=32 SERVER_CPU=0 LOAD_CPU=1 CALLGRIND=1 CG_SET=2000 CG_N1=5000
# CG_N2=20000 WORK (a directory to keep the generated data in; default a
# temporary one, removed) PREPARE_ONLY=0 (1: generate and import into WORK,
# then stop) OUT=bench/out SIGNPOST_BIN (default target/release).
# Exit codes: 0 done; 64 bad knob; 69 a tool is missing (Debian: apt-get
# install nsd dnsperf valgrind); 70 a build failed, a server did not start,
# or a run returned no answers.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-100000}
SET=${SET:-100000}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CALLGRIND=${CALLGRIND:-1}
CG_SET=${CG_SET:-2000}
CG_N1=${CG_N1:-5000}
CG_N2=${CG_N2:-20000}
OUT=${OUT:-bench/out}
BIN=${SIGNPOST_BIN:-${CARGO_TARGET_DIR:-target}/release}

die() { echo "authority-compare.sh: $2" >&2; exit "$1"; }
log() { echo "authority-compare.sh: $*" >&2; }

for k in N SET SECS ROUNDS CONNS STREAMS CG_SET CG_N1 CG_N2; do
  v=${!k}
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || die 64 "$k=$v: a positive integer is needed"
done
[ "$N" -le 100000000 ] || die 64 "N=$N: at most 100000000 (8 digits after +49151)"
[ "$CG_N2" -gt "$CG_N1" ] || die 64 "CG_N2 must be larger than CG_N1"
[ "$SET" -le "$N" ] || SET=$N
[ "$CG_SET" -le "$SET" ] || CG_SET=$SET

export PATH=$PATH:/usr/sbin:/sbin
for t in nsd nsd-checkzone dnsperf taskset awk shuf getconf; do
  command -v "$t" >/dev/null || die 69 "needs $t (Debian: apt-get install nsd dnsperf coreutils util-linux)"
done
if [ "$CALLGRIND" = 1 ]; then
  for t in valgrind callgrind_control; do command -v "$t" >/dev/null || die 69 "needs $t (Debian: apt-get install valgrind; or CALLGRIND=0)"; done
fi
command -v cargo >/dev/null || die 69 "needs cargo (https://rustup.rs)"
CLK_TCK=$(getconf CLK_TCK)

log "building the authority, the root CLI and the load generator (release)"
nice -n 5 cargo build --release -q -p signpost-root -p signpost-authority || die 70 "cargo build --release failed"
loader=$(nice -n 5 cargo bench -p signpost-authority --bench lost_load --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*lost_load[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$loader" ] || die 70 "could not build the lost_load bench (cargo bench -p signpost-authority --bench lost_load --no-run)"
BIN=$(cd "$BIN" && pwd)
A=$BIN/signpost-authority
R=$BIN/signpost-root

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
  work=$(cd "$WORK" && pwd)
  keep=1
else
  work=$(mktemp -d /tmp/signpost-authority-compare.XXXXXX)
  keep=0
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 0 ]; then rm -rf "$work"; else rm -rf "$work/run"; fi
}
trap cleanup EXIT
cd "$work"
rm -rf run
mkdir -p run

# --- helpers ---------------------------------------------------------------
# utime+stime (clock ticks) of a process and all its descendants (NSD
# forks xfrd, which forks the server process).
ticks() {
  local p t=0 c
  for p in $(ps -e -o pid=,ppid= | awk -v r="$1" '{pp[$1] = $2} END {
      for (p in pp) { q = p; while (q != "" && q != r && q in pp && q != 1) q = pp[q]; if (q == r) print p } }'); do
    c=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || c=0
    t=$((t + ${c:-0}))
  done
  echo "$t"
}
load1() { cut -d' ' -f1 /proc/loadavg; }
cg_total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

# --- data: CSV, zone, query set (kept in WORK) ------------------------------
if [ ! -s "data.$N.done" ]; then
  log "generating $N numbers (CSV and zone)"
  rm -f numbers.csv e164.zone authority.redb data.*.done
  # Entries: every number ott.example (priority 10, tag personal,
  # msp-verified, display name); even numbers also rcs.example (priority
  # 20, csip-attested, bound to the TNSP).
  awk -v n="$N" 'BEGIN {
    print "csi,state,tnsp,provider,uri,priority,tags,assurance,bound_to_tnsp,display_name"
    for (i = 0; i < n; i++) {
      printf "+49151%08d,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/%d,10,personal,msp-verified,false,User %d\n", i, i, i
      if (i % 2 == 0) printf "+49151%08d,assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/%d,20,,csip-attested,true,\n", i, i
    }
  }' >numbers.csv
  awk -v n="$N" 'BEGIN {
    print "$ORIGIN e164.arpa."
    print "$TTL 3600"
    print "@ IN SOA ns.e164.arpa. hostmaster.e164.arpa. 1 3600 600 86400 600"
    print "@ IN NS ns.e164.arpa."
    print "ns IN A 127.0.0.1"
    for (i = 0; i < n; i++) {
      d = sprintf("49151%08d", i); o = ""
      for (k = length(d); k >= 1; k--) o = o substr(d, k, 1) "."
      printf "%se164.arpa. IN NAPTR 10 100 \"u\" \"E2U+mimi\" \"!^.*$!mimi://ott.example/u/%d!\" .\n", o, i
      if (i % 2 == 0) printf "%se164.arpa. IN NAPTR 20 100 \"u\" \"E2U+mimi\" \"!^.*$!mimi://rcs.example/u/%d!\" .\n", o, i
    }
  }' >e164.zone
  nsd-checkzone e164.arpa e164.zone >/dev/null || die 70 "nsd-checkzone refused the generated zone"
  rm -rf pki
  "$R" ca init --out pki/ca >/dev/null
  "$R" ca issue --ca pki/ca --role authority --id dp.de.example --scope +49 --ip 127.0.0.1 --out pki/dp >/dev/null
  "$R" ca issue --ca pki/ca --role resolver --id res.de.example --out pki/client >/dev/null
  touch data.pending
fi
api=$(free_port)
admin=$(free_port)
{ authority_toml "127.0.0.1:$api" "127.0.0.1:$admin"; cat <<EOF; } >authority.toml
[rate]
queries_per_s = 100000000.0
burst = 100000000.0
[limits]
max_connections = 1024
[log]
level = "warn"
EOF
if [ -e data.pending ]; then
  log "importing $N numbers into the authority (signpost-authority import)"
  s0=$(date +%s)
  nice -n 5 "$A" import --config authority.toml --quiet numbers.csv >run/import.out 2>&1 || { cat run/import.out >&2; die 70 "the import failed"; }
  log "imported in $(($(date +%s) - s0)) s; store $(du -h authority.redb | cut -f1)"
  rm -f data.pending
  echo "$N" >"data.$N.done"
fi
if [ "${PREPARE_ONLY:-0}" = 1 ]; then
  log "data ready in $work (PREPARE_ONLY=1: nothing measured)"
  exit 0
fi
# The query set: SET distinct numbers drawn at random (fixed seed), in
# random order; the same for both servers.
awk -v n="$N" -v s="$SET" 'BEGIN {
  srand(10); k = 0
  while (k < s) { i = int(rand() * n); if (!(i in seen)) { seen[i] = 1; k++; printf "+49151%08d\n", i } }
}' >run/set.txt
awk '{d = substr($1, 2); o = ""; for (k = length(d); k >= 1; k--) o = o substr(d, k, 1) "."; print o "e164.arpa. NAPTR"}' run/set.txt >run/queries.txt
head -"$CG_SET" run/set.txt >run/cg-set.txt

# --- servers -----------------------------------------------------------------
start_authority() { # [wrapper...]; sets SP_PID
  : >run/authority.log
  taskset -c "$SERVER_CPU" "$@" "$A" serve --config authority.toml >run/authority.log 2>&1 &
  SP_PID=$!
  pids+=("$SP_PID")
  local i
  for i in $(seq 1 600); do
    if "$loader" --url "https://127.0.0.1:$api/lost" --server dp.de.example --ca pki/ca/ca.pem --cert pki/client/cert.pem \
      --key pki/client/key.pem --numbers run/set.txt --conns 1 --streams 1 --requests 1 --secs 5 2>/dev/null | grep -q '^answers 1 '; then
      return 0
    fi
    kill -0 "$SP_PID" 2>/dev/null || break
    sleep 0.5
  done
  cat run/authority.log >&2
  die 70 "the authority did not answer"
}
stop_authority() { kill "$SP_PID" 2>/dev/null || true; wait "$SP_PID" 2>/dev/null || true; }
load_authority() { # set-file requests secs -> "answers"
  taskset -c "$LOAD_CPU" "$loader" --url "https://127.0.0.1:$api/lost" --server dp.de.example --ca pki/ca/ca.pem \
    --cert pki/client/cert.pem --key pki/client/key.pem --numbers "$1" --conns "$CONNS" --streams "$STREAMS" \
    --requests "$2" --secs "$3" 2>>run/loader.err | awk '{print $2}'
}

nsd_port=$(free_port)
nsd_conf "$nsd_port" "$work/run" "$work/e164.zone" >run/nsd.conf
head -1 run/queries.txt >run/probe.txt
log "starting NSD ($N numbers; it reads the zone file first)"
s0=$(date +%s)
taskset -c "$SERVER_CPU" nsd -d -c run/nsd.conf >run/nsd.out 2>&1 &
NSD_PID=$!
pids+=("$NSD_PID")
for i in $(seq 1 3600); do
  if dnsperf -s 127.0.0.1 -p "$nsd_port" -d run/probe.txt -n 1 -t 2 2>/dev/null | grep -q 'NOERROR 1'; then break; fi
  kill -0 "$NSD_PID" 2>/dev/null || { cat run/nsd.out run/nsd.log >&2 2>/dev/null; die 70 "NSD stopped"; }
  [ "$i" -lt 3600 ] || die 70 "NSD did not answer within an hour"
  sleep 0.5
done
log "NSD answering after $(($(date +%s) - s0)) s; RSS $(awk '/^VmRSS/ {print $2}' /proc/$NSD_PID/status) kB (main process)"
load_nsd() { # secs -> "answers"
  taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$nsd_port" -d run/queries.txt -l "$1" -c "$CONNS" -T 1 \
    -q $((CONNS * STREAMS)) -t 2 2>&1 | awk '/Response codes:/ {for (i = 1; i <= NF; i++) if ($i == "NOERROR") {v = $(i + 1); sub(",", "", v); print v}}'
}

log "starting the authority"
start_authority
# Answers agree: the first number's URIs from both, in preference order.
first=$(head -1 run/set.txt)
fname=$(head -1 run/queries.txt | cut -d' ' -f1)
if command -v dig >/dev/null; then
  dig @127.0.0.1 -p "$nsd_port" "$fname" NAPTR +short | sort -n | sed 's/.*!\(mimi:[^!]*\)!.*/\1/' >run/nsd-uris.txt
  log "NSD answers $first with $(tr '\n' ' ' <run/nsd-uris.txt)"
fi

log "warming both over the $SET numbers of the set (the authority signs each mapping at its first answer)"
w=$(load_authority run/set.txt "$SET" 3600)
[ "${w:-0}" -ge "$SET" ] || { cat run/loader.err >&2; die 70 "warm-up: $w answers of $SET"; }
dnsperf -s 127.0.0.1 -p "$nsd_port" -d run/queries.txt -n 1 -c "$CONNS" -q 100 -t 5 >/dev/null 2>&1 || true

# --- interleaved rounds -----------------------------------------------------
: >run/runs
run_one() { # kind round
  local kind=$1 r=$2 a b answers l0 s0 s1
  l0=$(load1)
  s0=$(date +%s.%N)
  case $kind in
    signpost) a=$(ticks "$SP_PID"); answers=$(load_authority run/set.txt 1000000000 "$SECS"); b=$(ticks "$SP_PID") ;;
    nsd) a=$(ticks "$NSD_PID"); answers=$(load_nsd "$SECS"); b=$(ticks "$NSD_PID") ;;
  esac
  s1=$(date +%s.%N)
  [ "${answers:-0}" -gt 0 ] || { tail -5 run/loader.err >&2; die 70 "$kind round $r: no answers"; }
  awk -v k="$kind" -v r="$r" -v n="$answers" -v t=$((b - a)) -v hz="$CLK_TCK" -v s0="$s0" -v s1="$s1" -v l0="$l0" -v l1="$(load1)" 'BEGIN {
    cpu = t / hz; printf "%s %d %d %.2f %.0f %.2f %s %s\n", k, r, n, cpu, (cpu > 0 ? n / cpu : 0), cpu / (s1 - s0), l0, l1 }' >>run/runs
  log "$(tail -1 run/runs) (kind round answers server-cpu-s answers/cpu-s server-core-share load-before load-after)"
}
log "$ROUNDS interleaved rounds of $SECS s (authority, NSD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  run_one signpost "$r"
  run_one nsd "$r"
done
median() { awk -v k="$1" '$1 == k {print $5}' run/runs | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { awk -v k="$1" '$1 == k {print $5}' run/runs | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {print a "-" b}'; }
sp_med=$(median signpost)
nsd_med=$(median nsd)
ratio=$(awk -v a="$sp_med" -v b="$nsd_med" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
sp_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SP_PID/status")
stop_authority
kill "$NSD_PID" 2>/dev/null || true
wait "$NSD_PID" 2>/dev/null || true

# --- callgrind: instructions per answer of the whole authority process -------
cg=""
if [ "$CALLGRIND" = 1 ]; then
  log "the authority under callgrind ($CG_SET numbers warmed; then $CG_N1 and $CG_N2 requests)"
  mkdir -p run/cg
  start_authority valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/run/cg/out.%p"
  w=$(load_authority run/cg-set.txt "$CG_SET" 3600)
  [ "${w:-0}" -ge "$CG_SET" ] || die 70 "callgrind warm-up: $w answers of $CG_SET"
  load_authority run/cg-set.txt "$CG_SET" 3600 >/dev/null
  callgrind_control -z "$SP_PID" >/dev/null 2>&1 || die 70 "callgrind_control could not reach $SP_PID"
  n1=$(load_authority run/cg-set.txt "$CG_N1" 3600)
  callgrind_control -d "$SP_PID" >/dev/null 2>&1
  n2=$(load_authority run/cg-set.txt "$CG_N2" 3600)
  callgrind_control -d "$SP_PID" >/dev/null 2>&1
  i1=$(cg_total "run/cg/out.$SP_PID.1")
  i2=$(cg_total "run/cg/out.$SP_PID.2")
  cg=$(awk -v a="$i1" -v b="$i2" -v n1="$n1" -v n2="$n2" 'BEGIN {printf "%.0f", (n2 > n1) ? (b - a) / (n2 - n1) : 0}')
  # Per function (inclusive of nothing: self cost), for profiling.
  callgrind_annotate "run/cg/out.$SP_PID.2" 2>/dev/null | head -60 >"$OUT/authority-compare.callgrind.txt" || true
  stop_authority
  log "instructions per answer: ($i2 - $i1) / ($n2 - $n1) = $cg"
fi

# --- report --------------------------------------------------------------------
host_cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
md=$OUT/authority-compare.md
{
  echo "# Signpost authority vs NSD, direct answers ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "Host: $host_cpu, $(nproc) CPUs; servers on CPU $SERVER_CPU, load generators on CPU $LOAD_CPU; $N numbers in both; a random set of $SET of them asked, warmed first; $ROUNDS interleaved rounds of $SECS s."
  echo
  echo "| server | answers per server CPU-second (median, range) | runs |"
  echo "|---|---:|---|"
  echo "| Signpost authority, findService over mTLS 1.3 + HTTP/2 ($CONNS conn x $STREAMS streams, lost_load) | $sp_med ($(range signpost)) | $(awk '$1 == "signpost" {printf "%s%d answers / %s s", (n++ ? "; " : ""), $3, $4}' run/runs) |"
  echo "| NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}'), NAPTR over UDP (dnsperf, $((CONNS * STREAMS)) in flight) | $nsd_med ($(range nsd)) | $(awk '$1 == "nsd" {printf "%s%d answers / %s s", (n++ ? "; " : ""), $3, $4}' run/runs) |"
  echo
  echo "Ratio Signpost / NSD: **$ratio**. Authority RSS after the runs: $sp_rss kB."
  [ -n "$cg" ] && echo "Authority user-space instructions per answer (whole process, callgrind, repeated answers over $CG_SET numbers): **$cg**."
  echo
  echo "Each run (kind, round, answers, server CPU-s, answers per CPU-s, server CPU share of wall time, load average before/after):"
  echo
  sed 's/^/    /' run/runs
} >"$md"
cat "$md"
log "wrote $md"
