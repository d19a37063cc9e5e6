#!/usr/bin/env bash
# User-space instructions per cached lookup in the resolver, counted by
# valgrind (callgrind), so the figure does not move with the machine's load.
#
# Runs the `cached` bench (resolver/benches/cached.rs: TLS 1.3 + HTTP/2 +
# LoST on loopback, 2 connections x 4 streams) twice under callgrind with a
# fixed number of requests, and divides the difference of the resolver
# worker thread's instructions by the difference of requests: start-up,
# PKI generation and the cache warm-up cancel out. The load generator runs
# on its own runtime thread and is not counted.
#
#   bench/cached-instructions.sh            # 1000 and 5000 requests
#   N1=2000 N2=10000 bench/cached-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-1000}
N2=${N2:-5000}
. bench/callgrind-lib.sh
bench_setup cached
server_instructions() {
  local n=$1 dir="$work/$1"
  mkdir -p "$dir"
  (cd "$dir" && SIGNPOST_BENCH_REQUESTS=$n valgrind --tool=callgrind --separate-threads=yes "$bin" >/dev/null 2>&1)
  # The resolver's worker thread is the one that runs the server's answer path.
  for f in "$dir"/callgrind.out.*-*; do
    if grep -q 'signpost_net::server::answer' "$f"; then
      grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}'
      return
    fi
  done
  echo 0
}
a=$(server_instructions "$N1")
b=$(server_instructions "$N2")
per=$(( (b - a) / (N2 - N1) ))
echo "resolver: ${per} instructions per cached lookup (server worker thread; ${N1} and ${N2} requests, TLS 1.3 + HTTP/2 + LoST)"
