#!/usr/bin/env bash
# The Samba AD DC fixture's one-time part: install what a Samba AD DC needs from Debian's
# packages, and provision a throwaway DEMO.LOCAL domain once into a versioned template directory
# that every test DC (and the demo) copies in milliseconds. Per-instance work (copy, smb.conf,
# TLS certificates for a loopback address, start/stop) lives in Go: internal/testenv/samba.go.
#
#   hack/samba-dc.sh missing    # list the packages whose files are absent; exit 1 if any
#   hack/samba-dc.sh install    # apt-get install the missing packages, then check again
#   hack/samba-dc.sh template   # install, provision if needed, print the template directory
#   hack/samba-dc.sh template other  # the same for a second, separately provisioned domain
#                                    # (OTHER.LOCAL: its own domain SID, for cross-domain restores)
#   hack/samba-dc.sh pair-template  # also join a second DC once; print the pair template directory
#   hack/samba-dc.sh pair-check     # print the pair template directory if built, else exit 1
#                                   # (changes nothing; no install check, so it is quick)
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
libnss-wrapper /usr/lib/$multiarch/libnss_wrapper.so
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
  local version dir lockfd
  version=$(samba --version | awk '{print $2}')
  dir="$root/bin/samba/$version/template"
  case "${1:-}" in
    "") ;;
    other) REALM=OTHER.LOCAL; DOMAIN=OTHER; dir="$dir-other" ;;
    *) echo "unknown template $1 (want: other)" >&2; exit 2 ;;
  esac
  if [ ! -f "$dir/.provisioned" ]; then
    # One provisioning at a time: parallel test processes may all find the template missing.
    mkdir -p "$(dirname "$dir")"
    exec {lockfd}>"$dir.lock"
    flock "$lockfd"
    [ -f "$dir/.provisioned" ] || provision "$dir"
    exec {lockfd}>&-
  fi
  echo "$dir"
}

# provision DIR provisions the $REALM domain into DIR (via DIR.tmp, so a crash leaves no half-done
# template behind).
provision() {
  local dir=$1
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
}

# The pair template: two DCs of the template's domain that replicate with each other (DC1 is a
# copy of the single-DC template, DC2 joined to it), so a test gets real DRS replication by
# copying two directories instead of joining (about 5 s) per test. Recipe and pitfalls:
# docs/testing.md, "Two replicating DCs". Built into a temporary directory and renamed, under a
# lock, so a crash or a concurrent build never leaves a half-built cache behind.
pair_dir() { echo "$root/bin/samba/$(samba --version | awk '{print $2}')/pair"; }

pair_template() {
  local tmpl dir lockfd
  tmpl=$(template)
  dir=$(pair_dir)
  if [ ! -f "$dir/.built" ]; then
    exec {lockfd}>"$dir.lock"
    flock "$lockfd"
    # Another build may have finished while this one waited for the lock.
    [ -f "$dir/.built" ] || build_pair "$tmpl" "$dir"
    exec {lockfd}>&-
  fi
  echo "$dir"
}

build_pair() {
  local tmpl=$1 dir=$2 work ip1 ip2 dc1_name dc2_guid dc1_guid
  echo "joining a second DC to the template domain for the pair template (one-time; cached in ${dir#"$root"/})" >&2
  rm -rf "$dir" "$dir".tmp.*
  work=$(mktemp -d "$dir.tmp.XXXXXX")
  # Samba's sockets (messaging, RPC pipes) live under the lock, pid and ncalrpc directories; a
  # Unix socket path has at most 107 bytes, which a checkout in a deep directory exceeds, and
  # then samba runs without RPC. They get a short directory of their own.
  pair_run=$(mktemp -d /tmp/dkm-pair-run.XXXXXX)
  # Everything started here is stopped, and every address added to lo removed, on any exit.
  pair_pids=() pair_added=()
  trap 'pair_cleanup' EXIT
  claim_address ip1
  claim_address ip2 "$ip1"
  dc1_name=$(awk -F' *= *' 'tolower($1) ~ /^[ \t]*netbios name$/ {print toupper($2); exit}' "$tmpl/etc/smb.conf")
  cp -a "$tmpl/." "$work/dc1"
  rm -f "$work/dc1/fixture.env" "$work/dc1/.provisioned"
  mkdir -p "$work/dc2/etc"
  pair_conf "$work/dc1" "$dc1_name" "$ip1" >"$work/dc1/etc/smb.conf"
  pair_krb5 "$ip1" "$ip2" >"$work/dc1/krb5.conf"
  pair_krb5 "$ip2" "$ip1" >"$work/dc2/krb5.conf"
  export LD_PRELOAD=/usr/lib/$multiarch/libnss_wrapper.so NSS_WRAPPER_HOSTS=$work/hosts
  # samba's tools need Debian's python3 (it holds the samba bindings).
  export PATH=/usr/sbin:/usr/bin:$PATH
  dc1_guid=$(ntds_guid "$work/dc1")
  printf '%s %s.%s %s\n%s %s._msdcs.%s\n' "$ip1" "${dc1_name,,}" "${REALM,,}" "${dc1_name,,}" \
    "$ip1" "$dc1_guid" "${REALM,,}" >"$work/hosts"
  # The template's DC account lacks the DRS SPN; without it DC2's pulls fail (WERR_INVALID_PARAMETER).
  run_logged "$work/spnupdate.log" samba_spnupdate -s "$work/dc1/etc/smb.conf"
  start_pair_dc "$work/dc1" "$ip1"
  # The join's own smb.conf (PREJOIN) names the second DC and keeps all its state in its
  # directory; --site avoids a CLDAP site lookup (no cldap server runs).
  pair_conf "$work/dc2" DC2 "$ip2" >"$work/prejoin.conf"
  run_logged "$work/join.log" samba-tool domain join "${REALM,,}" DC --server="$ip1" \
    --site=Default-First-Site-Name -U "$DOMAIN\\Administrator%$ADMIN_PASSWORD" \
    --targetdir="$work/dc2" --dns-backend=NONE -s "$work/prejoin.conf"
  # The join writes an smb.conf with winbindd in it; the fixture's replaces it.
  pair_conf "$work/dc2" DC2 "$ip2" >"$work/dc2/etc/smb.conf"
  dc2_guid=$(ntds_guid "$work/dc2")
  printf '%s dc2.%s dc2\n%s %s._msdcs.%s\n' "$ip2" "${REALM,,}" "$ip2" "$dc2_guid" "${REALM,,}" >>"$work/hosts"
  start_pair_dc "$work/dc2" "$ip2"
  # Without connection objects DC1 stays silent on DC2's changes for up to 300 s.
  KRB5_CONFIG=$work/dc1/krb5.conf run_retried "$work/kcc.log" \
    samba-tool drs kcc "$ip1" -s "$work/dc1/etc/smb.conf" -U "$DOMAIN\\Administrator%$ADMIN_PASSWORD"
  # Prove the template replicates both ways before caching it.
  KRB5_CONFIG=$work/dc1/krb5.conf run_retried "$work/replicate.log" samba-tool drs replicate "$ip1" DC2 \
    "$(base_dn)" -s "$work/dc1/etc/smb.conf" -U "$DOMAIN\\Administrator%$ADMIN_PASSWORD"
  KRB5_CONFIG=$work/dc2/krb5.conf run_retried "$work/replicate.log" samba-tool drs replicate "$ip2" "$dc1_name" \
    "$(base_dn)" -s "$work/dc2/etc/smb.conf" -U "$DOMAIN\\Administrator%$ADMIN_PASSWORD"
  pair_cleanup
  trap - EXIT
  # What the Go fixture needs: the names and NTDS GUIDs of both DCs (they stay in every copy, so
  # only the addresses in the hosts map change per pair).
  printf 'DC1_NAME=%s\nDC1_NTDS_GUID=%s\nDC2_NAME=DC2\nDC2_NTDS_GUID=%s\n' \
    "$dc1_name" "$dc1_guid" "$dc2_guid" >"$work/pair.env"
  cat "$tmpl/fixture.env" >>"$work/pair.env"
  # Logs, sockets and run-time state stay out of the cache; the fixture writes its own confs.
  rm -rf "$work/hosts" "$work/prejoin.conf" "$work"/*.log "$work"/dc*/log.* \
    "$work"/dc*/samba.stdout "$work"/dc*/run "$work"/dc*/msg.* "$work"/dc*/private/{ldapi,ldap_priv,smbd.tmp}
  mv "$work" "$dir"
  touch "$dir/.built"
}

base_dn() { echo "DC=${REALM,,}" | sed 's/\./,DC=/g'; }

# pair_conf DIR NAME IP: the smb.conf the build runs a DC with (the Go fixture writes its own).
pair_conf() {
  local rt=$pair_run/${2,,}
  mkdir -p "$rt/run"
  cat <<CONF
[global]
	netbios name = $2
	realm = $REALM
	workgroup = $DOMAIN
	server role = active directory domain controller
	server services = ldap, rpc, drepl, kcc, kdc
	interfaces = $3
	bind interfaces only = yes
	private dir = $1/private
	lock directory = $rt
	state directory = $1/state
	cache directory = $1/cache
	binddns dir = $1/bind-dns
	pid directory = $rt/run
	ncalrpc dir = $rt/run/ncalrpc
	log file = $1/log.%m
	logging = file
	idmap_ldb:use rfc2307 = yes
CONF
}

# pair_krb5 OWN OTHER: replication always uses Kerberos; each DC asks its own KDC first.
pair_krb5() {
  printf '[libdefaults]\n\tdefault_realm = %s\n\tdns_lookup_realm = false\n\tdns_lookup_kdc = false\n[realms]\n\t%s = {\n\t\tkdc = %s\n\t\tkdc = %s\n\t}\n' \
    "$REALM" "$REALM" "$1" "$2"
}

# ntds_guid DIR: the objectGUID of the DC's NTDS Settings object, read offline from its sam.ldb.
ntds_guid() {
  local conf=$1/etc/smb.conf
  /usr/bin/python3 - "$conf" <<'PY'
import sys
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
print(db.get_ntds_GUID())
PY
}

# claim_address VAR [EXCEPT]: sets VAR to a free loopback address, claimed the way
# internal/testenv claims one (an flock held until this script exits; hence no subshell).
claim_address() {
  local lockdir=${TMPDIR:-/tmp}/dkm-operator-loopback i addr fd
  mkdir -p "$lockdir"
  for i in $(seq 1 254); do
    addr=127.0.10.$i
    [ "$addr" = "${2:-}" ] && continue
    exec {fd}>"$lockdir/$addr.lock"
    if flock -n "$fd" && ! ss -Htln "( sport = :389 or sport = :636 or sport = :88 or sport = :135 )" src "$addr" | grep -q .; then
      printf -v "$1" %s "$addr"
      return 0
    fi
    exec {fd}>&-
  done
  echo "no free loopback address in 127.0.10.0/24" >&2
  exit 1
}

start_pair_dc() {
  local d=$1 ip=$2 i deathsig=""
  command -v setpriv >/dev/null && deathsig="setpriv --pdeathsig KILL"
  if ! ip -o addr show dev lo | grep -q " $ip/"; then
    ip addr add "$ip/32" dev lo
    pair_added+=("$ip")
  fi
  # Its own process group (samba forks) for pair_cleanup; killed with this script even when the
  # script itself is killed and its trap cannot run.
  KRB5_CONFIG=$d/krb5.conf setsid $deathsig samba -i -M single --debug-stdout -s "$d/etc/smb.conf" >"$d/samba.stdout" 2>&1 &
  pair_pids+=($!)
  # Ready when LDAP, RPC's endpoint mapper (the join's DRSUAPI connection starts there) and the
  # KDC accept connections: samba opens them one service at a time.
  for i in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/$ip/389" 4<>"/dev/tcp/$ip/135" 5<>"/dev/tcp/$ip/88") 2>/dev/null; then return 0; fi
    kill -0 "${pair_pids[-1]}" 2>/dev/null || { echo "samba in $d exited during start-up:" >&2; tail -20 "$d/samba.stdout" >&2; exit 1; }
    sleep 0.1
  done
  echo "samba in $d not listening on $ip:389, 135 and 88 after 60 s; it listens on:" >&2
  ss -Htlnp src "$ip" >&2 || true
  ip -o addr show dev lo >&2 || true
  tail -15 "$d/samba.stdout" >&2
  exit 1
}

pair_cleanup() {
  local pid ip
  for pid in "${pair_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pair_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  pair_pids=()
  for ip in "${pair_added[@]}"; do ip addr del "$ip/32" dev lo 2>/dev/null || true; done
  pair_added=()
  [ -n "${pair_run:-}" ] && rm -rf "$pair_run"
  return 0
}

run_logged() {
  local log=$1; shift
  "$@" >>"$log" 2>&1 && return 0
  echo "failed: ${*//$ADMIN_PASSWORD/***}" >&2
  cat "$log" >&2
  ip -o addr show dev lo >&2 || true
  local out
  for out in "$(dirname "$log")"/dc*/samba.stdout; do
    [ -f "$out" ] && { echo "--- end of $out:" >&2; tail -15 "$out" >&2; }
  done
  exit 1
}

# run_retried LOG CMD...: run_logged after up to two quiet tries 5 s apart. On two loaded cores
# a DRS call to a freshly started DC can time out (DsExecuteKCC: "{Device Timeout} The specified
# I/O operation ... was not completed before the time-out period expired", in a cold CI run that
# compiled every package meanwhile); the last try fails as run_logged does.
run_retried() {
  local log=$1 i
  shift
  for i in 1 2; do
    "$@" >>"$log" 2>&1 && return 0
    echo "try $i of $2 $3 failed; again in 5 s" >&2
    sleep 5
  done
  run_logged "$log" "$@"
}

case "${1:-}" in
  missing) missing ;;
  install) install ;;
  template) template "${2:-}" ;;
  pair-template) pair_template ;;
  pair-check) dir=$(pair_dir); [ -f "$dir/.built" ] && echo "$dir" ;;
  *) echo "usage: $0 missing|install|template [other]|pair-template|pair-check" >&2; exit 2 ;;
esac
