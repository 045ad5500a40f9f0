#!/usr/bin/env bash
# Builds the binaries envtest needs (kube-apiserver, etcd and, on request, kube-controller-manager)
# from their Go modules into a versioned cache, bin/k8s/<k8s>-etcd<etcd>/, and prints that
# directory. Prebuilt downloads are out of reach on our machines, so we compile them once
# (about 10 minutes cold on 2 cores) and reuse them on every later run.
#
#   hack/envtest-binaries.sh                 # kube-apiserver + etcd
#   hack/envtest-binaries.sh controller-manager   # also kube-controller-manager
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/hack/versions.env"
dir="$root/bin/k8s/${KUBERNETES_VERSION}-etcd${ETCD_VERSION}"
mkdir -p "$dir"
tools="$root/hack/tools/envtest"

build() { # build <output name> <package>
  local out="$dir/$1" pkg=$2
  [ -x "$out" ] && return 0
  echo "building $1 from $pkg (one-time; cached in ${dir#"$root"/})" >&2
  (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
if [ "${1:-}" = controller-manager ]; then
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
fi
# envtest starts these as children of the test binary; a test binary killed by a timeout would
# leave them running. Wrappers that exec them under `setpriv --pdeathsig KILL` make the kernel
# kill them with their parent. envtest is pointed at the wrapper directory.
if command -v setpriv >/dev/null; then
  wrapped="$dir/pdeathsig"
  mkdir -p "$wrapped"
  for bin in "$dir"/*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    printf '#!/bin/sh\nexec setpriv --pdeathsig KILL -- "%s" "$@"\n' "$bin" >"$wrapped/$name"
    chmod +x "$wrapped/$name"
  done
  echo "$wrapped"
else
  echo "$dir"
fi
