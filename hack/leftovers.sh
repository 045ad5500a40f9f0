#!/usr/bin/env bash
# Finds processes our tests may have left: samba DCs started from a dkm-samba-* directory, and
# etcd / kube-apiserver / kube-controller-manager from bin/k8s. Both samba and the envtest
# binaries run under a parent-death signal, so this should find nothing; if it does, it stops
# them and exits 1 (without --kill), so `make test` fails loudly instead of leaking.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pattern="dkm-samba-|$root/bin/k8s/"
pids=$(pgrep -f "$pattern" | grep -vx "$$" || true)
[ -z "$pids" ] && exit 0
if [ "${1:-}" = --kill ]; then
  kill $pids 2>/dev/null; sleep 1; kill -9 $pids 2>/dev/null
  echo "stopped leftover test processes: $pids"
  exit 0
fi
echo "test processes left behind (now stopped):" >&2
ps -o pid=,args= -p $pids >&2
kill $pids 2>/dev/null; sleep 1; kill -9 $pids 2>/dev/null
exit 1
