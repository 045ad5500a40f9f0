#!/usr/bin/env bash
# make doctor: what the README's two commands (`make demo`, `make test`) still need on this
# machine, and how each missing piece will be installed or built. Changes nothing. Exits 1 when
# something cannot be installed automatically (no Go, not root, no apt-get for missing packages).
#
# Each line starts with a state:
#   ok       present
#   install  missing; installed by the commands themselves (apt-get or go install)
#   build    missing; built or provisioned by the commands themselves, cached in bin/
#   warn     works, with a caveat
#   FAIL     missing and cannot be installed automatically: fix it by hand
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/hack/versions.env"
failed=0

line() { printf '  %-8s %s\n' "$1" "$2"; [ "$1" = FAIL ] && failed=1; return 0; }

echo "dkm-operator doctor: what 'make demo' and 'make test' need on this machine"

# Go, at least the version go.mod names.
want_go=$(awk '/^go /{print $2; exit}' "$root/go.mod")
if ! command -v go >/dev/null; then
  line FAIL "go: not found; install Go $want_go or newer"
else
  have_go=$(go env GOVERSION | sed 's/^go//')
  if [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -1)" = "$want_go" ]; then
    line ok "go $have_go (go.mod needs $want_go)"
  else
    line FAIL "go $have_go is older than go.mod's $want_go"
  fi
  if [ "$(go env GOPROXY)" = off ]; then
    line FAIL "GOPROXY=off: the Kubernetes binaries and tools are built from Go modules"
  fi
fi

# Root: Samba listens on ports 389/636 and each test DC's loopback address is added to lo.
if [ "$(id -u)" = 0 ]; then
  line ok "running as root (Samba binds ports 389/636; test DCs add addresses to lo)"
else
  line FAIL "not root: Samba binds ports 389/636 and test DCs add loopback addresses to lo; run as root"
fi

# Samba: the files provisioning and a running DC load (hack/samba-dc.sh decides, not commands).
samba_missing=$("$root/hack/samba-dc.sh" missing)
if [ -z "$samba_missing" ]; then
  line ok "Samba AD DC packages: every file provisioning and a DC load is present"
else
  pkgs=$(awk '{print $1}' <<<"$samba_missing" | tr '\n' ' ')
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    line install "Samba AD DC packages: ${pkgs% } -> apt-get install --no-install-recommends (about 1 min)"
  else
    line FAIL "Samba AD DC packages: ${pkgs% } missing, and no apt-get with root or sudo to install them"
  fi
  while read -r pkg path; do printf '  %-8s   %s lacks %s\n' "" "$pkg" "$path"; done <<<"$samba_missing"
fi

# The provisioned template domain (keyed by Samba's version).
if command -v samba >/dev/null; then
  sv=$(samba --version | awk '{print $2}')
  if [ -f "$root/bin/samba/$sv/template/.provisioned" ]; then
    line ok "Samba template domain: bin/samba/$sv/template"
  else
    line build "Samba template domain: provisioned once into bin/samba/$sv/template (about 15 s)"
  fi
  if pair=$("$root/hack/samba-dc.sh" pair-check); then
    line ok "Samba pair template (two replicating DCs): ${pair#"$root"/}"
  else
    line build "Samba pair template (two replicating DCs): joined once into bin/samba/$sv/pair (about 30 s)"
  fi
else
  line build "Samba template domain: provisioned once Samba is installed (about 15 s)"
  line build "Samba pair template (two replicating DCs): joined once Samba is installed (about 30 s)"
fi

# Kubernetes binaries for envtest and the demo, built from their Go modules.
k8s_dir="bin/k8s/${KUBERNETES_VERSION}-etcd${ETCD_VERSION}"
k8s_missing=""
for b in etcd kube-apiserver kube-controller-manager; do
  [ -x "$root/$k8s_dir/$b" ] || k8s_missing="$k8s_missing $b"
done
if [ -z "$k8s_missing" ]; then
  line ok "Kubernetes binaries: $k8s_dir (kube-apiserver $KUBERNETES_VERSION, etcd $ETCD_VERSION)"
else
  line build "Kubernetes binaries:$k8s_missing -> go build into $k8s_dir (about 10 min on 2 cores)"
fi
if ! command -v setpriv >/dev/null; then
  line warn "setpriv (util-linux) not found: etcd/kube-apiserver are not killed with a test binary that times out"
fi

# Go tools pinned in hack/versions.env.
tools_missing=""
for t in "controller-gen-$CONTROLLER_GEN_VERSION" "kustomize-$KUSTOMIZE_VERSION" "helm-$HELM_VERSION"; do
  [ -x "$root/bin/tools/$t" ] || tools_missing="$tools_missing $t"
done
if [ -z "$tools_missing" ]; then
  line ok "tools: controller-gen, kustomize, helm in bin/tools"
else
  line install "tools:$tools_missing -> go install into bin/tools (about 5 min cold)"
fi

# The race detector (make test) needs cgo and a C compiler.
cc=$(go env CC 2>/dev/null || echo gcc)
if command -v "$cc" >/dev/null; then
  line ok "C compiler for the race detector: $cc"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  line install "C compiler for the race detector: gcc -> apt-get install gcc libc6-dev"
else
  line FAIL "C compiler for the race detector ($cc) not found, and no apt-get as root to install gcc"
fi

# Free loopback addresses for test DCs: 127.0.10.1-254 whose LDAP ports nothing listens on.
# /proc/net/tcp lists listeners as little-endian hex: "0A0A007F:0185" is 127.0.10.10:389.
# Ports in hex: 0185 is 389, 027C is 636. Plain POSIX awk (Debian's default is mawk).
busy=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":")
    if (substr(a[1], 3, 6) == "0A007F" && (a[2] == "0185" || a[2] == "027C")) print substr(a[1], 1, 2) }' \
  /proc/net/tcp | sort -u | wc -l)
free=$((254 - busy))
if [ "$free" -ge 8 ]; then
  line ok "loopback: $free of 254 addresses in 127.0.10.0/24 free for test DCs"
else
  line FAIL "loopback: only $free addresses in 127.0.10.0/24 free (stop leftover DCs: hack/leftovers.sh --kill)"
fi

# Disk: the Kubernetes binaries, Go's build cache and a template domain take a few GiB.
avail=$(df -Pk "$root" | awk 'NR == 2 {print int($4 / 1048576)}')
if [ "$avail" -ge 4 ]; then
  line ok "disk: ${avail} GiB free"
else
  line FAIL "disk: ${avail} GiB free; building the Kubernetes binaries needs about 4 GiB"
fi

if [ "$failed" = 0 ]; then
  echo "Nothing needs a person: 'make demo' and 'make test' install or build everything above that is missing."
else
  echo "Fix the FAIL lines by hand first; everything else is installed or built by 'make demo' and 'make test'."
fi
exit "$failed"
