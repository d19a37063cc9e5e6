#!/usr/bin/env bash
# The README's walkthrough as one script: a root, an authority for +49, an
# email provider's authority for mail.example and a resolver on this
# machine (the sample configs' loopback ports 7400-7421), a number and an
# email address provisioned through the authorities' provisioning API, and
# both looked up through the resolver, verified (and a number from the
# sample CSV import). CI runs it.
#
#   docs/walkthrough.sh [WORKDIR]        # builds the release binaries first
#   SIGNPOST_BIN=target/debug docs/walkthrough.sh
#
# Every command below is one an operator types; the servers run in the
# background and are stopped when the script ends. Exit 0: both lookups
# answered with verified mappings.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SIGNPOST_BIN:-}" ]; then
  (cd "$repo" && cargo build --release -p signpost-root -p signpost-authority -p signpost-resolver)
  SIGNPOST_BIN=$repo/target/release
fi
bin=$(cd "$SIGNPOST_BIN" && pwd)
R=$bin/signpost-root A=$bin/signpost-authority V=$bin/signpost-resolver
W=${1:-$(mktemp -d /tmp/signpost-walkthrough.XXXXXX)}
mkdir -p "$W" && cd "$W"
echo "walkthrough in $W"

pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
# Starts a server in the background and waits for its "listening for lost" line.
start() {
  local name=$1; shift
  "$@" >"$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "listening for lost on" "$name.log" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$name.log" >&2; echo "$name exited" >&2; return 1; }
    sleep 0.1
  done
  cat "$name.log" >&2; echo "$name did not start" >&2; return 1
}

# 1. The deployment's PKI: the trust anchor, then one certificate per role.
#    An authority's scope is what it may answer for (and sign).
$R ca init --out pki/ca
$R ca issue --ca pki/ca --role root --id root.signpost.example --out pki/root
$R ca issue --ca pki/ca --role authority --id dp.de.example --scope +49 --out pki/dp-de
$R ca issue --ca pki/ca --role authority --id dp.mail.example --scope mail.example --out pki/dp-mail
$R ca issue --ca pki/ca --role resolver --id resolver.signpost.example --out pki/resolver
$R ca issue --ca pki/ca --role csip --id tnsp-a.de.example --scope +4915 --out pki/tnsp    # the number's provider
$R ca issue --ca pki/ca --role csip --id postmaster.mail.example --scope mail.example --out pki/mailbox  # the address's provider
$R ca issue --ca pki/ca --role msp --id provider-a.example --out pki/msp                  # a messaging provider

# 2. The root: the sample table delegates +49 to dp.de.example (:7402) and
#    mail.example to dp.mail.example (:7403). Sign it, check it, serve it.
cp "$repo/root/root.sample.toml" root.toml
cp "$repo/root/root-table.sample.xml" root-table.xml
$R table sign --key pki/root/key.pem root-table.xml
$R table verify --ca pki/ca/ca.pem --cert pki/root/cert.pem root-table.xml
$R check-config --config root.toml
start root "$R" serve --config root.toml

# 3. The authorities: the sample config is dp.de.example's; the email
#    provider's differs in its id, ports, certificate and store.
cp "$repo/authority/authority.sample.toml" authority.toml
sed -e 's/^id = "dp.de.example"/id = "dp.mail.example"/' -e 's/127.0.0.1:7402/127.0.0.1:7403/' -e 's/127.0.0.1:7412/127.0.0.1:7413/' \
    -e 's#pki/dp-de/#pki/dp-mail/#' -e 's/^path = "authority.redb"/path = "mail.redb"/' authority.toml > mail-authority.toml
$A check-config --config authority.toml
$A check-config --config mail-authority.toml
$A import --config authority.toml "$repo/authority/numbers.sample.csv" --quiet   # a bulk load, before serving
$A show --config authority.toml +4915112340001
start authority "$A" serve --config authority.toml
start mail-authority "$A" serve --config mail-authority.toml

# 4. Provisioning, through each authority's API (the client certificate's
#    role decides what is allowed): the CSIP assigns, the MSP adds its entry.
P="$A provision --ca pki/ca/ca.pem"
$P --server https://127.0.0.1:7402 --server-id dp.de.example --cert pki/tnsp/cert.pem --key pki/tnsp/key.pem assign +4915112345678
$P --server https://127.0.0.1:7402 --server-id dp.de.example --cert pki/msp/cert.pem --key pki/msp/key.pem \
   put-entry --provider provider-a.example --uri mimi://provider-a.example/u/alice --display-name "Provider A" +4915112345678
$P --server https://127.0.0.1:7403 --server-id dp.mail.example --cert pki/mailbox/cert.pem --key pki/mailbox/key.pem assign alice@mail.example
$P --server https://127.0.0.1:7403 --server-id dp.mail.example --cert pki/msp/cert.pem --key pki/msp/key.pem \
   put-entry --provider provider-a.example --uri mimi://provider-a.example/u/alice-mail alice@mail.example

# 5. The resolver (it preloads the signed root table), and two lookups as an
#    AP would make them: providers, verified, and the path.
cp "$repo/resolver/resolver.sample.toml" resolver.toml
# With an Oblivious HTTP key the resolver is also a gateway (step 6).
$V ohttp-keygen --keys ohttp-keys.toml
sed -i 's/^keys = ""/keys = "ohttp-keys.toml"/' resolver.toml
$V check-config --config resolver.toml
start resolver "$V" serve --config resolver.toml
$V lookup "+49 151 1234 5678" --ca pki/ca/ca.pem | tee lookup-number.txt
$V lookup alice@mail.example --ca pki/ca/ca.pem --xml > lookup-email.xml
$V lookup alice@mail.example --ca pki/ca/ca.pem | tee lookup-email.txt
grep -q "verified (dp.de.example signed)" lookup-number.txt
grep -q "verified (dp.mail.example signed)" lookup-email.txt
$V lookup "+49 151 1234 0001" --ca pki/ca/ca.pem | tee lookup-imported.txt          # a number from the import
grep -q "verified (dp.de.example signed)" lookup-imported.txt

# 6. Privacy (docs/privacy.md): a relay with its own certificate in front of
#    the resolver's Oblivious HTTP gateway; an AP looks up through it (the
#    resolver sees the relay, not the AP), then two identifiers in one bulk.
$R ca issue --ca pki/ca --role resolver --id relay.signpost.example --out pki/relay
$R ca issue --ca pki/ca --role msp --id ap.signpost.example --out pki/ap
cp "$repo/resolver/relay.sample.toml" relay.toml
$V relay --config relay.toml --check
start relay "$V" relay --config relay.toml
AP="--ca pki/ca/ca.pem --cert pki/ap/cert.pem --key pki/ap/key.pem --relay https://127.0.0.1:7430/relay --ohttp-keys https://127.0.0.1:7430/relay/keys"
$V lookup "+49 151 1234 5678" $AP | tee lookup-relay.txt
grep -q "verified (dp.de.example signed)" lookup-relay.txt
$V lookup "+49 151 1234 5678" alice@mail.example $AP | tee lookup-bulk.txt
[ "$(grep -c "verified (" lookup-bulk.txt)" -ge 2 ]
if grep -q "4915112345678" relay.log; then echo "the relay logged an identifier" >&2; exit 1; fi
echo "walkthrough: both lookups answered and verified, directly and through the relay"
