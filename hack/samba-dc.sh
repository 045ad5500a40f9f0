#!/usr/bin/env bash
# The Samba AD DC fixture's one-time part: install Samba from Debian's packages if it is missing,
# and provision a throwaway DEMO.LOCAL domain once into a versioned template directory that every
# test DC (and the demo) copies in milliseconds. Per-instance work (copy, smb.conf, TLS
# certificates for a loopback address, start/stop) lives in Go: internal/testenv/samba.go.
#
#   hack/samba-dc.sh install    # apt-get install samba ldb-tools ldap-utils iproute2, if missing
#   hack/samba-dc.sh template   # install, provision if needed, print the template directory
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# The template's Administrator password: a throwaway domain on loopback, never a real secret.
ADMIN_PASSWORD='Passw0rd!DemoAdmin'
REALM=DEMO.LOCAL
DOMAIN=DEMO

install() {
  # `ip` (iproute2) puts each test DC's loopback address on lo; slim images may lack it.
  if command -v samba >/dev/null && command -v samba-tool >/dev/null && command -v ldbsearch >/dev/null &&
    command -v ip >/dev/null; then
    return 0
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing samba, ldb-tools, ldap-utils and iproute2 from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends samba ldb-tools ldap-utils iproute2 >&2
}

template() {
  install
  local version dir
  version=$(samba --version | awk '{print $2}')
  dir="$root/bin/samba/$version/template"
  if [ ! -f "$dir/.provisioned" ]; then
    echo "provisioning the $REALM template domain (one-time; cached in ${dir#"$root"/})" >&2
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    # samba-tool needs Debian's python3 (it holds the samba bindings), not whatever is first on PATH.
    PATH=/usr/sbin:/usr/bin:$PATH samba-tool domain provision \
      --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=NONE --use-rfc2307 \
      --adminpass="$ADMIN_PASSWORD" --targetdir="$dir.tmp" \
      --option="interfaces=lo" --option="bind interfaces only=yes" >"$dir.tmp.log" 2>&1 || {
        cat "$dir.tmp.log" >&2; exit 1; }
    # Record what the Go fixture needs to rewrite the absolute paths of a copy.
    printf 'TEMPLATE_DIR=%s\nADMIN_PASSWORD=%s\nREALM=%s\nDOMAIN=%s\n' \
      "$dir" "$ADMIN_PASSWORD" "$REALM" "$DOMAIN" >"$dir.tmp/fixture.env"
    sed -i "s#$dir.tmp#$dir#g" "$dir.tmp/etc/smb.conf"
    mv "$dir.tmp" "$dir"
    rm -f "$dir.tmp.log"
    touch "$dir/.provisioned"
  fi
  echo "$dir"
}

case "${1:-}" in
  install) install ;;
  template) template ;;
  *) echo "usage: $0 install|template" >&2; exit 2 ;;
esac
