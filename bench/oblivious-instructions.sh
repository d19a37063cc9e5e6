#!/usr/bin/env bash
# User-space instructions per identifier at the OHTTP gateway (the
# resolver) and at the relay, counted by valgrind (callgrind), so the
# figures do not move with the machine's load: direct cached `POST /lost`,
# one OHTTP lookup through the relay, and bulks of 1, 100 and 1000
# identifiers sent directly and through OHTTP, all on cached answers.
#
# Runs the `oblivious` bench (resolver/benches/oblivious.rs: TLS 1.3 +
# HTTP/2 on loopback; the resolver/gateway, the relay and the load
# generator each on a runtime of its own) twice per scenario under
# callgrind with a fixed number of requests (SIGNPOST_BENCH_SCENARIO,
# SIGNPOST_BENCH_REQUESTS), and divides the difference of each server
# worker thread's instructions by the difference of identifiers: start-up,
# PKI generation, provisioning and the cache warm-up cancel out. The
# gateway thread is the one that dispatches requests and never runs the
# relay; the relay thread, the one that runs RelayService::forward. The load
# generator's thread (the AP's sealing and opening) is not counted.
#
#   bench/oblivious-instructions.sh                 # every scenario
#   bench/oblivious-instructions.sh ohttp direct    # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/callgrind-lib.sh
bench_setup oblivious

# scenario, identifiers per request, the two request counts
plan() {
  case $1 in
    direct|ohttp|bulk-direct-1|bulk-ohttp-1) echo "1 100 500" ;;
    bulk-direct-100|bulk-ohttp-100) echo "100 5 25" ;;
    bulk-direct-1000|bulk-ohttp-1000) echo "1000 1 4" ;;
    *) echo "unknown scenario $1" >&2; exit 64 ;;
  esac
}

# Prints "gateway relay" instructions of one run.
run() {
  local key=$1 n=$2 dir="$work/$1-$2"
  mkdir -p "$dir"
  (cd "$dir" && SIGNPOST_BENCH_SCENARIO=$key SIGNPOST_BENCH_REQUESTS=$n valgrind --tool=callgrind --separate-threads=yes "$bin" >out.txt 2>err.txt) \
    || { echo "$key $n: the bench failed (see below)" >&2; tail -20 "$dir/err.txt" >&2; exit 70; }
  local gw=0 rl=0 f
  for f in "$dir"/callgrind.out.*-*; do
    local total
    total=$(grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}')
    if grep -q 'RelayService::forward' "$f"; then
      rl=$total
    elif grep -q 'signpost_net::server::dispatch' "$f"; then
      gw=$total
    fi
  done
  echo "$gw $rl"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(direct ohttp bulk-direct-1 bulk-ohttp-1 bulk-direct-100 bulk-ohttp-100 bulk-direct-1000 bulk-ohttp-1000)
printf '%-18s %12s %22s %20s\n' scenario identifiers "gateway instr/id" "relay instr/id"
for s in "${scenarios[@]}"; do
  read -r per n1 n2 <<<"$(plan "$s")"
  read -r g1 r1 <<<"$(run "$s" "$n1")"
  read -r g2 r2 <<<"$(run "$s" "$n2")"
  ids=$(( (n2 - n1) * per ))
  printf '%-18s %12d %22d %20d\n' "$s" "$ids" $(( (g2 - g1) / ids )) $(( (r2 - r1) / ids ))
done
