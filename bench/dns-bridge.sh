#!/usr/bin/env bash
# dnsperf against the authority's DNS bridge and against NSD serving the
# same private-ENUM zone, on loopback.
#
# Makes a zone of N numbers (+4915100000000 on, two messaging NAPTRs each),
# checks it with nsd-checkzone, imports it into a fresh authority
# (`signpost-authority import`, the zone-file path), serves it with a [dns]
# section, serves the same file with NSD, and runs dnsperf for SECS seconds
# against each with the NAPTR queries of every number in random order.
# Both servers, dnsperf and the machine's other work share its cores: the
# figures compare the two here, they are not capacity figures.
#
#   bench/dns-bridge.sh                 # N=10000 SECS=10 CLIENTS=4
#   N=50000 SECS=20 bench/dns-bridge.sh
#   SIGNPOST_BIN=target/release bench/dns-bridge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-10000}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-4}
BIN=${SIGNPOST_BIN:-${CARGO_TARGET_DIR:-target}/release}
for t in dnsperf nsd nsd-checkzone python3; do
  command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || { echo "needs $t (Debian: apt-get install dnsperf nsd python3)" >&2; exit 69; }
done
if [ ! -x "$BIN/signpost-authority" ] || [ ! -x "$BIN/signpost-root" ]; then
  cargo build --release -p signpost-root -p signpost-authority
fi
BIN=$(cd "$BIN" && pwd)
R=$BIN/signpost-root
A=$BIN/signpost-authority
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

"$R" ca init --out pki/ca >/dev/null
"$R" ca issue --ca pki/ca --role authority --id dp.de.example --scope +49 --out pki/dp >/dev/null

python3 - "$N" <<'EOF'
import random, sys
n = int(sys.argv[1])
with open("e164.zone", "w") as z, open("queries", "w") as q:
    z.write("$ORIGIN e164.arpa.\n$TTL 600\n@ IN SOA ns1.example. hostmaster.example. 1 3600 600 86400 60\n  IN NS ns1.example.\n")
    names = []
    for i in range(n):
        digits = "4915100000000"[:-len(str(i))] + str(i) if i else "4915100000000"
        name = ".".join(reversed(digits))
        names.append(name)
        z.write(f'{name} IN NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:+{digits}@ims.tnsp-a.example!" .\n')
        z.write(f'  IN NAPTR 100 20 "u" "E2U+mimi" "!^.*$!mimi://provider-a.example/u/{digits}!" .\n')
    random.seed(1)
    random.shuffle(names)
    for name in names:
        q.write(f"{name}.e164.arpa NAPTR\n")
EOF
nsd-checkzone e164.arpa e164.zone >/dev/null

dns_port=$(free_port)
{ authority_toml 127.0.0.1:0 127.0.0.1:0; cat <<EOF; } > authority.toml
[rate]
queries_per_s = 1000000.0
burst = 1000000.0
[dns]
listen = "127.0.0.1:$dns_port"
[log]
level = "warn"
EOF
"$A" import --config authority.toml --quiet --tnsp tnsp-a.de.example e164.zone >/dev/null
"$A" serve --config authority.toml 2>authority.log &
pids+=($!)

nsd_port=$(free_port)
nsd_conf "$nsd_port" "$work" "$work/e164.zone" > nsd.conf
nsd -d -c nsd.conf &
pids+=($!)

wait_for() {
  for _ in $(seq 1 100); do
    if dig @127.0.0.1 -p "$1" e164.arpa SOA +tries=1 +time=1 2>/dev/null | grep -q "status: NOERROR"; then return 0; fi
    sleep 0.2
  done
  echo "no answer on port $1" >&2
  exit 70
}
wait_for "$dns_port"
wait_for "$nsd_port"

# One sample answer from each, to show they agree.
first=$(head -1 queries | cut -d' ' -f1)
diff <(dig @127.0.0.1 -p "$dns_port" "$first" NAPTR +short | sort) <(dig @127.0.0.1 -p "$nsd_port" "$first" NAPTR +short | sort) >/dev/null \
  || { echo "the bridge and NSD answer $first differently" >&2; exit 70; }

run() {
  local label=$1 port=$2 out
  out=$(dnsperf -s 127.0.0.1 -p "$port" -d queries -l "$SECS" -c "$CLIENTS" -q 100 2>&1)
  local qps lat lost noerror
  qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
  lat=$(echo "$out" | awk '/Average Latency/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
  noerror=$(echo "$out" | grep -o 'NOERROR [0-9]*' | head -1 | awk '{print $2}')
  printf '%-22s %10s q/s   average latency %s s   lost %s   NOERROR %s\n' "$label" "$qps" "$lat" "$lost" "$noerror"
}
echo "dnsperf: $N numbers, NAPTR queries in random order, ${SECS} s, ${CLIENTS} clients, 100 outstanding, UDP on 127.0.0.1"
run "signpost DNS bridge" "$dns_port"
run "NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}')" "$nsd_port"
