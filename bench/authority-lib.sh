# Shared by the bench scripts that run an authority (sourced, not run).
#   authority_toml LOST ADMIN [STORE]
# prints the head of an authority config: id dp.de.example, the listen
# addresses, the PKI under pki/ca and pki/dp (relative to the config), and
# the [store] section (STORE: its lines; default the embedded file
# authority.redb). The caller appends the sections it needs.
authority_toml() {
  printf '%s\n' 'id = "dp.de.example"' '[listen]' "lost = \"$1\"" "admin = \"$2\"" \
    '[tls]' 'ca = "pki/ca/ca.pem"' 'cert = "pki/dp/cert.pem"' 'key = "pki/dp/key.pem"' \
    '[store]' "${3:-path = \"authority.redb\"}"
}
