#!/usr/bin/env bash
# Side-by-side cost of a cached lookup: the Signpost resolver (findService
# over TLS 1.3 + HTTP/2) against Unbound in front of an NSD private-ENUM
# zone (NAPTR over UDP, and over DNS-over-HTTPS), with the same numbers in
# both. Loopback only; every run bounded in time or count.
#
#   sudo bench/compare.sh        # about 5-10 minutes on 2 cores
#
# Method (see docs/benchmarks.md):
#   - each server pinned to CPU $SERVER_CPU, load generators to $LOAD_CPU;
#   - answers per server CPU-second = answers / (utime+stime delta of the
#     server process, /proc/PID/stat) over a fixed-length run; Signpost and
#     Unbound runs interleaved, $ROUNDS rounds each, median and spread;
#   - user-space instructions per answer: the server under callgrind,
#     counters zeroed after warm-up, then two loads with different request
#     totals, each dumped; (instructions2 - instructions1) / (answers2 -
#     answers1), so start-up, handshakes and warm-up cancel out.
#
# Knobs (environment): ROUNDS=3 DURATION=10 (s per run) NUMBERS=1000
# CG_NUMBERS=100 (numbers provisioned for the callgrind runs) CG_N1=2000
# CG_N2=6000 (request totals under callgrind) CONNS=4 STREAMS=32
# LIGHT_STREAMS=4 (streams per connection of the below-saturation run) DOH=1
# SERVER_CPU=0 LOAD_CPU=1 OUT=bench/out CALLGRIND=1 INSTALL=1.
# Exit codes: 0 done, 69 a tool is missing (and cannot be installed),
# 70 a server failed to start or a run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
NUMBERS=${NUMBERS:-1000}
CG_NUMBERS=${CG_NUMBERS:-100}
CG_N1=${CG_N1:-2000}
CG_N2=${CG_N2:-6000}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-32}
LIGHT_STREAMS=${LIGHT_STREAMS:-4}
DOH=${DOH:-1}
CALLGRIND=${CALLGRIND:-1}
INSTALL=${INSTALL:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-bench/out}
TTL=3600

die() { echo "compare.sh: $2" >&2; exit "$1"; }
log() { echo "compare.sh: $*" >&2; }

# --- tools -----------------------------------------------------------------
need=()
for pair in unbound:unbound nsd:nsd dnsperf:dnsperf h2load:nghttp2-client valgrind:valgrind \
  callgrind_control:valgrind jq:jq taskset:util-linux openssl:openssl ss:iproute2 getconf:libc-bin; do
  cmd=${pair%%:*}
  PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; } \
      || die 69 "could not install ${need[*]}"
  else
    die 69 "needs ${need[*]} (Debian: apt-get install ${need[*]}; run as root to have them installed)"
  fi
fi
export PATH=$PATH:/usr/sbin:/sbin
# The packaged services are not needed (and must not hold our ports).
command -v cargo >/dev/null || die 69 "needs cargo (https://rustup.rs) to build the Signpost bench server"
ncpu=$(nproc)
[ "$ncpu" -ge 2 ] || log "only $ncpu CPU: server and load generator share it, figures are not comparable"
CLK_TCK=$(getconf CLK_TCK)

log "building the Signpost bench server (cargo bench --no-run)"
bin=$(nice -n 10 cargo bench -p signpost-resolver --bench cached --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*cached[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$bin" ] || die 70 "could not build the cached bench (cargo bench -p signpost-resolver --bench cached --no-run)"

mkdir -p "$OUT"
work=$(mktemp -d /tmp/signpost-compare.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------
# utime+stime of a process in clock ticks (all its threads).
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# busy ticks of one CPU (all processes), from /proc/stat.
cpu_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
load1() { cut -d' ' -f1 /proc/loadavg; }
wait_for() { # file seconds pid
  local i
  for i in $(seq 1 $(($2 * 10))); do
    [ -s "$1" ] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# median, min, max of numbers on stdin
stats3() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "0 0 0"; exit} m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR]}'; }
# p50 and p99 (ms) of microsecond figures on stdin
pct() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "0 0"; exit} a = int(NR * 0.5); if (a < 1) a = 1; b = int(NR * 0.99); if (b < 1) b = 1; printf "%.3f %.3f\n", v[a] / 1000, v[b] / 1000}'; }
cg_total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

# Starts the Signpost bench server: start_signpost DIR NUMBERS [wrapper...];
# sets SP_PID, SP_PORT, SP_HOLD (stop_signpost stops it).
start_signpost() {
  local dir=$1 n=$2
  shift 2
  mkdir -p "$dir"
  mkfifo "$dir/ctl"
  SIGNPOST_BENCH_SERVE=$dir SIGNPOST_BENCH_NUMBERS=$n SIGNPOST_BENCH_SERVE_SECS=3600 \
    taskset -c "$SERVER_CPU" "$@" "$bin" <"$dir/ctl" >"$dir/log" 2>&1 &
  SP_PID=$!
  pids+=("$SP_PID")
  # The fifo's only writer: when it ends, the server's stdin closes and it
  # stops (a descriptor held by this shell would leak into later children).
  sleep 86400 >"$dir/ctl" &
  SP_HOLD=$!
  pids+=("$SP_HOLD")
  wait_for "$dir/port" 900 "$SP_PID" || { cat "$dir/log" >&2; die 70 "the Signpost bench server did not start"; }
  SP_PORT=$(cat "$dir/port")
}
stop_signpost() { kill "$SP_HOLD" 2>/dev/null || true; wait "$SP_HOLD" "$SP_PID" 2>/dev/null || true; }

# ENUM zone (NSD) with the same numbers, NAPTR with the same mimi: URIs.
# Unbound (1 thread, iterator only) stubs e164.arpa to NSD.
write_dns_configs() { # dir numbers-file nsd-port unbound-port doh-port
  local d=$1 nf=$2 np=$3 up=$4 dp=$5
  {
    echo "\$ORIGIN e164.arpa."
    echo "\$TTL $TTL"
    echo "@ IN SOA ns.e164.arpa. hostmaster.e164.arpa. 1 3600 600 86400 600"
    echo "@ IN NS ns.e164.arpa."
    echo "ns IN A 127.0.0.1"
    awk '{n = $1; o = ""; for (i = length(n); i >= 1; i--) o = o substr(n, i, 1) "."; i = NR - 1;
      printf "%se164.arpa. IN NAPTR 10 100 \"u\" \"E2U+mimi\" \"!^.*$!mimi://provider-a.example/u/%d!\" .\n", o, i}' "$nf"
  } >"$d/e164.arpa.zone"
  nsd_conf "$np" "$d" "$d/e164.arpa.zone" >"$d/nsd.conf"
  cat >"$d/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$up
  port: $up
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$d"
  pidfile: ""
  use-syslog: no
  logfile: "$d/unbound.log"
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  so-reuseport: no
  ratelimit: 0
  ip-ratelimit: 0
  minimal-responses: yes
EOF
  if [ "$DOH" = 1 ]; then
    cat >>"$d/unbound.conf" <<EOF
  interface: 127.0.0.1@$dp
  https-port: $dp
  tls-service-key: "$d/doh.key"
  tls-service-pem: "$d/doh.pem"
  http-endpoint: "/dns-query"
EOF
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
      -keyout "$d/doh.key" -out "$d/doh.pem" >/dev/null 2>&1
  fi
  cat >>"$d/unbound.conf" <<EOF
stub-zone:
  name: "e164.arpa."
  stub-addr: 127.0.0.1@$np
remote-control:
  control-enable: no
EOF
  awk '{n = $1; o = ""; for (i = length(n); i >= 1; i--) o = o substr(n, i, 1) "."; print o "e164.arpa. NAPTR"}' "$nf" >"$d/queries.txt"
}

# A DNS query in wire form (RFC 8484 wants id 0): dns_wire NAME TYPE > file
dns_wire() {
  local name=${1%.} type=$2 l
  printf '\000\000\001\000\000\001\000\000\000\000\000\000'
  local IFS=.
  for l in $name; do printf "\\$(printf '%03o' "${#l}")%s" "$l"; done
  printf "\\000\\000\\$(printf '%03o' "$type")\\000\\001"
}

# Starts NSD and Unbound: start_dns DIR [unbound-wrapper...]; sets NSD_PID UB_PID
start_dns() {
  local d=$1
  shift
  taskset -c "$SERVER_CPU" nsd -d -c "$d/nsd.conf" >"$d/nsd.out" 2>&1 &
  NSD_PID=$!
  pids+=("$NSD_PID")
  taskset -c "$SERVER_CPU" "$@" unbound -d -c "$d/unbound.conf" >"$d/unbound.out" 2>&1 &
  UB_PID=$!
  pids+=("$UB_PID")
  local i
  head -1 "$d/queries.txt" >"$d/probe.txt"
  for i in $(seq 1 600); do
    if dnsperf -s 127.0.0.1 -p "$UB_PORT" -d "$d/probe.txt" -n 1 -t 2 2>/dev/null | grep -q 'NOERROR 1'; then return 0; fi
    kill -0 "$UB_PID" 2>/dev/null || break
    sleep 0.5
  done
  cat "$d/nsd.out" "$d/unbound.out" "$d/unbound.log" >&2 2>/dev/null || true
  die 70 "Unbound/NSD did not answer"
}

# --- Signpost: start, cold path, memory, push visibility ---------------------
log "starting the Signpost topology with $NUMBERS numbers (cold path, memory and push visibility measured as it warms)"
start_signpost "$work/sp" "$NUMBERS"
sp_stats=$(cat "$work/sp/stats.json")
cp "$work/sp/numbers.txt" "$work/numbers.txt"

# --- Unbound + NSD: start, cold path, memory ---------------------------------
NSD_PORT=$(free_port)
UB_PORT=$(free_port)
DOH_PORT=$(free_port)
mkdir -p "$work/dns"
write_dns_configs "$work/dns" "$work/numbers.txt" "$NSD_PORT" "$UB_PORT" "$DOH_PORT"
log "starting NSD (e164.arpa, $NUMBERS NAPTR) and Unbound on 127.0.0.1:$UB_PORT"
start_dns "$work/dns"
sleep 1
rss0=$(rss_kb "$UB_PID")
t0=$(($(ticks "$UB_PID") + $(ticks "$NSD_PID")))
taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$UB_PORT" -d "$work/dns/queries.txt" -n 1 -q 10 -t 5 >"$work/dns/cold.out" 2>&1
t1=$(($(ticks "$UB_PID") + $(ticks "$NSD_PID")))
rss1=$(rss_kb "$UB_PID")
ub_cold_done=$(awk '/Queries completed:/ {print $3}' "$work/dns/cold.out")
ub_cold_us=$(awk -v t=$((t1 - t0)) -v n="${ub_cold_done:-0}" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
ub_mem=$(awk -v a="$rss0" -v b="$rss1" -v n="$NUMBERS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
mid=$(sed -n "$((NUMBERS / 2 + 1))p" "$work/numbers.txt")
mid_name=$(awk -v n="$mid" 'BEGIN {o = ""; for (i = length(n); i >= 1; i--) o = o substr(n, i, 1) "."; print o "e164.arpa."}')
dns_wire "$mid_name" 35 >"$work/dns/query.bin"

# --- interleaved throughput rounds -----------------------------------------
# run_load KIND ROUND: one fixed-length run; appends a line to $work/runs.
run_load() {
  local kind=$1 round=$2 pid f=$work/run-$1-$2 a b c0 c1 s0 s1 o0 o1 answers lat
  case $kind in
    signpost) pid=$SP_PID ;;
    *) pid=$UB_PID ;;
  esac
  a=$(ticks "$pid"); o0=$(cpu_busy "$SERVER_CPU"); s0=$(date +%s.%N); c0=$(load1)
  case $kind in
    signpost)
      taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" -d "$work/sp/body.xml" \
        -H 'content-type: application/lost+xml' --log-file="$f.log" "https://127.0.0.1:$SP_PORT/lost" >"$f.out" 2>&1 || true
      answers=$(awk '/^status codes:/ {print $3}' "$f.out")
      lat=$(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$f.log" | pct) ;;
    unbound-doh)
      taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" -d "$work/dns/query.bin" \
        -H 'content-type: application/dns-message' --log-file="$f.log" "https://127.0.0.1:$DOH_PORT/dns-query" >"$f.out" 2>&1 || true
      answers=$(awk '/^status codes:/ {print $3}' "$f.out")
      lat=$(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$f.log" | pct) ;;
    unbound-udp)
      taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$UB_PORT" -d "$work/dns/queries.txt" -l "$DURATION" \
        -c "$CONNS" -T 1 -q $((CONNS * STREAMS)) -t 2 -v >"$f.out" 2>&1 || true
      answers=$(awk '/Response codes:/ {for (i = 1; i <= NF; i++) if ($i == "NOERROR") print $(i + 1)}' "$f.out")
      lat=$(awk '$1 == ">" && $2 == "NOERROR" {print $NF * 1e6}' "$f.out" | pct) ;;
  esac
  b=$(ticks "$pid"); o1=$(cpu_busy "$SERVER_CPU"); s1=$(date +%s.%N); c1=$(load1)
  answers=${answers:-0}
  [ "$answers" -gt 0 ] || { cat "$f.out" >&2; die 70 "$kind round $round: no answers"; }
  # answers, server CPU s, wall s, answers per server CPU-s, server core
  # utilisation, other work on the server core (share of wall), p50, p99, load
  awk -v k="$kind" -v r="$round" -v n="$answers" -v t=$((b - a)) -v o=$((o1 - o0 - (b - a))) -v s0="$s0" -v s1="$s1" \
    -v hz="$CLK_TCK" -v lat="$lat" -v l0="$c0" -v l1="$c1" 'BEGIN {
      cpu = t / hz; wall = s1 - s0; split(lat, L, " ");
      other = o / hz / wall; if (other < 0) other = 0;
      printf "%s %d %d %.2f %.2f %.0f %.3f %.3f %s %s %s %s\n", k, r, n, cpu, wall, (cpu > 0 ? n / cpu : 0), cpu / wall, other, L[1], L[2], l0, l1 }' >>"$work/runs"
  log "$(tail -1 "$work/runs")"
}
kinds="signpost unbound-udp"
[ "$DOH" = 1 ] && kinds="$kinds unbound-doh"
log "interleaved runs: $ROUNDS rounds x ($kinds), $DURATION s each"
for r in $(seq 1 "$ROUNDS"); do
  for k in $kinds; do run_load "$k" "$r"; done
done

# Below saturation: the same connections with fewer streams each
# ($LIGHT_STREAMS), so the server runs at a share of its saturated rate
# (reported) and the latency is what a client sees there, not queueing at
# saturation. (h2load's fixed-rate mode, --rps, was tried: it releases
# requests in bursts, and showed p50 0.3-0.7 ms even at 2,000 requests/s,
# where one stream's closed loop is answered in under 0.2 ms.)
sp_rate=$(awk '$1 == "signpost" {print $3 / $5}' "$work/runs" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)] + 0}')
f=$work/light
taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$LIGHT_STREAMS" -D "$DURATION" -d "$work/sp/body.xml" \
  -H 'content-type: application/lost+xml' --log-file="$f.log" "https://127.0.0.1:$SP_PORT/lost" >"$f.out" 2>&1 || true
light_answers=$(awk '/^status codes:/ {print $3}' "$f.out")
light_share=$(awk -v n="${light_answers:-0}" -v d="$DURATION" -v r="$sp_rate" 'BEGIN {printf "%.0f", (r > 0 ? n / d / r * 100 : 0)}')
read -r light_p50 light_p99 < <(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$f.log" | pct)
light_p999=$(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$f.log" | sort -g | awk '{v[NR] = $1} END {i = int(NR * 0.999); if (i < 1) i = 1; printf "%.3f", NR ? v[i] / 1000 : 0}')
log "below saturation: $CONNS x $LIGHT_STREAMS streams, ${light_answers:-0} answers ($light_share % of the saturated $sp_rate/s), p50 $light_p50 ms, p99 $light_p99 ms, p99.9 $light_p999 ms"

# Push visibility stated for ENUM: a changed NAPTR reaches a caching
# resolver after the zone reload and, at worst, the record's TTL.
stop_signpost
kill "$UB_PID" "$NSD_PID" 2>/dev/null || true
wait "$UB_PID" "$NSD_PID" 2>/dev/null || true

# --- instruction counts under callgrind --------------------------------------
cg_sp="" cg_ub="" cg_doh=""
if [ "$CALLGRIND" = 1 ]; then
  cg="valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=$work/cg/out.%p"
  mkdir -p "$work/cg"
  # Two loads after zeroing the counters; each dumped.
  cg_pair() { # pid load-fn -> "instructions-per-answer answers1 answers2"
    local pid=$1 fn=$2 n1 n2 i1 i2 k
    # Dumps are numbered from 1 in each process.
    k=$(find "$work/cg" -name "out.$pid.*" | wc -l)
    callgrind_control -z "$pid" >/dev/null 2>&1 || die 70 "callgrind_control could not reach $pid"
    n1=$($fn "$CG_N1")
    callgrind_control -d "$pid" >/dev/null 2>&1
    n2=$($fn "$CG_N2")
    callgrind_control -d "$pid" >/dev/null 2>&1
    i1=$(cg_total "$work/cg/out.$pid.$((k + 1))")
    i2=$(cg_total "$work/cg/out.$pid.$((k + 2))")
    awk -v a="$i1" -v b="$i2" -v n1="$n1" -v n2="$n2" 'BEGIN {printf "%.0f %d %d\n", (n2 > n1) ? (b - a) / (n2 - n1) : 0, n1, n2}'
  }
  sp_load() {
    taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -n "$1" -d "$work/cgsp/body.xml" \
      -H 'content-type: application/lost+xml' "https://127.0.0.1:$SP_PORT/lost" 2>&1 | awk '/^status codes:/ {print $3}'
  }
  doh_load() {
    taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -n "$1" -d "$work/dns/query.bin" \
      -H 'content-type: application/dns-message' "https://127.0.0.1:$DOH_PORT/dns-query" 2>&1 | awk '/^status codes:/ {print $3}'
  }
  udp_load() { # totals in passes through the query file
    local passes=$(($1 / NUMBERS))
    [ "$passes" -ge 1 ] || passes=1
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$UB_PORT" -d "$work/dns/queries.txt" -n "$passes" -c "$CONNS" -T 1 -q 32 -t 10 2>&1 \
      | awk '/Response codes:/ {for (i = 1; i <= NF; i++) if ($i == "NOERROR") print $(i + 1)}'
  }
  log "Signpost under callgrind ($CG_NUMBERS numbers; $CG_N1 then $CG_N2 requests)"
  # shellcheck disable=SC2086
  start_signpost "$work/cgsp" "$CG_NUMBERS" $cg
  cg_sp=$(cg_pair "$SP_PID" sp_load)
  stop_signpost
  log "Signpost: $cg_sp"
  log "Unbound under callgrind (UDP $CG_N1 then $CG_N2 queries$([ "$DOH" = 1 ] && echo "; then DoH"))"
  # shellcheck disable=SC2086
  start_dns "$work/dns" $cg
  udp_load "$NUMBERS" >/dev/null # warm the cache
  cg_ub=$(cg_pair "$UB_PID" udp_load)
  log "Unbound UDP: $cg_ub"
  if [ "$DOH" = 1 ]; then
    cg_doh=$(cg_pair "$UB_PID" doh_load)
    log "Unbound DoH: $cg_doh"
  fi
  kill "$UB_PID" "$NSD_PID" 2>/dev/null || true
  wait "$UB_PID" "$NSD_PID" 2>/dev/null || true
fi

# --- report --------------------------------------------------------------------
summary() { # kind -> "median min max" of a column
  awk -v k="$1" -v c="$2" '$1 == k {print $c}' "$work/runs" | stats3
}
label() {
  case $1 in
    signpost) echo "Signpost resolver, cached findService, TLS 1.3 + HTTP/2, $CONNS conn x $STREAMS streams (h2load)" ;;
    unbound-udp) echo "Unbound, cached NAPTR, UDP (dnsperf, $((CONNS * STREAMS)) in flight)" ;;
    unbound-doh) echo "Unbound, cached NAPTR, DNS-over-HTTPS (HTTP/2), $CONNS conn x $STREAMS streams (h2load)" ;;
  esac
}
instr() {
  case $1 in
    signpost) echo "${cg_sp%% *}" ;;
    unbound-udp) echo "${cg_ub%% *}" ;;
    unbound-doh) echo "${cg_doh%% *}" ;;
  esac
}
js() { jq -n --arg v "$1" '$v'; }
md=$OUT/compare.md
json=$OUT/compare.json
host_cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Signpost vs Unbound, cached lookups ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "Host: $host_cpu, $ncpu CPUs, load average at start of report $(cut -d' ' -f1-3 /proc/loadavg). Server on CPU $SERVER_CPU, load generator on CPU $LOAD_CPU; $ROUNDS interleaved rounds of $DURATION s; $NUMBERS numbers in both."
  echo
  echo "| server | user-space instructions per answer | answers per server CPU-second (median, min-max) | p50 / p99 latency (ms, median round) | server core utilisation | other work on server core |"
  echo "|---|---:|---:|---:|---:|---:|"
  for k in $kinds; do
    read -r am al ah < <(summary "$k" 6)
    read -r p50 _ _ < <(summary "$k" 9)
    read -r p99 _ _ < <(summary "$k" 10)
    read -r util _ _ < <(summary "$k" 7)
    read -r other _ _ < <(summary "$k" 8)
    i=$(instr "$k")
    printf '| %s | %s | %.0f (%.0f-%.0f) | %s / %s | %.0f %% | %.0f %% |\n' "$(label "$k")" "${i:-not run}" "$am" "$al" "$ah" "$p50" "$p99" \
      "$(awk -v u="$util" 'BEGIN {print u * 100}')" "$(awk -v u="$other" 'BEGIN {print u * 100}')"
  done
  echo
  echo "| | Signpost | Unbound + NSD (private ENUM) |"
  echo "|---|---:|---:|"
  echo "| cold path: server CPU per cache-miss lookup ($NUMBERS distinct numbers, each once) | $(jq -r '.cold_server_cpu_us_per_lookup | floor' <<<"$sp_stats") µs (resolver + authority + root) | $ub_cold_us µs (Unbound + NSD) |"
  echo "| memory per cached answer (RSS delta after warming $NUMBERS numbers) | $(jq -r '.rss_bytes_per_cached_answer | floor' <<<"$sp_stats") B (cache accounting: $(jq -r '.cache_bytes_per_cached_answer | floor' <<<"$sp_stats") B) | $ub_mem B |"
  echo "| memory per cached negative answer (cache accounting) | $(jq -r '.cache_bytes_per_cached_negative | floor' <<<"$sp_stats") B | - |"
  echo "| Signpost latency below saturation: $CONNS conn x $LIGHT_STREAMS streams, $(awk -v n="${light_answers:-0}" -v d="$DURATION" 'BEGIN {printf "%.0f", n / d}') answers/s = $light_share % of its saturated rate | p50 $light_p50 ms, p99 $light_p99 ms, p99.9 $light_p999 ms | - |"
  echo "| port visibility: provisioning change to the resolver's changed answer | $(jq -r '[.push_visibility_ms[] | . * 10 | floor / 10] | map(tostring) | join(", ")' <<<"$sp_stats") ms (push, measured) | up to the zone reload + TTL = $TTL s (stated from the NAPTR TTL) |"
  echo
  echo "Instruction counts: callgrind, whole server process (Unbound: one thread; Signpost: resolver, plus the idle in-process root and authority), counters zeroed after warm-up, ($CG_N2 - $CG_N1) answers difference. Answers per CPU-second: answers / (utime + stime of the server process); 'other work' is the rest of the server CPU's busy time during the run (interference from other processes). Latency: closed-loop at saturation (h2load per-request log; dnsperf -v)."
} >"$md"
{
  echo "{"
  echo "  \"date\": $(js "$(date -u +%Y-%m-%dT%H:%M:%SZ)"), \"host_cpu\": $(js "$host_cpu"), \"cpus\": $ncpu,"
  echo "  \"below_saturation\": {\"streams_per_connection\": $LIGHT_STREAMS, \"answers\": ${light_answers:-0}, \"share_of_saturated_pct\": $light_share, \"p50_ms\": $light_p50, \"p99_ms\": $light_p99, \"p999_ms\": $light_p999},"
  echo "  \"settings\": {\"rounds\": $ROUNDS, \"duration_s\": $DURATION, \"numbers\": $NUMBERS, \"connections\": $CONNS, \"streams\": $STREAMS, \"server_cpu\": $SERVER_CPU, \"load_cpu\": $LOAD_CPU, \"callgrind_numbers\": $CG_NUMBERS, \"callgrind_requests\": [$CG_N1, $CG_N2]},"
  echo "  \"servers\": {"
  first=1
  for k in $kinds; do
    [ $first = 1 ] || echo ","
    first=0
    i=$(instr "$k")
    printf '    "%s": {"label": %s, "instructions_per_answer": %s, "runs": [' "$k" "$(js "$(label "$k")")" "${i:-null}"
    awk -v k="$k" '$1 == k {printf "%s{\"round\": %d, \"answers\": %d, \"server_cpu_s\": %s, \"wall_s\": %s, \"answers_per_server_cpu_s\": %s, \"server_core_utilisation\": %s, \"other_work_on_server_core\": %s, \"p50_ms\": %s, \"p99_ms\": %s, \"load1_before\": %s, \"load1_after\": %s}", (n++ ? ", " : ""), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12}' "$work/runs"
    read -r am al ah < <(summary "$k" 6)
    printf '], "answers_per_server_cpu_s": {"median": %s, "min": %s, "max": %s}}' "$am" "$al" "$ah"
  done
  echo
  echo "  },"
  echo "  \"signpost\": $sp_stats,"
  echo "  \"unbound\": {\"cold_server_cpu_us_per_lookup\": $ub_cold_us, \"rss_bytes_per_cached_answer\": $ub_mem, \"ttl_s\": $TTL}"
  echo "}"
} | jq . >"$json"
cat "$md"
log "wrote $md and $json"
