#!/usr/bin/env bash
# The Samba AD DC fixture's one-time part: install what a Samba AD DC needs from Debian's
# packages, and provision a throwaway DEMO.LOCAL domain once into a versioned template directory
# that every test DC (and the demo) copies in milliseconds. Per-instance work (copy, smb.conf,
# TLS certificates for a loopback address, start/stop) lives in Go: internal/testenv/samba.go.
#
#   hack/samba-dc.sh missing    # list the packages whose files are absent; exit 1 if any
#   hack/samba-dc.sh install    # apt-get install the missing packages, then check again
#   hack/samba-dc.sh template   # install, provision if needed, print the template directory
#
# SAMBA_SYSROOT (default: empty, i.e. /) is prepended to every checked path; tests use it to run
# the check against a directory laid out like a half-installed machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sysroot=${SAMBA_SYSROOT:-}
# shellcheck source=lib/apt.sh
source "$root/hack/lib/apt.sh"

# The template's Administrator password: a throwaway domain on loopback, never a real secret.
ADMIN_PASSWORD='Passw0rd!DemoAdmin'
REALM=DEMO.LOCAL
DOMAIN=DEMO

# What the fixture uses, as "package path[|alternative path...]": the files that provisioning
# and a running DC load, not just the commands. `samba` merely recommends the schema files and
# the dsdb/vfs modules, so a --no-install-recommends install (or a machine where they were
# removed) has the commands but cannot provision: checking commands alone is fooled by that.
multiarch=$(uname -m)-linux-gnu
required_files() {
  cat <<LIST
samba /usr/sbin/samba
samba-common-bin /usr/bin/samba-tool
python3-samba /usr/lib/python3/dist-packages/samba/__init__.py
samba-ad-provision /usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2012_R2.ldf
samba-ad-provision /usr/share/samba/setup/ad-schema/AD_DS_Classes__Windows_Server_2012_R2.ldf
samba-dsdb-modules /usr/lib/$multiarch/samba/ldb/samba_dsdb.so
samba-dsdb-modules /usr/lib/$multiarch/samba/ldb/acl.so
samba-vfs-modules /usr/lib/$multiarch/samba/vfs/acl_xattr.so
iproute2 /usr/sbin/ip|/sbin/ip|/usr/bin/ip|/bin/ip
LIST
}

# missing prints "package path" for every required file that is absent (once per package) and
# fails when there is any.
missing() {
  local pkg paths alt found seen=" " status=0
  while read -r pkg paths; do
    found=""
    IFS='|' read -ra alts <<<"$paths"
    for alt in "${alts[@]}"; do
      if [ -e "$sysroot$alt" ]; then found=1; break; fi
    done
    if [ -z "$found" ] && [[ "$seen" != *" $pkg "* ]]; then
      echo "$pkg ${alts[0]}"
      seen="$seen$pkg "
      status=1
    fi
  done < <(required_files)
  return $status
}

install() {
  local need
  need=$(missing | awk '{print $1}') || true
  [ -z "$need" ] && return 0
  # shellcheck disable=SC2086 # one package per word
  apt_install $need || exit 1
  if ! missing >/dev/null; then
    echo "still missing after apt-get install:" >&2
    missing >&2 || true
    exit 1
  fi
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
  missing) missing ;;
  install) install ;;
  template) template ;;
  *) echo "usage: $0 missing|install|template" >&2; exit 2 ;;
esac
