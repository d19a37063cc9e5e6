# Shared by the bench scripts (sourced, not run).

# authority_toml LOST ADMIN [STORE]
# The head of an authority config: id dp.de.example, the listen addresses,
# the PKI under pki/ca and pki/dp (relative to the config), and the
# [store] section (STORE: its lines; default the embedded file
# authority.redb). The caller appends the sections it needs.
authority_toml() {
  printf '%s\n' 'id = "dp.de.example"' '[listen]' "lost = \"$1\"" "admin = \"$2\"" \
    '[tls]' 'ca = "pki/ca/ca.pem"' 'cert = "pki/dp/cert.pem"' 'key = "pki/dp/key.pem"' \
    '[store]' "${3:-path = \"authority.redb\"}"
}

# free_port: a loopback TCP and UDP port nothing listens on (ss), or
# exit 70 (from the command substitution: a caller under `set -e` stops).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if [ -z "$(ss -Htuln "sport = :$p" 2>/dev/null)" ]; then echo "$p"; return; fi
  done
  echo "no free loopback port" >&2
  exit 70
}

# nsd_conf PORT DIR ZONEFILE
# An NSD config serving the e164.arpa zone ZONEFILE (absolute) on
# 127.0.0.1:PORT with one server process, its state and log files in DIR.
nsd_conf() {
  cat <<EOC
server:
  ip-address: 127.0.0.1
  port: $1
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$2"
  zonelistfile: "$2/zone.list"
  xfrdfile: "$2/xfrd.state"
  xfrdir: "$2"
  pidfile: "$2/nsd.pid"
  logfile: "$2/nsd.log"
  database: ""
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "e164.arpa"
  zonefile: "$3"
EOC
}
